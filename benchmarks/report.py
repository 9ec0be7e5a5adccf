"""Write ``docs/benchmarks.md`` from the benchmarks' JSON (``results/benchmarks/*.json``).

``make bench`` runs every benchmark and then this script; each section is rendered from one
benchmark's JSON by the function registered for it in :data:`SECTIONS`, so every number in
the document comes from a measurement (a benchmark that has not run is listed as missing).

    .venv/bin/python benchmarks/report.py [--results results/benchmarks] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from camflow.io import write_text


def _rate(r: dict[str, float]) -> str:
    return f"{r['median']:.3g} ({r['min']:.3g}–{r['max']:.3g})"


def _mib(m: dict[str, Any]) -> str:
    return f"{m['above_baseline_mib']:,.0f}"


def random_walk(res: dict[str, Any]) -> list[str]:
    lines = [
        f"Sparse walk (camflow) against IRN's dense walk as published (padded dense affinity, "
        f"transition matrix squared {res['squarings']} times), radius {res['radius']}, "
        f"β = {res['beta']}, {res['threads']} thread (the pipeline's), median (spread) of "
        f"{res['repeats']} alternated runs after a warm-up; peak memory above the baseline of "
        f"a fresh process.", "",
        "| image | grid pixels | sparse s | sparse MiB | dense s | dense MiB | dense / sparse "
        "time | max abs diff |",
        "|---|---|---|---|---|---|---|---|"]
    for row in res["sizes"]:
        s = row["sparse"]
        cells = [f"{row['image_side']}²", f"{row['pixels']:,}",
                 f"{s['median_s']:.3f} ({s['spread_s']:.3f})", _mib(s["memory"])]
        if "dense" in row:
            d = row["dense"]
            cells += [f"{d['median_s']:.2f} ({d['spread_s']:.2f})", _mib(d["memory"]),
                      f"{row['dense_over_sparse_time']:.1f}×", f"{row['max_abs_diff']:.1e}"]
        else:
            cells += ["not run", f"≥ {row['dense_padded_matrix_mib']:,.0f} (its padded "
                      "matrix alone)", "–", "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def fullcam(res: dict[str, Any]) -> list[str]:
    t, m = res["throughput"], res["memory_resnet50"]
    lines = [
        f"`cam` against `fullcam` on the same `{t['classifier']}` network (random weights), "
        f"{t['images']} images of {t['side']}², scales {t['scales']}, flip {t['flip']}, "
        f"{res['threads']} threads, device {res['device']}; images/s, median (min–max) of "
        f"{len(next(iter(t['timings'].values()))['runs_s'])} alternated runs.", "",
        "| source | images/s |", "|---|---|"]
    lines += [f"| {name} | {_rate(rate)} |" for name, rate in t["images_per_s"].items()]
    lines += ["", f"CAM / Fully-CAM throughput: {t['ratio_cam_over_fullcam']:.2f}×.", "",
              f"ResNet-50, one {m['size']}² image, four scales + flip, two classes, each in a "
              "fresh process:", "", "| source | hooked convs | peak MiB above baseline |",
              "|---|---|---|"]
    lines += [f"| {name} | {r['returned']['hooked_convs']} | {_mib(r)} |"
              for name, r in m["sources"].items()]
    return lines


def _ms(m: dict[str, float]) -> str:
    return f"{m['median_ms']:.2f} ({m['spread_ms']:.2f})"


def cam_cache(res: dict[str, Any]) -> list[str]:
    h, w = res["size"]
    b = res["bytes_per_image"]
    lines = [
        f"The CAM cache ({res['cache_filter']['filter']}, {res['cache_filter']['chunks']}) "
        f"against IRN's per-image float32 `.npy` dicts on {res['images']} synthetic {w}×{h} "
        f"images ({res['classes_per_image']:.2f} classes each), stored as "
        f"{res['stored_dtype']}; maps read as {res['returned_dtype']}; cache reader: "
        f"{res['cache_reader']}; {res['page_cache']}; ms per image, median (spread) of "
        f"{res['repeats']} alternated runs.", "",
        f"Bytes per image: cache {b['cache']:,.0f}, `.npy` {b['npy']:,.0f} "
        f"(`.npy` / cache = {res['bytes_npy_over_cache']:.2f}).", "",
        "| read | ms / image |", "|---|---|"]
    lines += [f"| {name} | {_ms(m)} |" for name, m in res["read_ms_per_image"].items()]
    cold = res.get("page_cache_cold")
    if cold:
        lines += ["", f"Read from the disk: {cold['how']}; pages of the stores still in the "
                  f"page cache after an eviction: {100 * cold['resident_after_eviction']:.1f} %.",
                  "", "| read, page cache cold | ms / image |", "|---|---|"]
        lines += [f"| {name} | {_ms(m)} |" for name, m in res["read_cold_ms_per_image"].items()]
    lines += ["", "| read + the seed evaluation's threshold sweep | ms / image |", "|---|---|"]
    lines += [f"| {name} | {_ms(m)} |" for name, m in res["read_and_sweep_ms_per_image"].items()]
    lines += ["", "| write | ms / image | above a simulated 10 ms GPU step |", "|---|---|---|"]
    gpu = res["write_ms_per_image"]["gpu_10ms"]
    lines += [f"| {name} | {_ms(m)} | {gpu[name]['above_gpu_ms']:.2f} |"
              for name, m in res["write_ms_per_image"]["gpu_0ms"].items() if name in gpu]
    if "filters" not in res:
        return [*lines, "", "The filter and chunk table was not part of this run (its numbers "
                "are in `camflow/cache.py`'s docstring)."]
    lines += ["", "Filters and chunks measured (reads through `CamCache.read` of files without "
              "the chunk table: HDF5 finds each image's chunks; read ms median (spread); write "
              "on the caller's thread):", "",
              "| filter | chunks | bytes / image | `.npy` / this | read ms | write ms |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {f['filter']} | {f['chunks']} | {f['bytes_per_image']:,.0f} | "
              f"{f['bytes_npy_over']:.2f} | {_ms(f['read_ms'])} | "
              f"{f['write_ms_caller_thread']:.1f} |" for f in res["filters"]]
    return lines


def cam_inference(res: dict[str, Any]) -> list[str]:
    cpu = res["cpu"]
    first = next(iter(cpu.values()))
    lines = [
        "camflow's `make_cams` (the `cam` source: batch norms folded, channels_last, "
        f"`batch_size: {res['cams']['batch_size']}`) against IRN's `step/make_cam.py` "
        f"procedure on the same ResNet-50 (IRN strides), scales {res['scales']} × flip, "
        f"{res['threads']} threads, {first['images']} image(s) per size and "
        f"run; images/s, median (spread) of "
        f"{len(first['camflow']['runs_s'])} alternated runs; the "
        "bare forward is the same network on the same pixels without pre- or post-processing; "
        "the matmul rate is float32 GEMM alternated with them."
        + (" camflow, IRN and the bare forward each run in a Python process of their own "
           "(`harness.Isolated`), so that what one leaves in the allocator does not speed up "
           "or slow down another." if res.get("isolated") else "")
        + (" camflow and IRN each ran in "
           f"{len(first['irn']['per_process_img_per_s'])} processes, their runs pooled: how "
           "fast IRN runs can vary from one process to the next (its page faults: how "
           "glibc serves its large buffers there)."
           if "per_process_img_per_s" in first["irn"] else ""), "",
        "| measure | " + " | ".join(cpu) + " |", "|---|" + "---|" * len(cpu)]

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(e) for e in cpu.values()) + " |")

    for impl in ("camflow", "irn", "bare"):
        row(f"{impl} images/s", lambda e, i=impl: f"{e[i]['img_per_s']:.3f} "
            f"({e[i]['spread_img_per_s']:.3f})")
    if all("per_process_img_per_s" in e["irn"] for e in cpu.values()):
        for impl in ("camflow", "irn"):
            row(f"{impl} images/s, each process's median", lambda e, i=impl: ", ".join(
                f"{v:.3f}" for v in e[i]["per_process_img_per_s"]))
    row("camflow / IRN", lambda e: f"**{e['camflow_over_irn']:.2f}×**")
    row("camflow / bare forward", lambda e: f"{e['camflow_fraction_of_bare']:.0%}")
    row("bare forward / IRN (camflow with no overhead at all)",
        lambda e: f"{e['bare']['img_per_s'] / e['irn']['img_per_s']:.2f}×")
    if all("system_s_per_image" in e["irn"] for e in cpu.values()):
        row("system CPU s per image (camflow / IRN)", lambda e: " / ".join(
            f"{e[i]['system_s_per_image']:.2f}" for i in ("camflow", "irn")))
        row("minor page faults per image, thousands (camflow / IRN)", lambda e: " / ".join(
            f"{e[i]['minor_faults_per_image'] / 1e3:.0f}" for i in ("camflow", "irn")))
    row("GFLOP per image", lambda e: f"{e['gflop_per_image']:.0f}")
    row("matmul GFLOP/s", lambda e: f"{e['matmul_gflops']:.0f}")
    row("camflow, fraction of the matmul rate", lambda e: f"{e['camflow_fraction_of_matmul']:.0%}")
    row("IRN, fraction of the matmul rate", lambda e: f"{e['irn_fraction_of_matmul']:.0%}")
    row("max abs difference (full, stride 4)", lambda e: ", ".join(
        f"{v:.1e}" for v in e["max_abs_difference"].values()))
    if all("peak_memory_one_image" in e for e in cpu.values()):
        row("peak MiB above baseline, one image (camflow / IRN)", lambda e: " / ".join(
            _mib(m) for m in e["peak_memory_one_image"].values()))
    return lines


def _cuda_sizes(cuda: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: e for name, e in cuda.items() if isinstance(e, dict)}


def cam_inference_cuda(res: dict[str, Any]) -> list[str]:
    cuda = res["cuda"]
    sizes = _cuda_sizes(cuda)
    first = next(iter(sizes.values()))
    lines = [
        f"camflow's `make_cams` on {cuda['device']} (bfloat16 autocast, channels_last, "
        f"`batch_size: auto`, {cuda['workers']} DataLoader workers as a GPU job of "
        "`config/voc12.yaml` has them, writing its HDF5 cache) against the bare forward (the "
        "same network, autocast and batches on pixels already on the GPU: the ceiling) and "
        "IRN's one-image float32 path; scales "
        f"{res['scales']} × flip, {first['images']} images per run (IRN: "
        f"{first['irn_images']}); images/s, median (spread) of "
        f"{len(first['camflow']['runs_s'])} alternated runs.", "",
        "| size | batch | camflow images/s | bare forward | IRN fp32 | camflow / bare "
        "(target ≥ 70 %) | camflow / IRN fp32 (target ≥ 2×) | max abs diff to IRN fp32 |",
        "|---|---|---|---|---|---|---|---|"]
    for name, e in sizes.items():
        cells = [name, str(e["batch_size"])]
        cells += [f"{e[i]['img_per_s']:.1f} ({e[i]['spread_img_per_s']:.1f})"
                  for i in ("camflow", "bare", "irn")]
        cells += [f"**{e['camflow_fraction_of_bare']:.1%}**",
                  f"**{e['camflow_over_irn_fp32']:.1f}×**",
                  ", ".join(f"{v:.1e}" for v in
                            e["max_abs_difference_bf16_vs_irn_fp32"].values())]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def side_by_side(results: Path) -> list[str]:
    """The headline rows of every benchmark in one table: camflow against the reference it
    is compared with (IRN's CAM inference and dense walk, IRN's per-image float32 ``.npy``),
    "camflow speed / reference" above 1 meaning camflow is faster or smaller."""
    def load(name: str) -> dict[str, Any] | None:
        path = results / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    rows = []
    inference = load("cam_inference")
    if inference:
        for size, e in inference["cpu"].items():
            rows.append([f"CAM inference, {size} (img/s)", f"{e['camflow']['img_per_s']:.3f}",
                         f"{e['irn']['img_per_s']:.3f} (IRN)", f"**{e['camflow_over_irn']:.2f}×**"])
    gpu = load("cam_inference_cuda")
    if gpu:
        for size, e in _cuda_sizes(gpu["cuda"]).items():
            rows.append([f"CAM inference on a GPU, {size} (img/s)",
                         f"{e['camflow']['img_per_s']:.1f}",
                         f"{e['irn']['img_per_s']:.1f} (IRN, one image, float32)",
                         f"**{e['camflow_over_irn_fp32']:.1f}×**"])
    walk = load("random_walk")
    if walk:
        for row in walk["sizes"]:
            if "dense" in row:
                rows.append([f"random walk, {row['image_side']}² image (s)",
                             f"{row['sparse']['median_s']:.3f}",
                             f"{row['dense']['median_s']:.2f} (IRN's dense walk)",
                             f"{row['dense_over_sparse_time']:.1f}×"])
    cache = load("cam_cache")
    if cache:
        h, w = cache["size"]
        for key, where in (("read_ms_per_image", ""),
                           ("read_cold_ms_per_image", ", from the disk")):
            if key not in cache:  # a run before the disk reads were measured
                continue
            reads = cache[key]
            npy = reads["npy (np.load)"]["median_ms"]
            for name, m in reads.items():
                if name.startswith("cache per-image") or name.startswith("cache bulk"):
                    rows.append([f"{name}{where}, {w}×{h} (ms)", f"{m['median_ms']:.2f}",
                                 f"{npy:.2f} (float32 .npy{where})",
                                 f"**{npy / m['median_ms']:.2f}×**"])
        b = cache["bytes_per_image"]
        rows.append([f"cache bytes per image, {w}×{h}", f"{b['cache']:,.0f}",
                     f"{b['npy']:,.0f} (.npy)", f"**{b['npy'] / b['cache']:.2f}×**"])
    if not rows:
        return ["No benchmark has run yet."]
    return ["| measure | camflow | reference | camflow speed / reference |", "|---|---|---|---|",
            *("| " + " | ".join(r) + " |" for r in rows)]


#: results file name → (title, renderer, the script in benchmarks/ that writes it)
SECTIONS: dict[str, tuple[str, Callable[[dict[str, Any]], list[str]], str]] = {
    "cam_inference": ("CAM inference", cam_inference, "cam_inference"),
    "cam_inference_cuda": ("CAM inference on a GPU", cam_inference_cuda,
                           "cam_inference --sections cuda"),
    "cam_cache": ("The CAM cache", cam_cache, "cam_cache"),
    "random_walk": ("Random walk", random_walk, "random_walk"),
    "fullcam": ("Fully-CAM", fullcam, "fullcam"),
}


def render(results: Path) -> str:
    lines = ["# Benchmarks", "",
             "Written by `make bench` (`benchmarks/report.py`) from `results/benchmarks/*.json`;"
             " do not edit by hand. Every benchmark alternates the implementations it compares"
             " after a warm-up, reports the median and spread of at least three runs, uses the"
             " pipeline's thread counts, and measures peak memory in a fresh process above the"
             " baseline after imports (`benchmarks/harness.py`).", "",
             "## Side by side", "", *side_by_side(results), "",
             "Each row's details, machine and load are in its section below.", ""]
    for name, (title, section, script) in SECTIONS.items():
        path = results / f"{name}.json"
        program, _, options = script.partition(" ")
        lines += [f"## {title} (`benchmarks/{program}.py{' ' + options if options else ''}`)",
                  ""]
        if not path.exists():
            lines += [f"Not measured: `{path}` is missing.", ""]
            continue
        res = json.loads(path.read_text())
        machine = res["machine"]
        lines += section(res)
        load = machine.get("load_average_1_5_15")
        lines += ["", f"Measured {machine['date']} on {machine['cpu']} "
                  f"({machine['cpu_count']} cores), torch {machine['torch']}"
                  + (f", {machine['cuda']}" if machine.get("cuda") else "")
                  + (f"; load average when it finished {load[0]:.1f} / {load[1]:.1f} / "
                     f"{load[2]:.1f} (1 / 5 / 15 min; the benchmark's own threads count in "
                     "it)" if load else "") + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results/benchmarks")
    parser.add_argument("--out", default="docs/benchmarks.md")
    args = parser.parse_args(argv)
    write_text(args.out, render(Path(args.results)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
