"""The papers' directional claims, checked on evaluation records (the ``claims`` table).

Each paper camflow implements claims that its method moves a number one way — "GSLM stage
n+1 has a higher seed mIoU than stage n", "Fully-CAM beats CAM".  A :class:`Claim` is one
such claim, registered by name (``tables.claims.claims.<name>`` in config, with its own
settings): it names the evaluation records it reads on a dataset (``inputs``) and the
:class:`Comparison` s it makes of them — two numbers, each a metric of one record, and the
relation the paper states.  Nothing is typed in: every number comes from an ``eval.json``,
and a claim that does not hold is reported as such.  P-NOC's, BAS's and HSC's claims
register here too.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from camflow.registry import Registry

if TYPE_CHECKING:
    from camflow.workflow import Workflow

Record = dict[str, Any]

#: The relations a claim may state, as printed and as computed.
RELATIONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, "≥": operator.ge, "<": operator.lt, "≤": operator.le}

#: Metric name -> (value of a record, whether it is a ratio printed as a percentage).
METRICS: dict[str, tuple[Callable[[Record], float | None], bool]] = {
    "mIoU": (lambda r: r["miou"], True),
    "+CRF mIoU": (lambda r: (r.get("crf") or {}).get("miou"), True),
    "m_under": (lambda r: r["m_under"], False),
    "m_over": (lambda r: r["m_over"], False),
    "mIoU gain, 2nd half": (lambda r: r["late_gain"], True),
    "IoU, singletons": (lambda r: r["singleton_iou"], True),
    "IoU, co-occurring": (lambda r: r["cooccurring_iou"], True),
}


@dataclass(frozen=True)
class Comparison:
    """``metric(records[lhs]) relation rhs_metric(records[rhs])``, stated as ``statement``
    (``rhs_metric`` defaults to ``metric``)."""

    statement: str
    metric: str
    lhs: str
    relation: str
    rhs: str
    rhs_metric: str | None = None

    @property
    def metrics(self) -> str:
        """The metric, or both when they differ (``+CRF mIoU vs mIoU``)."""
        other = self.rhs_metric or self.metric
        return self.metric if other == self.metric else f"{self.metric} vs {other}"

    def values(self, records: dict[str, Record]) -> tuple[float | None, float | None]:
        return (METRICS[self.metric][0](records[self.lhs]),
                METRICS[self.rhs_metric or self.metric][0](records[self.rhs]))

    def holds(self, records: dict[str, Record]) -> bool | None:
        """Whether the claim holds (None when a number is missing, e.g. no CRF)."""
        a, b = self.values(records)
        return None if a is None or b is None else RELATIONS[self.relation](a, b)


class Claim:
    """One claim of a paper (module doc); ``spec`` is its resolved config block, with the
    ``classifier`` whose records it reads."""

    name: ClassVar[str]
    paper: ClassVar[str]
    where: ClassVar[str]                   # the table or figure of the paper, e.g. "Fig. 5"
    schema: ClassVar[dict[str, Any]]       # its config block (``classifier`` is added)

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        """``spec`` checked against the config (names it refers to exist)."""
        return spec

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        """The evaluation records it reads on ``dataset``, by key."""
        raise NotImplementedError

    def comparisons(self) -> list[Comparison]:
        raise NotImplementedError

    def derive(self, records: dict[str, Record]) -> dict[str, Record]:
        """The records the comparisons read, from those read (by default the same; a claim
        over replicated classifiers averages them here)."""
        return records

    def seeds(self, wf: Workflow, dataset: str, source: str) -> str:
        return wf.eval_path(self.spec["classifier"], source, dataset)

    def masks(self, wf: Workflow, dataset: str, source: str, refiner: str) -> str:
        split = wf.dataset_config(dataset)["eval_split"]
        return f"results/{dataset}/{self.spec['classifier']}/{source}/{refiner}/{split}/eval.json"


CLAIMS: Registry[type[Claim]] = Registry("claim", ())


def register_claim(name: str):
    """Class decorator: register a :class:`Claim` under ``name``."""
    return CLAIMS.register(name)


def claim_class(name: str) -> type[Claim]:
    return CLAIMS.get(name, f"tables.claims.claims.{name}")


GSLM = "GSLM (Mai et al.)"
FULLCAM = "Fully-CAM (Song et al.)"
BASE = "base pipeline (IRN, AffinityNet)"

_NAME = {"$ref": "#/$defs/name"}
_ORDER = {"type": "array", "items": _NAME, "minItems": 2,
          "description": "CAM sources, the one the paper ranks lowest first"}


def _block(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": required,
            "properties": properties}


@register_claim("crf")
class SeedCRF(Claim):
    """A dense CRF improves the CAM seeds (IRN's label CRF; GSLM Table 1, Seed → CRF)."""

    paper = BASE
    where = "IRN Table 1 / GSLM Table 1"
    schema = _block(["source"], {"source": _NAME})

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        wf.source_config(spec["source"])
        return spec

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        return {"seeds": self.seeds(wf, dataset, self.spec["source"])}

    def comparisons(self) -> list[Comparison]:
        s = self.spec["source"]
        return [Comparison(f"{s} seeds + CRF > {s} seeds", "+CRF mIoU", "seeds", ">", "seeds",
                           rhs_metric="mIoU")]


@register_claim("random_walk")
class RandomWalk(Claim):
    """The random walk over learned affinities turns seeds into better pseudo masks (IRN
    Table 1: 48.3 → 66.3; AffinityNet: → 59.7)."""

    paper = BASE
    where = "IRN Table 1"
    schema = _block(["source", "refiners"], {
        "source": _NAME, "refiners": {"type": "array", "items": _NAME, "minItems": 1}})

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        wf.source_config(spec["source"])
        for name in spec["refiners"]:
            wf.refiner_config(name)
        return spec

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        s = self.spec["source"]
        return {"seeds": self.seeds(wf, dataset, s),
                **{r: self.masks(wf, dataset, s, r) for r in self.spec["refiners"]}}

    def comparisons(self) -> list[Comparison]:
        s = self.spec["source"]
        return [Comparison(f"{r} masks > {s} seeds", "mIoU", r, ">", "seeds")
                for r in self.spec["refiners"]]


class GSLMClaim(Claim):
    """A claim about the stages of GSLM configurations."""

    paper = GSLM

    @classmethod
    def configurations(cls, spec: dict[str, Any]) -> list[str]:
        return [spec["gslm"]]

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        return {**spec, "stages": {g: wf.gslm_config(g)["stages"]
                                   for g in cls.configurations(spec)}}

    def stage(self, wf: Workflow, dataset: str, name: str, n: int) -> str:
        return wf.gslm_eval_path(self.spec["classifier"], name, n, dataset)


@register_claim("gslm_iterations")
class GSLMIterations(GSLMClaim):
    """Every SLM iteration raises the seed mIoU and lowers under-activation (GSLM Fig. 5 (a),
    (b): stage n+1 against stage n)."""

    where = "Fig. 5"
    schema = _block(["gslm"], {"gslm": _NAME})

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        g = self.spec["gslm"]
        return {f"stage{n}": self.stage(wf, dataset, g, n)
                for n in range(1, self.spec["stages"][g] + 1)}

    def comparisons(self) -> list[Comparison]:
        out = []
        for n in range(1, self.spec["stages"][self.spec["gslm"]]):
            a, b = f"stage{n + 1}", f"stage{n}"
            out += [Comparison(f"{self.spec['gslm']} stage {n + 1} > stage {n}", "mIoU",
                               a, ">", b),
                    Comparison(f"{self.spec['gslm']} stage {n + 1} < stage {n}", "m_under",
                               a, "<", b)]
        return out


@register_claim("gslm_boundary_constraint")
class GSLMBoundaryConstraint(GSLMClaim):
    """The boundary constraint (the CRF of Coarse Generation) gives a higher seed mIoU and
    less over-activation at the last stage than GSLM without it (GSLM Fig. 5 (a), (c))."""

    where = "Fig. 5"
    schema = _block(["gslm", "without"], {"gslm": _NAME, "without": _NAME})

    @classmethod
    def configurations(cls, spec: dict[str, Any]) -> list[str]:
        return [spec["gslm"], spec["without"]]

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        return {g: self.stage(wf, dataset, g, self.spec["stages"][g])
                for g in self.configurations(self.spec)}

    def comparisons(self) -> list[Comparison]:
        g, w = self.spec["gslm"], self.spec["without"]
        return [Comparison(f"{g} > {w} (last stage)", "mIoU", g, ">", w),
                Comparison(f"{g} < {w} (last stage)", "m_over", g, "<", w)]


@register_claim("gslm_masks")
class GSLMMasks(GSLMClaim):
    """GSLM's seeds alone beat the refiner's masks of the CAM they start from (``source``),
    and the refiner's masks of GSLM's seeds beat them too (GSLM Table 1: seed 67.5 > IRN
    mask 66.3; mask 72.4)."""

    where = "Table 1"
    schema = _block(["gslm", "refiner"], {"gslm": _NAME, "refiner": _NAME,
                                          "source": {**_NAME, "default": "cam"}})

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        wf.refiner_config(spec["refiner"])
        wf.source_config(spec["source"])
        return super().resolve(wf, spec)

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        g, r = self.spec["gslm"], self.spec["refiner"]
        last = f"{g}/stage{self.spec['stages'][g]}"
        return {"cam_masks": self.masks(wf, dataset, self.spec["source"], r),
                "gslm_seeds": self.stage(wf, dataset, g, self.spec["stages"][g]),
                "gslm_masks": self.masks(wf, dataset, last, r)}

    def comparisons(self) -> list[Comparison]:
        g, r, s = self.spec["gslm"], self.spec["refiner"], self.spec["source"]
        return [Comparison(f"{g} seeds > {r} masks of {s}", "mIoU", "gslm_seeds", ">",
                           "cam_masks"),
                Comparison(f"{r} masks of {g} > {r} masks of {s}", "mIoU", "gslm_masks", ">",
                           "cam_masks")]


@register_claim("gslm_ablation")
class GSLMAblation(GSLMClaim):
    """Removing Coarse Generation, Seed Reactivation or L_cls lowers the seed mIoU of one SLM
    iteration (GSLM Table 5: the full model's stage 2 against each ablation's)."""

    where = "Table 5"
    schema = _block(["full", "ablations"], {
        "full": _NAME, "ablations": {"type": "array", "items": _NAME, "minItems": 1}})

    @classmethod
    def configurations(cls, spec: dict[str, Any]) -> list[str]:
        return [spec["full"], *spec["ablations"]]

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        return {g: self.stage(wf, dataset, g, 2) for g in self.configurations(self.spec)}

    def comparisons(self) -> list[Comparison]:
        f = self.spec["full"]
        return [Comparison(f"{f} > {a} (stage 2)", "mIoU", f, ">", a)
                for a in self.spec["ablations"]]


class SourceClaim(Claim):
    """A claim ranking CAM sources of one classifier by seed mIoU."""

    paper = FULLCAM

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        for name in spec["order"]:
            wf.source_config(name)
        return spec

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        return {s: self.seeds(wf, dataset, s) for s in self.spec["order"]}

    def relation(self, position: int) -> str:
        """The relation of ``order[position + 1]`` to ``order[position]``."""
        return ">"

    def comparisons(self) -> list[Comparison]:
        order = self.spec["order"]
        return [Comparison(f"{hi} {self.relation(i)} {lo}", "mIoU", hi, self.relation(i), lo)
                for i, (lo, hi) in enumerate(itertools.pairwise(order))]


@register_claim("fullcam_layers")
class FullCamLayers(SourceClaim):
    """Fusing more layers gives better Fully-CAM seeds (Fully-CAM Table 2: stage 5 44.8 <
    +stage 4 49.2 < +stage 3 51.5 < all 53.9)."""

    where = "Table 2"
    schema = _block(["order"], {"order": _ORDER})


@register_claim("fullcam_methods")
class FullCamMethods(SourceClaim):
    """Fully-CAM > CAM ≥ Grad-CAM++ ≥ Grad-CAM in seed mIoU (Fully-CAM Table 3: 53.9, 47.4,
    47.4, 46.5); ``order`` lists them lowest first, the last step is strict."""

    where = "Table 3"
    schema = _block(["order"], {"order": _ORDER})

    def relation(self, position: int) -> str:
        return ">" if position == len(self.spec["order"]) - 2 else "≥"


@register_claim("fullcam_transforms")
class FullCamTransforms(SourceClaim):
    """More test-time transformations give better Fully-CAM seeds (Fully-CAM Table 4: scale 1
    51.3 → +0.5 52.0 → +1.5 53.0 → +2.0 53.8 → +flip 53.9)."""

    where = "Table 4"
    schema = _block(["order"], {"order": _ORDER})


PNOC = "P-NOC (David et al.)"


def _replicates(wf: Workflow, names: list[str]) -> dict[str, list[str]]:
    return {name: wf.replicate_names(name) for name in names}


def _run_keys(records: dict[str, Record], name: str, suffix: str = "") -> list[Record]:
    """The records of every replicate of ``name`` (keys ``name/r<i>`` + ``suffix``)."""
    return [r for k, r in records.items()
            if k.startswith(f"{name}/r") and k.endswith(suffix)]


class StrategyClaim(Claim):
    """A claim ranking P-NOC's training strategies (classifiers, each averaged over its
    replicates) on the priors of ``source``."""

    paper = PNOC

    @classmethod
    def strategies(cls, spec: dict[str, Any]) -> list[str]:
        return list(spec["order"])

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        wf.source_config(spec["source"])
        return {**spec, "replicates": _replicates(wf, cls.strategies(spec))}

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        return {f"{name}/r{i}": wf.eval_path(run, self.spec["source"], dataset)
                for name, runs in self.spec["replicates"].items()
                for i, run in enumerate(runs)}


@register_claim("pnoc_strategies")
class PnocStrategies(StrategyClaim):
    """P-NOC+LS ≥ P-OC+LS ≥ Puzzle ≥ CAM in the priors' mIoU (P-NOC Tables 2 and 3: 63.6 ≥
    61.8 ≥ 60.9 ≥ 53.9 with TTA); ``order`` lists the classifiers lowest first."""

    where = "Tables 2, 3"
    schema = _block(["order"], {"order": _ORDER | {"description": "classifiers, lowest "
                                                   "first"},
                                "source": {**_NAME, "default": "cam"}})

    def derive(self, records: dict[str, Record]) -> dict[str, Record]:
        return {name: {"miou": sum(r["miou"] for r in runs) / len(runs)}
                for name in self.spec["order"] for runs in [_run_keys(records, name)]}

    def comparisons(self) -> list[Comparison]:
        return [Comparison(f"{hi} ≥ {lo}", "mIoU", hi, "≥", lo)
                for lo, hi in itertools.pairwise(self.spec["order"])]


@register_claim("pnoc_puzzle_groups")
class PuzzleGroups(StrategyClaim):
    """Puzzle-CAM gives the best priors of the strategies on singleton classes and the worst
    on co-occurring ones (P-NOC Sec. 2.3 and Table 1: singleton 69.3 against 52.4 and 58.2;
    room 41.3 against 44.6 and 43.4).  Singletons and co-occurring classes are VOC's
    singleton and room groups, elsewhere the lowest and highest terciles of the
    co-occurrence rate %C."""

    where = "Table 1"
    schema = _block(["puzzle", "others"], {
        "puzzle": _NAME, "others": {"type": "array", "items": _NAME, "minItems": 1},
        "source": {**_NAME, "default": "cam"}})

    @classmethod
    def strategies(cls, spec: dict[str, Any]) -> list[str]:
        return [spec["puzzle"], *spec["others"]]

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        split = wf.dataset_config(dataset)["eval_split"]
        return {**super().inputs(wf, dataset),
                "properties": f"results/{dataset}/class_properties/{split}.json"}

    def derive(self, records: dict[str, Record]) -> dict[str, Record]:
        from camflow.class_properties import VOC_GROUPS, tercile_groups

        props = records["properties"]
        classes = props["classes"]
        if props["format"] == "voc12":
            single, crowded = VOC_GROUPS["group"]["singleton"], VOC_GROUPS["group"]["room"]
        else:
            rates = {c: v["%C"] for c, v in classes.items() if v["%C"] is not None}
            groups = tercile_groups(rates, ["low", "mid", "high"])
            single, crowded = groups["low"], groups["high"]
        out = {}
        for name in self.strategies(self.spec):
            runs = [{x["class"]: x["iou"] for x in run["per_class"]}
                    for run in _run_keys(records, name)]
            iou = {c: sum(run[c] for run in runs) / len(runs) for c in classes
                   if all(run.get(c) is not None for run in runs)}

            def mean(members: list[str], iou: dict[str, float] = iou) -> float | None:
                vals = [iou[c] for c in members if c in iou]
                return sum(vals) / len(vals) if vals else None

            out[name] = {"singleton_iou": mean(single), "cooccurring_iou": mean(crowded)}
        return out

    def comparisons(self) -> list[Comparison]:
        p = self.spec["puzzle"]
        return [c for o in self.spec["others"] for c in (
            Comparison(f"{p} ≥ {o} on singletons", "IoU, singletons", p, "≥", o),
            Comparison(f"{p} ≤ {o} on co-occurring classes", "IoU, co-occurring", p, "≤",
                       o))]


@register_claim("pnoc_epochs")
class PnocEpochs(StrategyClaim):
    """CAM and Puzzle saturate early while P-OC and P-NOC keep rising (P-NOC Table 2 and
    Sec. 7.1): over the second half of training each of ``rising`` gains more mIoU (priors
    without TTA, last epoch minus the middle one) than each of ``saturating``."""

    where = "Table 2"
    schema = _block(["saturating", "rising"], {
        "saturating": {"type": "array", "items": _NAME, "minItems": 1},
        "rising": {"type": "array", "items": _NAME, "minItems": 1}})

    @classmethod
    def strategies(cls, spec: dict[str, Any]) -> list[str]:
        return [*spec["saturating"], *spec["rising"]]

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        return {**spec, "replicates": _replicates(wf, cls.strategies(spec))}

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        split = wf.dataset_config(dataset)["eval_split"]
        return {f"{name}/r{i}": f"results/{dataset}/{run}/epoch_eval/{split}.json"
                for name, runs in self.spec["replicates"].items()
                for i, run in enumerate(runs)}

    def derive(self, records: dict[str, Record]) -> dict[str, Record]:
        out = {}
        for name in self.strategies(self.spec):
            gains = []
            for run in _run_keys(records, name):
                curve = [e["miou"] for e in run["epochs"]]
                gains.append(curve[-1] - curve[(len(curve) - 1) // 2])
            out[name] = {"late_gain": sum(gains) / len(gains) if gains else None}
        return out

    def comparisons(self) -> list[Comparison]:
        return [Comparison(f"{r} > {s} (2nd half)", "mIoU gain, 2nd half", r, ">", s)
                for r in self.spec["rising"] for s in self.spec["saturating"]]


_PRIORS = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_-]+$",
           "description": "classifier/source: the segmentation priors"}


@register_claim("pnoc_saliency_hints")
class SaliencyHints(Claim):
    """C²AM-H's saliency beats C²AM's, both as it is (P.) and refined (R.), with a
    classifier's priors and with the ground truth as the priors (P-NOC Table 6: with P-OC's
    priors P. 60.8 → 66.8 and R. 67.3 → 68.6; with the ground truth 63.4 → 69.9 and 65.0 →
    70.9). ``refined`` maps each saliency source to its R. counterpart."""

    paper = PNOC
    where = "Table 6"
    schema = _block(["c2am", "c2am_h", "priors"], {
        "c2am": _NAME, "c2am_h": _NAME, "priors": _PRIORS,
        "refined": {"type": "object", "additionalProperties": _NAME, "default": {}}})

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        for name in (spec["c2am"], spec["c2am_h"], *spec["refined"].values()):
            wf.saliency_config(name, f"tables.claims.claims.{cls.name}")
        wf.classifier_config(spec["priors"].split("/")[0])
        return spec

    def _pairs(self) -> list[tuple[str, str, str]]:
        """(column, C²AM source, C²AM-H source) for P. and, where both are refined, R."""
        a, b, refined = self.spec["c2am"], self.spec["c2am_h"], self.spec["refined"]
        pairs = [("P.", a, b)]
        if a in refined and b in refined:
            pairs.append(("R.", refined[a], refined[b]))
        return pairs

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        return {f"{name}@{priors}": wf.saliency_eval_path(name, priors, dataset)
                for _, a, b in self._pairs() for name in (a, b)
                for priors in (self.spec["priors"], "gt")}

    def comparisons(self) -> list[Comparison]:
        return [Comparison(f"{b} > {a} ({column}, priors {priors})", "mIoU", f"{b}@{priors}",
                           ">", f"{a}@{priors}")
                for column, a, b in self._pairs() for priors in (self.spec["priors"], "gt")]


@register_claim("pnoc_pseudo_masks")
class PnocPseudoMasks(Claim):
    """Saliency-aware affinity labels raise the random walk's pseudo masks, and training with
    the ordinary classifier as an adversary (+NOC) raises them further (P-NOC Table 7, VOC
    train: P-OC 73.50 → P-OC + C²AM-H 73.90 → + NOC 75.53). ``order`` lists pseudo-mask sets
    ``{classifier}/{source}/{refiner}``, the lowest first."""

    paper = PNOC
    where = "Table 7"
    schema = _block(["order"], {"order": {"type": "array", "minItems": 2, "items": {
        "type": "string", "description": "{classifier}/{source}/{refiner}"}}})

    @classmethod
    def resolve(cls, wf: Workflow, spec: dict[str, Any]) -> dict[str, Any]:
        key = f"tables.claims.claims.{cls.name}.order"
        return {**spec, "order": [wf.check_masks(m, key) for m in spec["order"]]}

    def inputs(self, wf: Workflow, dataset: str) -> dict[str, str]:
        split = wf.dataset_config(dataset)["eval_split"]
        return {masks: f"results/{dataset}/{masks}/{split}/eval.json"
                for masks in self.spec["order"]}

    def comparisons(self) -> list[Comparison]:
        return [Comparison(f"{hi} masks > {lo} masks", "mIoU", hi, ">", lo)
                for lo, hi in itertools.pairwise(self.spec["order"])]
