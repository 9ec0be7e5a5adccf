"""The benchmark harness: alternation order, the repeat floor, fresh-process peak memory."""

from __future__ import annotations

import json
import mmap
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import harness  # noqa: E402


def test_alternate_warms_up_then_alternates_the_order() -> None:
    calls: list[str] = []
    cases = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    timings = harness.alternate(cases, repeats=4, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]
    assert [len(t.runs) for t in timings.values()] == [4, 4]
    assert timings["a"].spread >= 0 and timings["a"].median > 0


def test_alternate_counts_each_runs_page_faults_and_system_time() -> None:
    """A run that touches 64 MiB of fresh memory faults its pages in (in the kernel); one
    that does nothing does not: the counts are per run, not cumulative."""
    def touch() -> None:
        buffer = mmap.mmap(-1, 64 << 20)
        for offset in range(0, len(buffer), 4096):
            buffer[offset] = 1
        buffer.close()

    timings = harness.alternate({"touch": touch, "idle": lambda: None}, repeats=3)
    touched, idle = timings["touch"], timings["idle"]
    assert len(touched.minor_faults) == len(touched.system_s) == 3
    assert min(touched.minor_faults) >= 32  # 64 MiB: 16,384 small or 32 huge pages
    assert max(idle.minor_faults) < min(touched.minor_faults)
    assert all(s >= 0 for s in touched.system_s + idle.system_s)
    assert touched.as_dict()["minor_faults"] == touched.minor_faults


def _memory_file_system(path: Path) -> bool:
    """Whether ``path`` lies on a file system that keeps files in memory (no page cache to
    drop them from)."""
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    mount = max((m for m in mounts if str(path.resolve()).startswith(m[1].rstrip("/") + "/")),
                key=lambda m: len(m[1]))
    return mount[2] in ("tmpfs", "ramfs")


def test_cold_case_reads_its_files_from_the_disk_every_run(tmp_path: Path) -> None:
    """A :class:`harness.Cold` case finds none of its files' pages in the page cache at the
    start of each run, warm-up included, though the run before read them all; a plain case
    finds them all."""
    if _memory_file_system(tmp_path):
        pytest.skip("the temporary folder is in memory: nothing to drop")
    files = [tmp_path / f"{i}.bin" for i in range(2)]
    for f in files:
        f.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    seen: dict[str, list[float]] = {"cold": [], "warm": []}

    def read(kind: str) -> None:
        seen[kind].append(harness.resident_fraction(files))
        for f in files:
            f.read_bytes()

    harness.alternate({"cold": harness.Cold(lambda: read("cold"), files),
                       "warm": lambda: read("warm")}, repeats=3)
    assert seen["cold"] == [0.0] * 4
    assert seen["warm"] == [1.0] * 4
    assert harness.resident_fraction([tmp_path / "0.bin"]) == 1.0


ISOLATED_CASES = (
    "import mmap, os, time\n"
    "def touch_setup(mib):\n"
    "    return os.getpid()\n"
    "def touch(state, mib):\n"
    "    assert os.getpid() == state  # every run in the process the set-up ran in\n"
    "    buffer = mmap.mmap(-1, mib << 20)\n"
    "    for offset in range(0, len(buffer), 4096):\n"
    "        buffer[offset] = 1\n"
    "    time.sleep(0.2)\n"
    "def fail_setup():\n"
    "    return None\n"
    "def fail(state):\n"
    "    raise ValueError('boom')\n")


def test_isolated_case_is_timed_in_its_own_process(tmp_path: Path) -> None:
    """The child's wall time, faults and system time come back; this process's do not
    count (it only waits on the pipe)."""
    script = tmp_path / "cases.py"
    script.write_text(ISOLATED_CASES)
    with harness.Isolated(script, "touch", {"mib": 64}, threads=1) as touch:
        timings = harness.alternate({"touch": touch, "idle": lambda: None}, repeats=3)
    touched, idle = timings["touch"], timings["idle"]
    assert all(0.2 <= t < 2.0 for t in touched.runs)
    assert min(touched.minor_faults) >= 32  # the child touched 64 MiB each run
    assert max(idle.minor_faults) < min(touched.minor_faults)
    assert touch._proc.returncode == 0  # closed cleanly


def test_isolated_case_that_fails_names_itself(tmp_path: Path) -> None:
    script = tmp_path / "cases.py"
    script.write_text(ISOLATED_CASES)
    with harness.Isolated(script, "fail", {}, threads=1) as fail, \
            pytest.raises(RuntimeError, match=r"cases.py:fail\{\} failed in its own process"):
        fail.measure()


def test_alternate_refuses_fewer_than_three_runs() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        harness.alternate({"a": lambda: None}, repeats=2)


def test_timing_rates() -> None:
    timing = harness.Timing([1.0, 2.0, 4.0])
    assert timing.median == 2.0 and timing.spread == 3.0
    assert timing.per(4) == {"median": 2.0, "min": 1.0, "max": 4.0}


def test_pooled_timing_keeps_every_run_with_its_kernel_share() -> None:
    a = harness.Timing([1.0, 1.2, 1.1], [0.1, 0.2, 0.3], [10, 20, 30])
    b = harness.Timing([2.0, 2.2, 2.1], [1.1, 1.2, 1.3], [40, 50, 60])
    pooled = harness.Timing.pooled([a, b])
    assert sorted(pooled.runs) == [1.0, 1.1, 1.2, 2.0, 2.1, 2.2]
    assert pooled.median == pytest.approx(1.6) and pooled.spread == pytest.approx(1.2)
    assert pooled.system_s == [0.1, 0.2, 0.3, 1.1, 1.2, 1.3]
    assert pooled.minor_faults == [10, 20, 30, 40, 50, 60]


def test_peak_memory_counts_the_call_not_the_setup(tmp_path: Path) -> None:
    script = tmp_path / "memfn.py"
    script.write_text(
        "import numpy as np\n"
        "def alloc_setup(mib):\n"
        "    return np.ones(mib * 2**20 // 8)\n"
        "def alloc(state, mib):\n"
        "    b = np.ones(mib * 2**20 // 8)\n"
        "    return float(b.sum() + state.sum())\n")
    out = harness.peak_memory(script, "alloc", {"mib": 200}, threads=1)
    # the set-up's 200 MiB are in the baseline, the call's 200 MiB above it
    assert out["baseline_mib"] > 200
    assert 180 < out["above_baseline_mib"] < 260
    assert out["returned"] == pytest.approx(2 * 200 * 2**20 // 8)


def test_write_result_adds_the_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    path = harness.write_result("x", {"value": 1})
    text = path.read_text()
    assert '"benchmark": "x"' in text and '"cpu_count"' in text and '"value": 1' in text


def test_report_renders_every_number_from_the_json(tmp_path: Path) -> None:
    import report

    machine = {"date": "d", "cpu": "c", "cpu_count": 2, "torch": "t", "cuda": None}
    walk = {"machine": machine, "squarings": 8, "radius": 5, "beta": 10.0, "threads": 1,
            "repeats": 3, "sizes": [
                {"side": 32, "image_side": 128, "pixels": 1024,
                 "sparse": {"median_s": 0.0421, "spread_s": 0.005,
                            "memory": {"above_baseline_mib": 18.2}},
                 "dense": {"median_s": 0.96, "spread_s": 0.01,
                           "memory": {"above_baseline_mib": 46.4}},
                 "dense_over_sparse_time": 22.8, "max_abs_diff": 2.4e-4},
                {"side": 96, "image_side": 384, "pixels": 9216,
                 "sparse": {"median_s": 0.35, "spread_s": 0.02,
                            "memory": {"above_baseline_mib": 30.0}},
                 "dense_padded_matrix_mib": 437.2}]}
    (tmp_path / "random_walk.json").write_text(json.dumps(walk))

    def rate(median: float, spread: float) -> dict[str, Any]:
        return {"img_per_s": median, "spread_img_per_s": spread, "runs_s": [1.0, 1.1, 1.2]}

    gpu = {"machine": machine, "scales": [1.0, 0.5], "cuda": {
        "device": "G", "workers": 8,
        "320x320": {"images": 256, "irn_images": 32, "batch_size": 32,
                    "camflow": rate(180.24, 8.5), "bare": rate(319.4, 0.4),
                    "irn": rate(18.0, 0.7), "camflow_fraction_of_bare": 0.564,
                    "camflow_over_irn_fp32": 10.01,
                    "max_abs_difference_bf16_vs_irn_fp32": {"full": 0.032, "stride4": 0.033}}}}
    (tmp_path / "cam_inference_cuda.json").write_text(json.dumps(gpu))
    text = report.render(tmp_path)
    assert ("| 320x320 | 32 | 180.2 (8.5) | 319.4 (0.4) | 18.0 (0.7) | **56.4%** | **10.0×** | "
            "3.2e-02, 3.3e-02 |") in text
    assert "| CAM inference on a GPU, 320x320 (img/s) | 180.2 | 18.0 (IRN, one image, " in text
    assert "## CAM inference on a GPU (`benchmarks/cam_inference.py --sections cuda`)" in text
    assert "| 128² | 1,024 | 0.042 (0.005) | 18 | 0.96 (0.01) | 46 | 22.8× | 2.4e-04 |" in text
    assert "| 384² | 9,216 | 0.350 (0.020) | 30 | not run | ≥ 437" in text
    assert "Not measured: `" in text and "fullcam.json` is missing" in text
    # the side-by-side table: the walk's measured row, nothing for what did not run
    assert "| random walk, 128² image (s) | 0.042 | 0.96 (IRN's dense walk) | 22.8× |" in text
    assert "384² image" not in text.split("## Random walk")[0]


def test_report_sets_cache_reads_from_the_disk_beside_npy_from_the_disk(tmp_path: Path) -> None:
    """Each cache read is compared with ``np.load`` read the same way: warm with warm, from
    the disk with from the disk."""
    import report

    def ms(median: float) -> dict[str, float]:
        return {"median_ms": median, "spread_ms": 0.01}

    cache = {
        "machine": {"date": "d", "cpu": "c", "cpu_count": 2, "torch": "t", "cuda": None},
        "images": 3, "size": [375, 500], "classes_per_image": 2.0, "repeats": 3,
        "stored_dtype": "float16", "returned_dtype": "float32", "cache_reader": "r",
        "page_cache": "warm", "cache_filter": {"filter": "f", "chunks": "c"},
        "bytes_per_image": {"npy": 1600.0, "cache": 320.0}, "bytes_npy_over_cache": 5.0,
        "read_ms_per_image": {"npy (np.load)": ms(0.4),
                              "cache per-image float32 (read)": ms(0.5)},
        "page_cache_cold": {"how": "dropped", "resident_after_eviction": 0.0},
        "read_cold_ms_per_image": {"npy (np.load)": ms(1.5),
                                   "cache per-image float32 (read)": ms(0.6)},
        "read_and_sweep_ms_per_image": {},
        "write_ms_per_image": {"gpu_0ms": {}, "gpu_10ms": {}}}
    (tmp_path / "cam_cache.json").write_text(json.dumps(cache))
    text = report.render(tmp_path)
    assert ("| cache per-image float32 (read), 500×375 (ms) | 0.50 | 0.40 (float32 .npy) | "
            "**0.80×** |") in text
    assert ("| cache per-image float32 (read), from the disk, 500×375 (ms) | 0.60 | "
            "1.50 (float32 .npy, from the disk) | **2.50×** |") in text
    assert "still in the page cache after an eviction: 0.0 %" in text
    assert "| cache per-image float32 (read) | 0.60 (0.01) |" in text
