"""The benchmark harness: alternation order, the repeat floor, fresh-process peak memory."""

from __future__ import annotations

import sys
from pathlib import Path

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


def test_alternate_refuses_fewer_than_three_runs() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        harness.alternate({"a": lambda: None}, repeats=2)


def test_timing_rates() -> None:
    timing = harness.Timing([1.0, 2.0, 4.0])
    assert timing.median == 2.0 and timing.spread == 3.0
    assert timing.per(4) == {"median": 2.0, "min": 1.0, "max": 4.0}


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
