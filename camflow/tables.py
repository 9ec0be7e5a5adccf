"""Paper tables built from evaluation JSONs; each table is a named builder.

A builder turns the evaluation results its rule collected into rows; :class:`Table` writes
them as CSV and Markdown (atomically) and prints the Markdown.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from camflow.io import CamflowInputError, write_text


@dataclass
class Table:
    """A titled table: column names and rows of values (floats are percentages or ratios)."""

    title: str
    columns: list[str]
    rows: list[list[Any]]

    def _cells(self) -> list[list[str]]:
        return [[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row]
                for row in self.rows]

    def csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self._cells())
        return buf.getvalue()

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "|".join("---" for _ in self.columns) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self._cells()]
        return "\n".join(lines) + "\n"

    def write(self, csv_path: str, md_path: str) -> None:
        write_text(csv_path, self.csv())
        write_text(md_path, self.markdown())


def cam_seeds(evals: list[dict[str, Any]], spec: dict[str, Any], dataset: str) -> Table:
    """Seed quality per classifier config: mIoU (best threshold), +CRF, m_under, m_over."""
    rows = []
    for name, ev in zip(spec["rows"], evals, strict=True):
        crf = ev.get("crf")
        rows.append([
            name,
            100 * ev["best"]["miou"],
            100 * crf["miou"] if crf else "-",
            f"{ev['best_threshold']:.2f}",
            ev["best"]["m_under"],
            ev["best"]["m_over"],
        ])
    return Table(f"CAM seeds on {dataset} (mIoU %, source {spec['source']})",
                 ["classifier", "seed_miou", "crf_miou", "best_threshold", "m_under", "m_over"],
                 rows)


def _source_columns(ev: dict[str, Any]) -> list[Any]:
    """What distinguishes a source in a table: method, layers, scales, flip (from provenance)."""
    prov = ev.get("provenance") or {}
    layers = prov.get("layers", prov.get("layer", "head"))
    if isinstance(layers, dict):
        layers = "+".join(f"stage{s}" for s in layers.get("stages", [])) or ",".join(
            layers.get("names", []))
    scales = "/".join(f"{s:g}" for s in prov.get("scales", []))
    return [prov.get("method", "?"), layers, scales, "yes" if prov.get("flip") else "no"]


def source_table(title: str) -> Callable[[list[dict[str, Any]], dict[str, Any], str], Table]:
    """A table whose rows are CAM sources of one classifier (seed 001 Tables 2–4)."""
    def build(evals: list[dict[str, Any]], spec: dict[str, Any], dataset: str) -> Table:
        rows = [[name, *_source_columns(ev), 100 * ev["best"]["miou"],
                 f"{ev['best_threshold']:.2f}", ev["best"]["m_under"], ev["best"]["m_over"]]
                for name, ev in zip(spec["rows"], evals, strict=True)]
        return Table(f"{title} — {dataset}, classifier {spec['classifier']} (seed mIoU %)",
                     ["source", "method", "layers", "scales", "flip", "seed_miou",
                      "best_threshold", "m_under", "m_over"], rows)
    return build


def grid_table(title: str) -> Callable[[list[dict[str, Any]], dict[str, Any], str], Table]:
    """Classifiers (rows) × CAM sources (columns) of seed mIoU (seed 001 Table 5)."""
    def build(evals: list[dict[str, Any]], spec: dict[str, Any], dataset: str) -> Table:
        k = len(spec["sources"])
        rows = []
        for i, name in enumerate(spec["rows"]):
            cells = evals[i * k:(i + 1) * k]
            arch = (cells[0].get("provenance") or {}).get("arch", "?")
            rows.append([name, arch, *(100 * ev["best"]["miou"] for ev in cells)])
        return Table(f"{title} — {dataset} (seed mIoU %)",
                     ["classifier", "backbone", *spec["sources"]], rows)
    return build


def base_pipeline(evals: list[dict[str, Any]], spec: dict[str, Any], dataset: str) -> Table:
    """The base WSSS pipeline per classifier: seed mIoU, +CRF, IRN and AffinityNet pseudo-mask
    mIoU (on the seeds' split), DeepLab val mIoU (and +CRF) trained on the pseudo masks of
    ``segmentation_masks``, and trained on the ground truth (the upper bound)."""
    def pct(value: float | None) -> Any:
        return "-" if value is None else 100 * value

    rows = []
    for i, name in enumerate(spec["rows"]):
        seed, irn, aff, seg, upper = evals[5 * i:5 * i + 5]
        rows.append([
            name, pct(seed["best"]["miou"]), pct((seed.get("crf") or {}).get("miou")),
            pct(irn["miou"]), pct(aff["miou"]), pct(seg["miou"]),
            pct((seg.get("crf") or {}).get("miou")), pct(upper["miou"]),
            pct((upper.get("crf") or {}).get("miou")),
        ])
    return Table(
        f"Base pipeline on {dataset} (mIoU %): seeds and pseudo masks on {seed['split']}, "
        f"segmentation on {seg['split']}; source {spec['source']}, DeepLab "
        f"{spec['segmenter']} on {spec['segmentation_masks']} masks",
        ["classifier", "seed", "seed_crf", f"{spec['irn']}_masks",
         f"{spec['affinitynet']}_masks", "deeplab", "deeplab_crf", "upper_bound",
         "upper_bound_crf"], rows)


def gslm_fig5(evals: list[dict[str, Any]], spec: dict[str, Any], dataset: str) -> Table:
    """Seed 000 Fig. 5: mIoU, m_under and m_over of every GSLM stage (stage 1 = the GLM's
    CAMs), one row per (configuration, stage), at each stage's best seed threshold.
    ``spec["stages"]`` gives each configuration's number of stages (added by the rule)."""
    rows = []
    it = iter(evals)
    for name in spec["rows"]:
        for stage in range(1, spec["stages"][name] + 1):
            ev = next(it)
            best = ev.get("best", ev)   # a refiner's mask evaluation has no threshold sweep
            rows.append([name, stage, 100 * best["miou"], best["m_under"], best["m_over"]])
    return Table(f"GSLM per stage (seed 000 Fig. 5) — {dataset}, classifier "
                 f"{spec['classifier']} (seed mIoU %)",
                 ["gslm", "stage", "seed_miou", "m_under", "m_over"], rows)


FIG8_SWEEPS = {"thresholds": "theta_bg/theta_fg", "k": "k", "iterations": "iterations"}


def gslm_fig8(evals: list[dict[str, Any]], spec: dict[str, Any], dataset: str) -> Table:
    """Seed 000 Fig. 8: seed mIoU of GSLM against (θ_bg, θ_fg) of Coarse Generation (Eq. 3),
    k of Seed Reactivation (Eq. 4) and the number of SLM iterations. ``spec["variants"]``
    (added by the rule) lists each sweep's points as [value, configuration, stage]."""
    rows = []
    it = iter(evals)
    for sweep, parameter in FIG8_SWEEPS.items():
        for value, name, stage in spec["variants"][sweep]:
            ev = next(it)
            rows.append([parameter, value, name, stage, 100 * ev["best"]["miou"],
                         f"{ev['best_threshold']:.2f}", ev["best"]["m_under"],
                         ev["best"]["m_over"]])
    return Table(f"GSLM sensitivity (seed 000 Fig. 8) — {dataset}, classifier "
                 f"{spec['classifier']}, base {spec['base']} (seed mIoU %)",
                 ["parameter", "value", "gslm", "stage", "seed_miou", "best_threshold",
                  "m_under", "m_over"], rows)


def _seed(ev: dict[str, Any]) -> list[Any]:
    """Seed mIoU, +CRF mIoU, m_under, m_over of a seed evaluation."""
    crf = ev.get("crf")
    return [100 * ev["best"]["miou"], 100 * crf["miou"] if crf else "-", ev["best"]["m_under"],
            ev["best"]["m_over"]]


def gslm_table1(evals: list[dict[str, Any]], spec: dict[str, Any], dataset: str) -> Table:
    """Seed 000 Table 1: Seed / +CRF / Mask for CAM, IRN (its masks of CAM), and each GSLM
    configuration (its last stage, and the refiner's masks of it)."""
    cam, irn = evals[0], evals[1]
    seed, crf, under, over = _seed(cam)
    rows = [["CAM", 1, seed, crf, "-", under, over],
            [f"IRN ({spec['refiner']})", 1, seed, crf, 100 * irn["miou"], under, over]]
    for i, name in enumerate(spec["rows"]):
        ev, masks = evals[2 + 2 * i], evals[3 + 2 * i]
        seed, crf, under, over = _seed(ev)
        rows.append([name, spec["stages"][name], seed, crf, 100 * masks["miou"], under, over])
    return Table(f"GSLM pseudo masks (seed 000 Table 1) — {dataset}, classifier "
                 f"{spec['classifier']} (mIoU %; Mask = {spec['refiner']} random walk)",
                 ["method", "stages", "seed", "crf", "mask", "m_under", "m_over"], rows)


def gslm_table4(evals: list[dict[str, Any]], spec: dict[str, Any], dataset: str) -> Table:
    """Seed 000 Table 4: seed mIoU of a CAM source and after GSLM on it (its last stage)."""
    rows = []
    for i, name in enumerate(spec["rows"]):
        first, last = evals[2 * i], evals[2 * i + 1]
        before = first.get("best", first)   # a refiner's mask evaluation has no sweep
        rows.append([spec["first_source"][name], name, spec["stages"][name],
                     100 * before["miou"], 100 * last["best"]["miou"],
                     100 * (last["best"]["miou"] - before["miou"])])
    return Table(f"GSLM on other CAM sources (seed 000 Table 4) — {dataset}, classifier "
                 f"{spec['classifier']} (seed mIoU %)",
                 ["source", "gslm", "stages", "seed", "gslm_seed", "gain"], rows)


def gslm_table5(evals: list[dict[str, Any]], spec: dict[str, Any], dataset: str) -> Table:
    """Seed 000 Table 5: the baseline CAM, each ablation, and the full GSLM without and with
    iterations, with the paper's check-mark columns (CR, SR, L_cls, Iter) read from each
    configuration (``spec["modules"]``, added by the rule)."""
    full = spec["full"]
    variants = [("CAM (baseline)", full, 1), *((name, name, spec["stages"][name])
                                               for name in spec["rows"]),
                (f"{full} w/o iterations", full, 2), (full, full, spec["stages"][full])]
    rows = []
    for (label, name, stage), ev in zip(variants, evals, strict=True):
        modules = spec["modules"][name]
        marks = ["-"] * 3 if stage == 1 else ["x" if modules[m] else "" for m in
                                              ("CR", "SR", "L_cls")]
        rows.append([label, *marks, stage - 1, *_seed(ev)])
    return Table(f"GSLM ablation (seed 000 Table 5) — {dataset}, classifier "
                 f"{spec['classifier']} (seed mIoU %; Iter = SLM iterations)",
                 ["variant", "CR", "SR", "L_cls", "iter", "seed", "crf", "m_under", "m_over"],
                 rows)


BUILDERS: dict[str, Callable[[list[dict[str, Any]], dict[str, Any], str], Table]] = {
    "cam_seeds": cam_seeds,
    "base_pipeline": base_pipeline,
    "gslm_fig5": gslm_fig5,
    "gslm_fig8": gslm_fig8,
    "gslm_table1": gslm_table1,
    "gslm_table4": gslm_table4,
    "gslm_table5": gslm_table5,
    "fullcam_table2": source_table("Fully-CAM: fused layers (seed 001 Table 2)"),
    "fullcam_table3": source_table("CAM vs Grad-CAM vs Grad-CAM++ vs Fully-CAM "
                                   "(seed 001 Table 3)"),
    "fullcam_table4": source_table("Fully-CAM: test-time transformations (seed 001 Table 4)"),
    "fullcam_table5": grid_table("Plug and play over backbones (seed 001 Table 5)"),
}


def build_table(name: str, evals: list[dict[str, Any]], spec: dict[str, Any],
                dataset: str) -> Table:
    if name not in BUILDERS:
        raise CamflowInputError(f"unknown table {name!r} (config key tables.{name}); "
                                f"known: {', '.join(BUILDERS)}")
    return BUILDERS[name](evals, spec, dataset)
