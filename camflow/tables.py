"""Paper tables: one object per table, registered by name (``tables.<name>`` in config).

A table names its inputs — evaluation records (:func:`camflow.evaluate.evaluation_record`),
each under a key such as ``resnet_small/seeds`` — so its numbers never depend on the order
of its config lists; it resolves from the config what its builder needs (``resolve``, run
when the Snakefile is parsed, passed to the job through ``params:``); and it builds its rows
from the records by key (``build``).  :class:`Table` writes them as CSV and Markdown
(atomically) to ``results/{dataset}/tables/{name}.csv|md``; tables with a figure name it in
``figure`` (:mod:`camflow.figures`).  Titles name the paper by its authors and title.
"""

from __future__ import annotations

import csv
import html
import inspect
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from camflow.io import CamflowInputError, write_text
from camflow.registry import Registry

if TYPE_CHECKING:
    from camflow.claims import Claim, Comparison
    from camflow.workflow import Workflow

GSLM = ('Mai et al., "Exploit CAM by itself: Complementary Learning System for Weakly '
        'Supervised Semantic Segmentation"')
FULLCAM = 'Song et al., "Rethinking CAM in Weakly-Supervised Semantic Segmentation"'
PNOC = ('David et al., "P-NOC: adversarial training of CAM generating networks for robust '
        'weakly supervised semantic segmentation priors"')
BASE = ("the base pipeline (IRN: Ahn, Cho & Kwak 2019; AffinityNet: Ahn & Kwak 2018; "
        "DeepLab: Chen et al.)")

Record = dict[str, Any]


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

    def html(self, about: dict[str, str], spec: dict[str, Any]) -> str:
        """A self-contained HTML page of the table (the report shows it as it is): its title,
        what it shows, and the config block that built it."""
        esc = html.escape
        head = "".join(f"<th>{esc(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>\n"
                       for row in self._cells())
        config = "".join(f"<li><code>{esc(k)}</code>: <code>{esc(str(v))}</code></li>"
                         for k, v in spec.items())
        return (
            "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
            f"<title>{esc(self.title)}</title><style>{TABLE_CSS}</style></head><body>\n"
            f"<h3>{esc(self.title)}</h3>\n<p>{esc(about['description'])}</p>\n"
            f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>\n"
            f"<p class='config'>Built from <code>tables.{esc(about['name'])}</code>:</p>"
            f"<ul class='config'>{config}</ul>\n</body></html>\n"
        )

    def write(self, csv_path: str, md_path: str, html_path: str, about: dict[str, str],
              spec: dict[str, Any]) -> None:
        write_text(csv_path, self.csv())
        write_text(md_path, self.markdown())
        write_text(html_path, self.html(about, spec))


TABLE_CSS = (
    "body{font-family:sans-serif;font-size:14px;margin:1em}"
    "table{border-collapse:collapse}th,td{border:1px solid #bbb;padding:4px 10px;"
    "text-align:right}th{background:#eef}td:first-child,th:first-child{text-align:left}"
    "tr:nth-child(even){background:#f7f7f7}.config{font-size:12px;color:#555}"
)


# every table is a class of this module, so no other package is searched
TABLES: Registry[type[PaperTable]] = Registry("table", ())


def register_table(name: str):
    """Class decorator: register a :class:`PaperTable` under ``name``."""
    def register(cls: type[PaperTable]) -> type[PaperTable]:
        cls.name = name
        return TABLES.register(name)(cls)
    return register


def table_class(name: str) -> type[PaperTable]:
    return TABLES.get(name, f"tables.{name}")


def pct(value: float | None) -> Any:
    """A ratio as a percentage, ``-`` when undefined."""
    return "-" if value is None else 100 * value


def crf_pct(record: Record) -> Any:
    """The +CRF mIoU (%) of a record, ``-`` without a CRF."""
    return pct((record.get("crf") or {}).get("miou"))


class PaperTable:
    """One table (module doc).  ``spec`` is the table's resolved config block."""

    name: ClassVar[str]
    paper: ClassVar[str]
    short: ClassVar[str]                  # the paper in a few words (target-rule description)
    title: ClassVar[str]
    figure: ClassVar[str | None] = None   # a key of camflow.figures.TABLE_FIGURES
    schema: ClassVar[dict[str, Any]] = {}  # its config block's schema, if not in the static one

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        """What :meth:`build` needs beyond the config block (checked against the config)."""
        return spec

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        """The evaluation records it reads, by key."""
        raise NotImplementedError

    def rows(self, records: dict[str, Record]) -> tuple[list[str], list[list[Any]]]:
        raise NotImplementedError

    def figures(self, wf: Workflow, dataset: str) -> list[str]:
        """Figures of its own the report shows beside the table (CAM figures are added for
        every CAM cache it reads: :meth:`Workflow.table_targets`)."""
        return []

    def extras(self, wf: Workflow, dataset: str) -> list[str]:
        """Other files its target rule builds (a test-server submission to upload)."""
        return []

    def subtitle(self) -> str:
        return ""

    @classmethod
    def about(cls) -> dict[str, str]:
        """Name, title, paper and what the table shows (its class docstring): the target
        rule's description, the report's caption and the head of its HTML page."""
        doc = inspect.getdoc(cls) if cls.__doc__ else None
        description = " ".join((doc or cls.title).split("\n\n")[0].replace("``", "").split())
        return {"name": cls.name, "title": cls.title, "paper": cls.paper, "short": cls.short,
                "description": description}

    def build(self, records: dict[str, Record], dataset: str) -> Table:
        columns, rows = self.rows(records)
        sub = self.subtitle()
        return Table(f"{self.title} — {self.paper} — {dataset}{', ' + sub if sub else ''}",
                     columns, rows)


def _seed_cells(record: Record) -> list[Any]:
    """Seed mIoU, +CRF mIoU (%), m_under, m_over of a record."""
    return [pct(record["miou"]), crf_pct(record), record["m_under"], record["m_over"]]


@register_table("cam_seeds")
class CamSeeds(PaperTable):
    """Seed mIoU, +CRF mIoU, best background threshold, m_under and m_over of each classifier's
    CAMs (one source) on the seeds' split."""

    paper = BASE
    short = "base pipeline"
    title = "CAM seeds per classifier (mIoU %)"

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        return {name: wf.eval_path(name, self.spec["source"], dataset)
                for name in self.spec["rows"]}

    def subtitle(self) -> str:
        return f"source {self.spec['source']}"

    def rows(self, records: dict[str, Record]) -> tuple[list[str], list[list[Any]]]:
        rows = [[name, pct(ev["miou"]), crf_pct(ev), f"{ev['threshold']:.2f}", ev["m_under"],
                 ev["m_over"]] for name, ev in ((n, records[n]) for n in self.spec["rows"])]
        return ["classifier", "seed_miou", "crf_miou", "best_threshold", "m_under",
                "m_over"], rows


def check_sources(wf: Workflow, spec: dict[str, Any], key: str) -> dict[str, Any]:
    """``spec`` after checking that every name of ``spec[key]`` is a configured CAM source."""
    for name in spec[key]:
        wf.source_config(name)
    return spec


def _source_columns(ev: Record) -> list[Any]:
    """What distinguishes a source in a table: method, layers, scales, flip (from provenance)."""
    prov = ev.get("provenance") or {}
    layers = prov.get("layers", prov.get("layer", "head"))
    if isinstance(layers, dict):
        layers = "+".join(f"stage{s}" for s in layers.get("stages", [])) or ",".join(
            layers.get("names", []))
    scales = "/".join(f"{s:g}" for s in prov.get("scales", []))
    return [prov.get("method", "?"), layers, scales, "yes" if prov.get("flip") else "no"]


class SourceTable(PaperTable):
    """Rows are CAM sources of one classifier (Fully-CAM Tables 2–4)."""

    paper = FULLCAM
    short = "Fully-CAM (Song et al.)"

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        return check_sources(wf, spec, "rows")

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        return {name: wf.eval_path(self.spec["classifier"], name, dataset)
                for name in self.spec["rows"]}

    def subtitle(self) -> str:
        return f"classifier {self.spec['classifier']} (seed mIoU %)"

    def rows(self, records: dict[str, Record]) -> tuple[list[str], list[list[Any]]]:
        rows = [[name, *_source_columns(ev), pct(ev["miou"]), f"{ev['threshold']:.2f}",
                 ev["m_under"], ev["m_over"]]
                for name, ev in ((n, records[n]) for n in self.spec["rows"])]
        return ["source", "method", "layers", "scales", "flip", "seed_miou", "best_threshold",
                "m_under", "m_over"], rows


@register_table("fullcam_table2")
class FullCamTable2(SourceTable):
    """Seed mIoU of Fully-CAM over the layers it fuses: the last conv of stage 5, then
    stages 4 and 3 added, then every conv layer."""

    title = "Fully-CAM: fused layers (Table 2)"


@register_table("fullcam_table3")
class FullCamTable3(SourceTable):
    """Seed mIoU of CAM, Grad-CAM, Grad-CAM++ and Fully-CAM on the same classifier."""

    title = "CAM vs Grad-CAM vs Grad-CAM++ vs Fully-CAM (Table 3)"


@register_table("fullcam_table4")
class FullCamTable4(SourceTable):
    """Seed mIoU of Fully-CAM over subsets of its test-time transformations (scales, flip)."""

    title = "Fully-CAM: test-time transformations (Table 4)"


@register_table("fullcam_table5")
class FullCamTable5(PaperTable):
    """Classifiers (rows) × CAM sources (columns) of seed mIoU (Fully-CAM Table 5)."""

    paper = FULLCAM
    short = "Fully-CAM (Song et al.)"
    title = "Plug and play over backbones (Table 5, seed mIoU %)"

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        return check_sources(wf, spec, "sources")

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        return {f"{c}/{s}": wf.eval_path(c, s, dataset)
                for c in self.spec["rows"] for s in self.spec["sources"]}

    def rows(self, records: dict[str, Record]) -> tuple[list[str], list[list[Any]]]:
        rows = []
        for c in self.spec["rows"]:
            cells = [records[f"{c}/{s}"] for s in self.spec["sources"]]
            arch = (cells[0].get("provenance") or {}).get("arch", "?")
            rows.append([c, arch, *(pct(ev["miou"]) for ev in cells)])
        return ["classifier", "backbone", *self.spec["sources"]], rows


@register_table("base_pipeline")
class BasePipeline(PaperTable):
    """Per classifier: seed mIoU, +CRF, the pseudo-mask mIoU of each refiner (on the seeds'
    split), DeepLab val mIoU (and +CRF) trained on the pseudo masks of
    ``segmentation_masks``, and trained on the ground truth (the upper bound)."""

    paper = BASE
    short = "base pipeline"
    title = "Base pipeline (mIoU %)"

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        for name in (*spec["refiners"], spec["segmentation_masks"]):
            wf.refiner_config(name)
        wf.segmenter_config(spec["segmenter"])
        return spec

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        s = self.spec
        eval_split = wf.dataset_config(dataset)["eval_split"]
        val = wf.dataset_config(dataset).get("val_split", "val")
        seg = f"results/{dataset}/segmentation/{s['segmenter']}"
        paths = {"upper_bound": f"{seg}/gt/{val}/eval.json"} if s["upper_bound"] else {}
        for name in s["rows"]:
            prefix = f"results/{dataset}/{name}/{s['source']}"
            paths[f"{name}/seeds"] = wf.eval_path(name, s["source"], dataset)
            paths |= {f"{name}/{r}": f"{prefix}/{r}/{eval_split}/eval.json"
                      for r in s["refiners"]}
            paths[f"{name}/deeplab"] = (f"{seg}/{name}/{s['source']}/{s['segmentation_masks']}/"
                                        f"{val}/eval.json")
        return paths

    def subtitle(self) -> str:
        s = self.spec
        return (f"source {s['source']}, DeepLab {s['segmenter']} on {s['segmentation_masks']} "
                "masks")

    def rows(self, records: dict[str, Record]) -> tuple[list[str], list[list[Any]]]:
        s = self.spec
        upper = [pct(records["upper_bound"]["miou"]), crf_pct(records["upper_bound"])] \
            if s["upper_bound"] else []
        rows = []
        for name in s["rows"]:
            seed, seg = records[f"{name}/seeds"], records[f"{name}/deeplab"]
            rows.append([name, pct(seed["miou"]), crf_pct(seed),
                         *(pct(records[f"{name}/{r}"]["miou"]) for r in s["refiners"]),
                         pct(seg["miou"]), crf_pct(seg), *upper])
        return ["classifier", "seed", "seed_crf", *(f"{r}_masks" for r in s["refiners"]),
                "deeplab", "deeplab_crf",
                *(["upper_bound", "upper_bound_crf"] if s["upper_bound"] else [])], rows


class GSLMTable(PaperTable):
    """A table over GSLM configurations of one classifier; ``resolve`` adds each
    configuration's number of stages, first source and modules."""

    paper = GSLM
    short = "GSLM (Mai et al.)"

    @classmethod
    def configurations(cls, spec: dict[str, Any]) -> list[str]:
        return list(spec["rows"])

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        names = cls.configurations(spec)
        return {**spec, "stages": {g: wf.gslm_config(g)["stages"] for g in names},
                "first_source": {g: wf.gslm_config(g)["first_source"] for g in names},
                "modules": {g: wf.gslm_modules(g) for g in names}}

    def stage(self, wf: Workflow, dataset: str, name: str, n: int) -> str:
        return wf.gslm_eval_path(self.spec["classifier"], name, n, dataset)

    def figures(self, wf: Workflow, dataset: str) -> list[str]:
        """Each configuration's CAMs stage by stage (GSLM, Mai et al., Fig. 4)."""
        return [f"results/{dataset}/{self.spec['classifier']}/{g}/stages.png"
                for g in self.configurations(self.spec)]

    def subtitle(self) -> str:
        return f"classifier {self.spec['classifier']} (seed mIoU %)"


@register_table("gslm_fig5")
class GSLMFig5(GSLMTable):
    """mIoU, m_under and m_over of every GSLM stage (stage 1 = the GLM's CAMs), one row per
    (configuration, stage), at each stage's best seed threshold."""

    title = "GSLM per stage (Fig. 5)"
    figure = "gslm_fig5"

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        return {f"{g}/stage{n}": self.stage(wf, dataset, g, n) for g in self.spec["rows"]
                for n in range(1, self.spec["stages"][g] + 1)}

    def rows(self, records: dict[str, Record]) -> tuple[list[str], list[list[Any]]]:
        rows = [[g, n, pct(ev["miou"]), ev["m_under"], ev["m_over"]]
                for g in self.spec["rows"] for n in range(1, self.spec["stages"][g] + 1)
                for ev in (records[f"{g}/stage{n}"],)]
        return ["gslm", "stage", "seed_miou", "m_under", "m_over"], rows


FIG8_SWEEPS = {"thresholds": "theta_bg/theta_fg", "k": "k", "iterations": "iterations"}


@register_table("gslm_fig8")
class GSLMFig8(GSLMTable):
    """Seed mIoU of GSLM against (θ_bg, θ_fg) of Coarse Generation (Eq. 3), k of Seed
    Reactivation (Eq. 4) and the number of SLM iterations; ``variants`` lists each sweep's
    points as [value, configuration, stage]."""

    title = "GSLM sensitivity (Fig. 8)"
    figure = "gslm_fig8"

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        return {**spec, "variants": wf.gslm_fig8_variants(spec)}

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        return {f"{sweep}/{value}": self.stage(wf, dataset, name, stage)
                for sweep in FIG8_SWEEPS for value, name, stage in self.spec["variants"][sweep]}

    def figures(self, wf: Workflow, dataset: str) -> list[str]:
        return [f"results/{dataset}/{self.spec['classifier']}/{self.spec['base']}/stages.png"]

    def subtitle(self) -> str:
        return f"classifier {self.spec['classifier']}, base {self.spec['base']} (seed mIoU %)"

    def rows(self, records: dict[str, Record]) -> tuple[list[str], list[list[Any]]]:
        rows = []
        for sweep, parameter in FIG8_SWEEPS.items():
            for value, name, stage in self.spec["variants"][sweep]:
                ev = records[f"{sweep}/{value}"]
                rows.append([parameter, value, name, stage, pct(ev["miou"]),
                             f"{ev['threshold']:.2f}", ev["m_under"], ev["m_over"]])
        return ["parameter", "value", "gslm", "stage", "seed_miou", "best_threshold",
                "m_under", "m_over"], rows


@register_table("gslm_table1")
class GSLMTable1(GSLMTable):
    """Seed / +CRF / Mask for CAM, for the random walks of CAM (PSA = AffinityNet, IRN: a
    row per refiner), and for each GSLM configuration (its last stage, and each refiner's
    masks of it); a column group per dataset of ``datasets`` (VOC and COCO, as the paper)."""

    title = "GSLM pseudo masks (Table 1)"

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        for name in spec["refiners"]:
            wf.refiner_config(name)
        for name in spec.get("datasets", []):
            wf.dataset_config(name)
        return super().resolve(wf, spec)

    def datasets(self, dataset: str) -> list[str]:
        return list(self.spec.get("datasets") or [dataset])

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        c = self.spec["classifier"]
        paths = {}
        for ds in self.datasets(dataset):
            split = wf.dataset_config(ds)["eval_split"]
            paths[f"{ds}/cam/seeds"] = wf.eval_path(c, "cam", ds)
            for r in self.spec["refiners"]:
                paths[f"{ds}/cam/{r}"] = f"results/{ds}/{c}/cam/{r}/{split}/eval.json"
            for g in self.spec["rows"]:
                last = self.spec["stages"][g]
                paths[f"{ds}/{g}/seeds"] = self.stage(wf, ds, g, last)
                for r in self.spec["refiners"]:
                    paths[f"{ds}/{g}/{r}"] = (f"results/{ds}/{c}/{g}/stage{last}/{r}/{split}/"
                                              "eval.json")
        return paths

    def subtitle(self) -> str:
        return (f"classifier {self.spec['classifier']} (mIoU %; Mask = the random walk of "
                f"{', '.join(self.spec['refiners'])})")

    def rows(self, records: dict[str, Record]) -> tuple[list[str], list[list[Any]]]:
        refiners = self.spec["refiners"]
        shown = list(dict.fromkeys(key.split("/", 1)[0] for key in records))  # input order

        def cells(key: str, masks: str | None) -> list[Any]:
            """Seed, CRF, a Mask per refiner (only ``masks``'s for a CAM random-walk row),
            m_under, m_over on every dataset."""
            out: list[Any] = []
            for ds in shown:
                seed, crf, under, over = _seed_cells(records[f"{ds}/{key}/seeds"])
                mask = [pct(records[f"{ds}/{key}/{r}"]["miou"]) if masks in (None, r) else "-"
                        for r in refiners]
                out += [seed, crf, *mask, under, over]
            return out

        stages = self.spec["stages"]
        rows = [["CAM", 1, *cells("cam", "")]]
        rows += [[f"random walk ({r})", 1, *cells("cam", r)] for r in refiners]
        rows += [[g, stages[g], *cells(g, None)] for g in self.spec["rows"]]
        group = ["seed", "crf", *(f"mask_{r}" for r in refiners), "m_under", "m_over"]
        columns = [f"{ds}: {c}" if len(shown) > 1 else c for ds in shown for c in group]
        return ["method", "stages", *columns], rows


@register_table("gslm_table4")
class GSLMTable4(GSLMTable):
    """Seed mIoU of a CAM source and after GSLM on it (its last stage)."""

    title = "GSLM on other CAM sources (Table 4)"

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        return {f"{g}/{n}": self.stage(wf, dataset, g, n) for g in self.spec["rows"]
                for n in (1, self.spec["stages"][g])}

    def rows(self, records: dict[str, Record]) -> tuple[list[str], list[list[Any]]]:
        rows = []
        for g in self.spec["rows"]:
            last = self.spec["stages"][g]
            before, after = records[f"{g}/1"], records[f"{g}/{last}"]
            rows.append([self.spec["first_source"][g], g, last, pct(before["miou"]),
                         pct(after["miou"]), pct(after["miou"] - before["miou"])])
        return ["source", "gslm", "stages", "seed", "gslm_seed", "gain"], rows


@register_table("gslm_table5")
class GSLMTable5(GSLMTable):
    """The baseline CAM, each ablation, and the full GSLM without and with iterations, with
    the paper's check-mark columns (CR, SR, L_cls, Iter) read from each configuration."""

    title = "GSLM ablation (Table 5)"

    @classmethod
    def configurations(cls, spec: dict[str, Any]) -> list[str]:
        return [*spec["rows"], spec["full"]]

    def variants(self) -> list[tuple[str, str, int]]:
        """(label, configuration, stage) in the paper's order."""
        full, stages = self.spec["full"], self.spec["stages"]
        return [("CAM (baseline)", full, 1), *((g, g, stages[g]) for g in self.spec["rows"]),
                (f"{full} w/o iterations", full, 2), (full, full, stages[full])]

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        return {label: self.stage(wf, dataset, g, n) for label, g, n in self.variants()}

    def subtitle(self) -> str:
        return f"classifier {self.spec['classifier']} (seed mIoU %; Iter = SLM iterations)"

    def rows(self, records: dict[str, Record]) -> tuple[list[str], list[list[Any]]]:
        rows = []
        for label, g, stage in self.variants():
            modules = self.spec["modules"][g]
            marks = ["-"] * 3 if stage == 1 else ["x" if modules[m] else "" for m in
                                                  ("CR", "SR", "L_cls")]
            rows.append([label, *marks, stage - 1, *_seed_cells(records[label])])
        return ["variant", "CR", "SR", "L_cls", "iter", "seed", "crf", "m_under", "m_over"], rows


@register_table("claims")
class Claims(PaperTable):
    """One row per directional claim of the papers (``claims``: camflow.claims), with the
    two numbers compared and whether the claim holds on each benchmark of ``datasets``;
    every number is read from an evaluation record, and a claim that fails says so."""

    paper = "the papers camflow implements"
    short = "claims"
    title = "Do the papers' claims hold?"
    figure = "claims"
    schema: ClassVar[dict[str, Any]] = {
        "additionalProperties": False,
        "required": ["classifier", "claims"],
        "properties": {
            "datasets": {"type": "array", "items": {"$ref": "#/$defs/name"}, "minItems": 1,
                         "description": "a column group each (default: the table's dataset)"},
            "classifier": {"$ref": "#/$defs/name",
                           "description": "whose records the claims read (a claim may "
                           "name its own)"},
            "claims": {"type": "object", "minProperties": 1,
                       "additionalProperties": {"type": ["object", "null"]},
                       "description": "claim name (camflow/claims.py) -> its settings; "
                       "null leaves the claim out (an overlay's way to drop one)"},
        },
    }

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        from camflow.claims import claim_class
        from camflow.schema import extend, validate_block
        from camflow.workflow import config_error

        for name in spec.get("datasets", []):
            wf.dataset_config(name)
        claims = {}
        for name, block in spec["claims"].items():
            claim = claim_class(name)
            if block is None:
                continue
            own = extend({"type": "object", "properties": {"classifier": {
                "$ref": "#/$defs/name", "default": spec["classifier"]}}}, claim.schema)
            block = validate_block(block, f"tables.claims.claims.{name}", own,
                                   wf.schema["$defs"])
            wf.classifier_config(block["classifier"])
            claims[name] = claim.resolve(wf, block)
        if not claims:
            config_error("tables.claims.claims", "every claim is null: nothing to compare")
        return {**spec, "claims": claims}

    def datasets(self, dataset: str) -> list[str]:
        return list(self.spec.get("datasets") or [dataset])

    def claims(self) -> list[Claim]:
        from camflow.claims import claim_class

        return [claim_class(name)(block) for name, block in self.spec["claims"].items()]

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        return {f"{ds}/{claim.name}/{key}": path for ds in self.datasets(dataset)
                for claim in self.claims() for key, path in claim.inputs(wf, ds).items()}

    def outcomes(self, records: dict[str, Record], dataset: str) -> list[
            tuple[Claim, Comparison, dict[str, tuple[float | None, float | None, bool | None]]]]:
        """(claim, comparison, {benchmark: (left, right, holds)}) per row, in config order."""
        out = []
        for claim in self.claims():
            own = {ds: {k.split("/", 2)[2]: r for k, r in records.items()
                        if k.startswith(f"{ds}/{claim.name}/")}
                   for ds in self.datasets(dataset)}
            own = {ds: claim.derive(recs) for ds, recs in own.items()}
            out += [(claim, comp, {ds: (*comp.values(recs), comp.holds(recs))
                                   for ds, recs in own.items()})
                    for comp in claim.comparisons()]
        return out

    def build(self, records: dict[str, Record], dataset: str) -> Table:
        from camflow.claims import METRICS

        datasets = self.datasets(dataset)
        rows, held = [], dict.fromkeys(datasets, 0)
        for claim, comp, cells in self.outcomes(records, dataset):
            row = [claim.paper, claim.where, comp.statement, comp.metrics]
            for ds in datasets:
                left, right, holds = cells[ds]
                as_pct = METRICS[comp.metric][1]
                row += [pct(v) if as_pct else ("-" if v is None else f"{v:.3f}")
                        for v in (left, right)]
                row.append({True: "yes", False: "NO", None: "-"}[holds])
                held[ds] += bool(holds)
            rows.append(row)
        columns = ["paper", "where", "claim", "metric",
                   *(f"{ds}: {c}" for ds in datasets for c in ("left", "right", "holds"))]
        tally = ", ".join(f"{ds} {held[ds]}/{len(rows)}" for ds in datasets)
        return Table(f"{self.title} — holds on {tally}", columns, rows)


# --------------------------------------------------------------------------- P-NOC

STRATEGIES_SCHEMA: dict[str, Any] = {
    "type": "object", "minProperties": 1,
    "additionalProperties": {"$ref": "#/$defs/name"},
    "description": "column label -> classifier (its replicates are averaged)",
}


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for one value)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else None


class StrategyTable(PaperTable):
    """A P-NOC table over ``strategies`` (label → classifier), each classifier's replicates
    (``classifiers.<name>.replicates``) averaged."""

    paper = PNOC
    short = "P-NOC"

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        return {**spec, "replicates": {label: wf.replicate_names(name)
                                       for label, name in spec["strategies"].items()}}

    def replicate_keys(self, label: str) -> list[str]:
        return [f"{label}/r{i}" for i in range(len(self.spec["replicates"][label]))]

    def subtitle(self) -> str:
        counts = {len(names) for names in self.spec["replicates"].values()}
        runs = "/".join(str(n) for n in sorted(counts))
        return f"source {self.spec['source']}, mean of {runs} run(s) per strategy"


@register_table("pnoc_table1")
class PnocClassTable(StrategyTable):
    """P-NOC (David et al.) Tables 1 and 3: each strategy's IoU per class (``per_class``) and
    per class group, beside the class properties O, %S, %C, L of the evaluation split; the
    overall mean and the standard deviation over classes; Pearson's ρ (×100) between each
    property and the properties and IoUs over the foreground classes."""

    title = "Priors per class and class group (IoU %)"
    schema: ClassVar[dict[str, Any]] = {
        "additionalProperties": False,
        "required": ["strategies"],
        "properties": {
            "strategies": STRATEGIES_SCHEMA,
            "source": {"$ref": "#/$defs/name", "default": "cam"},
            "per_class": {"type": "boolean", "default": False,
                          "description": "a row per class (Table 3), not only the groups"},
            "properties": {"type": "boolean", "default": True,
                           "description": "the O, %S, %C, L columns, groups and correlations"},
        },
    }

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        out = {key: wf.eval_path(name, self.spec["source"], dataset)
               for label, names in self.spec["replicates"].items()
               for key, name in zip(self.replicate_keys(label), names, strict=True)}
        if self.spec["properties"]:
            split = wf.dataset_config(dataset)["eval_split"]
            out["properties"] = f"results/{dataset}/class_properties/{split}.json"
        return out

    def class_iou(self, records: dict[str, Record], label: str) -> dict[str, float | None]:
        """IoU (%) of every class, the mean over the strategy's replicates."""
        runs = [{c["class"]: c["iou"] for c in records[k]["per_class"]}
                for k in self.replicate_keys(label)]
        return {name: (None if any(r[name] is None for r in runs)
                       else 100 * float(np.mean([r[name] for r in runs])))
                for name in runs[0]}

    def rows(self, records: dict[str, Record]) -> tuple[list[str], list[list[Any]]]:
        from camflow.class_properties import PROPERTIES, class_groups, pearson

        labels = list(self.spec["strategies"])
        ious = {label: self.class_iou(records, label) for label in labels}
        classes = list(next(iter(ious.values())))
        fg = classes[1:]
        props = records["properties"]["classes"] if self.spec["properties"] else None

        def prop_cells(names: list[str]) -> list[Any]:
            if props is None:
                return []
            cells = []
            for p in PROPERTIES:
                vals = [props[c][p] for c in names if props[c][p] is not None]
                v = float(np.mean(vals)) if vals else None
                cells.append("-" if v is None else (100 * v if "%" in p else v))
            return cells

        def iou_cells(names: list[str]) -> list[Any]:
            out = []
            for label in labels:
                vals = [ious[label][c] for c in names if ious[label][c] is not None]
                out.append(float(np.mean(vals)) if vals else "-")
            return out

        columns = ["class", *(PROPERTIES if props is not None else []), *labels]
        rows: list[list[Any]] = []
        if self.spec["per_class"]:
            rows += [[c, *prop_cells([c]), *iou_cells([c])] for c in classes]
        overall = [mean_sd([100 * records[k]["miou"] for k in self.replicate_keys(label)])
                   for label in labels]
        rows.append(["overall μ", *prop_cells(fg), *(m for m, _ in overall)])
        spread = [float(np.std([ious[label][c] for c in classes
                                if ious[label][c] is not None])) for label in labels]
        sd_props = []
        if props is not None:
            for p in PROPERTIES:
                vals = [props[c][p] for c in fg if props[c][p] is not None]
                sd_props.append(float(np.std(vals)) * (100 if "%" in p else 1)
                                if vals else "-")
        rows.append(["overall σ (classes)", *sd_props, *spread])
        if any(sd is not None for _, sd in overall):
            rows.append(["overall σ (runs)", *(["-"] * len(sd_props)),
                         *("-" if sd is None else sd for _, sd in overall)])
        if props is None:
            return columns, rows
        groups_of = class_groups(props, records["properties"]["format"], fg)
        for kind, groups in groups_of.items():
            for group, members in groups.items():
                members = [c for c in members if c in ious[labels[0]]]
                if members:
                    rows.append([f"{kind}: {group}", *prop_cells(members),
                                 *iou_cells(members)])
        series = {p: [props[c][p] for c in fg] for p in PROPERTIES}
        series.update({label: [ious[label][c] for c in fg] for label in labels})
        for p in PROPERTIES:
            rows.append([f"ρ {p}", *(("-" if (r := pearson(series[p], series[q])) is None
                                      else 100 * r) for q in (*PROPERTIES, *labels))])
        return columns, rows


@register_table("pnoc_table3")
class PnocTable3(PnocClassTable):
    """P-NOC (David et al.) Table 3: Table 1 with a row per class and P-OC+LS, P-NOC+LS."""

    title = "Priors per class, with P-OC+LS and P-NOC+LS (IoU %)"


@register_table("pnoc_table5")
class PnocTable5(PnocClassTable):
    """P-NOC (David et al.) Table 5 (MS COCO 2014): each strategy's IoU per class."""

    title = "Priors per class (IoU %)"


@register_table("pnoc_table2")
class PnocEpochTable(StrategyTable):
    """P-NOC (David et al.) Tables 2 and 4: the priors' mIoU after each epoch, without TTA,
    on the evaluation split (E1…En, ``eval_epochs``), and with TTA at the end (the CAM
    source's evaluation), each the mean over the strategy's replicates; the figure is Fig. 6:
    mIoU and FPR/FNR against the foreground threshold."""

    title = "Priors after each epoch (mIoU %)"
    figure = "pnoc_fig6"
    schema: ClassVar[dict[str, Any]] = {
        "additionalProperties": False,
        "required": ["strategies"],
        "properties": {"strategies": STRATEGIES_SCHEMA,
                       "source": {"$ref": "#/$defs/name", "default": "cam"}},
    }

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        from camflow.workflow import config_error

        for label, name in spec["strategies"].items():
            if not wf.classifier_config(name).get("keep_epochs"):
                config_error(f"tables.{cls.name}.strategies.{label}",
                             f"classifier {name!r} needs `keep_epochs: true`")
        return super().resolve(wf, spec)

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        split = wf.dataset_config(dataset)["eval_split"]
        out = {}
        for label, names in self.spec["replicates"].items():
            for key, name in zip(self.replicate_keys(label), names, strict=True):
                out[f"{key}/epochs"] = f"results/{dataset}/{name}/epoch_eval/{split}.json"
                out[f"{key}/tta"] = wf.eval_path(name, self.spec["source"], dataset)
        return out

    def rows(self, records: dict[str, Record]) -> tuple[list[str], list[list[Any]]]:
        rows, width = [], 0
        for label in self.spec["strategies"]:
            keys = self.replicate_keys(label)
            per_run = [[e["miou"] for e in records[f"{k}/epochs"]["epochs"]] for k in keys]
            width = max(width, *(len(r) for r in per_run))
            epochs = [100 * float(np.mean([r[e] for r in per_run if e < len(r)]))
                      for e in range(max(len(r) for r in per_run))]
            tta, sd = mean_sd([100 * records[f"{k}/tta"]["miou"] for k in keys])
            rows.append([label, len(keys), *epochs, tta, "-" if sd is None else sd])
        rows = [r[:-2] + ["-"] * (width + 4 - len(r)) + r[-2:] for r in rows]  # pad epochs
        return ["strategy", "runs", *(f"E{e}" for e in range(1, width + 1)), "TTA",
                "TTA σ (runs)"], rows


@register_table("pnoc_table4")
class PnocTable4(PnocEpochTable):
    """P-NOC (David et al.) Table 4 (MS COCO 2014): Table 2's per-epoch mIoU."""


# --------------------------------------------------------------------------- segmentation

SEGMENTATION_ROWS_SCHEMA: dict[str, Any] = {
    "type": "object", "minProperties": 1,
    "additionalProperties": {"oneOf": [
        {"type": "string"},
        {"type": "object", "additionalProperties": False, "required": ["masks"],
         "properties": {"masks": {"type": "string"}, "segmenter": {"$ref": "#/$defs/name"}}},
    ]},
    "description": "row label -> the pseudo masks that train its segmenter "
                   "({classifier}/{source}/{refiner}, a GSLM stage as source, or gt), or "
                   "{masks, segmenter} for a segmenter other than the table's",
}

SERVER_RESULT = "server.json"


class SegmentationTable(PaperTable):
    """Segmentation mIoU (%) of DeepLab trained on pseudo-mask sets, one row per (pseudo-mask
    set → segmenter) pair: on the dataset's ``val_split`` at scale 1 without flip, with the
    multi-scale + flip of ``segmentation_eval`` and with its dense CRF; and, on a dataset
    with a ``test_split`` (VOC 2012 test, masks withheld), the mIoU the evaluation server
    reported, which the user writes to
    ``results/{dataset}/segmentation/{segmenter}/{masks}/{test_split}/server.json`` as
    ``{"miou": <percent>}`` (the cell stays empty until then; the table's target builds
    the submission archive to upload beside it)."""

    schema: ClassVar[dict[str, Any]] = {
        "additionalProperties": False,
        "required": ["segmenter", "rows"],
        "properties": {
            "segmenter": {"$ref": "#/$defs/name",
                          "description": "the segmenter of rows that name only masks"},
            "rows": SEGMENTATION_ROWS_SCHEMA,
        },
    }

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        rows = {}
        for label, row in spec["rows"].items():
            row = {"masks": row} if isinstance(row, str) else row
            key = f"tables.{cls.name}.rows.{label}"
            rows[label] = {"masks": wf.check_masks(row["masks"], key),
                           "segmenter": row.get("segmenter", spec["segmenter"])}
            wf.segmenter_config(rows[label]["segmenter"])
        return {**spec, "rows": rows}

    columns_note: ClassVar[str] = (
        "Columns: val mIoU at scale 1 without flip (val), with the multi-scale + flip of "
        "segmentation_eval (val_msf) and with its dense CRF (val_crf); test: the evaluation "
        "server's mIoU, from server.json beside the row's submission.tar.gz.")

    @classmethod
    def about(cls) -> dict[str, str]:
        """Its own description, then what the columns are."""
        about = super().about()
        about["description"] = f"{about['description']} {cls.columns_note}".strip()
        return about

    def run_dir(self, dataset: str, label: str) -> str:
        row = self.spec["rows"][label]
        return f"results/{dataset}/segmentation/{row['segmenter']}/{row['masks']}"

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        """Each row's val evaluation, and its test-server result where the user has written
        one (checked here, when the workflow is parsed; a new one reruns the table)."""
        ds = wf.dataset_config(dataset)
        paths = {}
        for label in self.spec["rows"]:
            paths[f"{label}/val"] = (f"{self.run_dir(dataset, label)}/"
                                  f"{ds.get('val_split', 'val')}/eval.json")
            if "test_split" in ds:
                server = f"{self.run_dir(dataset, label)}/{ds['test_split']}/{SERVER_RESULT}"
                if Path(server).exists():
                    read_server_result(server)
                    paths[f"{label}/test"] = server
        return paths

    def extras(self, wf: Workflow, dataset: str) -> list[str]:
        """The submission archive of every row, on a dataset with a test split."""
        split = wf.dataset_config(dataset).get("test_split")
        return [f"{self.run_dir(dataset, label)}/{split}/submission.tar.gz"
                for label in self.spec["rows"]] if split else []

    def subtitle(self) -> str:
        return f"segmenter {self.spec['segmenter']}"

    def rows(self, records: dict[str, Record]) -> tuple[list[str], list[list[Any]]]:
        test = any(k.endswith("/test") for k in records)
        rows = []
        for label, row in self.spec["rows"].items():
            val = records[f"{label}/val"]
            cells = [label, row["masks"], row["segmenter"],
                     pct((val.get("single_scale") or {}).get("miou")), pct(val["miou"]),
                     crf_pct(val)]
            if test:
                server = records.get(f"{label}/test")
                cells.append("" if server is None else float(server["miou"]))
            rows.append(cells)
        columns = ["method", "masks", "segmenter", "val", "val_msf", "val_crf"]
        return columns + (["test"] if test else []), rows


def read_server_result(path: str | Path) -> dict[str, Any]:
    """A test-server result the user wrote (``{"miou": <percent>}``), checked."""
    import json

    try:
        result = json.loads(Path(path).read_text())
        miou = result["miou"]
        if isinstance(miou, bool) or not isinstance(miou, int | float) or not 0 <= miou <= 100:
            raise ValueError(f"miou must be a percentage in 0..100, got {miou!r}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CamflowInputError(f"{path}: not a test-server result {{\"miou\": <percent>}} "
                                f"({exc})") from exc
    return result


@register_table("gslm_table2")
class GSLMTable2(SegmentationTable):
    """GSLM (Mai et al.) Table 2: DeepLab trained on GSLM's and GSLM⁺'s pseudo masks, PASCAL
    VOC 2012 val and test."""

    paper = GSLM
    short = "GSLM (Mai et al.)"
    title = "Segmentation, VOC val / test (Table 2)"


@register_table("gslm_table3")
class GSLMTable3(SegmentationTable):
    """GSLM (Mai et al.) Table 3: DeepLab trained on GSLM's pseudo masks, MS COCO 2014 val."""

    paper = GSLM
    short = "GSLM (Mai et al.)"
    title = "Segmentation, COCO val (Table 3)"


@register_table("fullcam_table6")
class FullCamTable6(SegmentationTable):
    """Fully-CAM (Song et al.) Table 6: DeepLab trained on IRN's masks of Fully-CAM, PASCAL
    VOC 2012 val and test (image-level labels only)."""

    paper = FULLCAM
    short = "Fully-CAM (Song et al.)"
    title = "Segmentation, VOC val / test (Table 6)"


@register_table("fullcam_table7")
class FullCamTable7(FullCamTable6):
    """Fully-CAM (Song et al.) Table 7: the rows of Table 6 that the paper sets against
    methods with extra supervision (its ResNet-101 row)."""

    title = "Segmentation against extra supervision, VOC val / test (Table 7)"


@register_table("fullcam_table1")
class FullCamTable1(SegmentationTable):
    """Fully-CAM (Song et al.) Table 1: per-class IoU (%) on the val split of DeepLab trained
    on IRN's masks of Fully-CAM, one column per class and the mean, from the evaluation
    ``column`` (``crf``: multi-scale + flip + CRF; ``msf``; ``single``: scale 1)."""

    paper = FULLCAM
    short = "Fully-CAM (Song et al.)"
    title = "Segmentation per class, val (Table 1)"
    columns_note = ""
    schema: ClassVar[dict[str, Any]] = {
        **SegmentationTable.schema,
        "properties": {
            **SegmentationTable.schema["properties"],
            "column": {"enum": ["crf", "msf", "single"], "default": "crf",
                       "description": "which evaluation of the val split the row shows"},
        },
    }

    def extras(self, wf: Workflow, dataset: str) -> list[str]:
        return []

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        return {k: v for k, v in super().inputs(wf, dataset).items() if k.endswith("/val")}

    def subtitle(self) -> str:
        return f"segmenter {self.spec['segmenter']}, {self.spec['column']} evaluation"

    def rows(self, records: dict[str, Record]) -> tuple[list[str], list[list[Any]]]:
        def metrics(record: Record) -> Record:
            column = self.spec["column"]
            chosen = {"msf": record, "crf": record.get("crf"),
                      "single": record.get("single_scale")}[column]
            if not chosen:
                raise CamflowInputError(f"tables.{self.name}.column: the evaluation has no "
                                        f"{column!r} result (segmentation_eval)")
            return chosen

        chosen = {label: metrics(records[f"{label}/val"]) for label in self.spec["rows"]}
        classes = [c["class"] for c in next(iter(chosen.values()))["per_class"]]
        rows = [[label, *(pct(c["iou"]) for c in m["per_class"]), pct(m["miou"])]
                for label, m in chosen.items()]
        return ["method", *classes, "mean"], rows


# ---------------------------------------------------------------------------------------------
# P-NOC's saliency and pseudo-mask tables (David et al., Tables 6–8 and 10)

_MASKS_SCHEMA: dict[str, Any] = {
    "type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_-]+(/stage[0-9]+)?/"
                                 "[A-Za-z0-9_-]+$",
    "description": "pseudo masks {classifier}/{source}/{refiner}"}


@register_table("pnoc_table6")
class PnocTable6(PaperTable):
    """P-NOC (David et al.) Table 6: saliency maps of C²AM and C²AM-H (hints from a
    classifier's priors) combined with segmentation priors — background where not salient,
    the prior's class where salient — scored by mIoU on the seeds' split at the best saliency
    threshold (P.), and the same for the maps of the saliency refiner trained on them (R.,
    camflow's binary segmenter in place of PoolNet); with the ground truth as the priors
    (``gt``), a pixel is right when it is salient and annotated with a class."""

    paper = PNOC
    short = "P-NOC"
    title = "Saliency with segmentation priors (Table 6, mIoU %)"
    schema: ClassVar[dict[str, Any]] = {
        "additionalProperties": False,
        "required": ["rows"],
        "properties": {"rows": {
            "type": "object", "minProperties": 1,
            "description": "row label -> {saliency, priors: classifier/source | gt, refined}",
            "additionalProperties": {
                "type": "object", "additionalProperties": False,
                "required": ["saliency", "priors"],
                "properties": {
                    "saliency": {"$ref": "#/$defs/name"},
                    "priors": {"type": "string",
                               "pattern": "^(gt|[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_-]+)$"},
                    "refined": {"$ref": "#/$defs/name",
                                "description": "the saliency source of the R. column"}}}}},
    }

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        for label, row in spec["rows"].items():
            key = f"tables.{cls.name}.rows.{label}"
            wf.saliency_config(row["saliency"], f"{key}.saliency")
            if "refined" in row:
                wf.saliency_config(row["refined"], f"{key}.refined")
            if row["priors"] != "gt":
                wf.classifier_config(row["priors"].split("/")[0])
        return spec

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        paths = {}
        for label, row in self.spec["rows"].items():
            paths[f"{label}/P"] = wf.saliency_eval_path(row["saliency"], row["priors"], dataset)
            if "refined" in row:
                paths[f"{label}/R"] = wf.saliency_eval_path(row["refined"], row["priors"],
                                                            dataset)
        return paths

    def figures(self, wf: Workflow, dataset: str) -> list[str]:
        """Each saliency source's maps on a few images (P-NOC Fig. 8)."""
        split = wf.dataset_config(dataset)["eval_split"]
        names = dict.fromkeys(n for row in self.spec["rows"].values()
                              for n in (row["saliency"], row.get("refined")) if n)
        return [f"results/{dataset}/saliency/{n}/{split}/figure.png" for n in names]

    def rows(self, records: dict[str, Record]) -> tuple[list[str], list[list[Any]]]:
        rows = []
        for label, row in self.spec["rows"].items():
            p, r = records[f"{label}/P"], records.get(f"{label}/R")
            rows.append([label, row["saliency"], row["priors"], pct(p["miou"]),
                         f"{p['threshold']:.2f}", "" if r is None else pct(r["miou"]),
                         "" if r is None else f"{r['threshold']:.2f}"])
        return ["method", "saliency", "priors", "P.", "P. threshold", "R.",
                "R. threshold"], rows


@register_table("pnoc_table7")
class PnocTable7(PaperTable):
    """P-NOC (David et al.) Table 7: mIoU of the random-walk pseudo masks of each strategy's
    priors — with the conventional affinity labels or the saliency-aware ones of C²AM-H
    (Sec. 5), for P-OC or P-NOC (+NOC) — on the seeds' split (train) and on the
    segmentation's (val)."""

    paper = PNOC
    short = "P-NOC"
    title = "Random-walk pseudo masks (Table 7, mIoU %)"
    schema: ClassVar[dict[str, Any]] = {
        "additionalProperties": False,
        "required": ["rows"],
        "properties": {"rows": {"type": "object", "minProperties": 1,
                                "description": "row label -> {classifier}/{source}/{refiner}",
                                "additionalProperties": _MASKS_SCHEMA}},
    }

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        rows = {label: wf.check_masks(masks, f"tables.{cls.name}.rows.{label}")
                for label, masks in spec["rows"].items()}
        return {**spec, "rows": rows}

    def splits(self, wf: Workflow, dataset: str) -> list[str]:
        ds = wf.dataset_config(dataset)
        return [ds["eval_split"], *([ds["val_split"]] if "val_split" in ds else [])]

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        return {f"{label}/{split}": f"results/{dataset}/{masks}/{split}/eval.json"
                for label, masks in self.spec["rows"].items()
                for split in self.splits(wf, dataset)}

    def rows(self, records: dict[str, Record]) -> tuple[list[str], list[list[Any]]]:
        labels = list(self.spec["rows"])
        splits = [k.rsplit("/", 1)[1] for k in records if k.rsplit("/", 1)[0] == labels[0]]
        rows = [[label, self.spec["rows"][label],
                 *(pct(records[f"{label}/{s}"]["miou"]) for s in splits)] for label in labels]
        return ["method", "masks", *splits], rows


@register_table("pnoc_table8")
class PnocTable8(SegmentationTable):
    """P-NOC (David et al.) Table 8 (its own rows): DeepLab trained on the random-walk pseudo
    masks of P-OC and P-NOC with C²AM-H's saliency-aware affinity labels, PASCAL VOC 2012
    val and test."""

    paper = PNOC
    short = "P-NOC"
    title = "Segmentation, VOC val / test (Table 8)"


@register_table("pnoc_table10")
class PnocTable10(FullCamTable1):
    """P-NOC (David et al.) Table 10: per-class IoU (%) of DeepLab trained on the pseudo
    masks of P-OC and P-NOC refined with C²AM-H and the random walk, one column per class and
    the mean, from the evaluation ``column`` (``crf``, ``msf`` or ``single``)."""

    paper = PNOC
    short = "P-NOC"
    title = "Segmentation per class (Table 10)"
