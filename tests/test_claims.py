"""The claims table: every number from the evaluation record its comparison names, the
relation the paper states, and a claim that fails reported as failing."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from camflow.claims import CLAIMS, Comparison, claim_class
from camflow.figures import claims_figure
from camflow.io import CamflowInputError
from camflow.tables import table_class
from camflow.workflow import Workflow

REPO = Path(__file__).resolve().parents[1]


def record(miou: float, m_under: float = 0.5, m_over: float = 0.3,
           crf: float | None = None) -> dict[str, Any]:
    return {"miou": miou, "m_under": m_under, "m_over": m_over,
            "crf": None if crf is None else {"miou": crf}}


@pytest.fixture
def workflow() -> Workflow:
    wf = Workflow(yaml.safe_load((REPO / "config.yaml").read_text()))
    wf.check()
    return wf


def test_relations_and_metrics() -> None:
    recs = {"a": record(0.5, m_under=0.4, crf=0.6), "b": record(0.5, m_under=0.7)}
    assert Comparison("", "mIoU", "a", "≥", "b").holds(recs) is True
    assert Comparison("", "mIoU", "a", ">", "b").holds(recs) is False
    assert Comparison("", "m_under", "a", "<", "b").holds(recs) is True
    crf = Comparison("", "+CRF mIoU", "a", ">", "a", rhs_metric="mIoU")
    assert crf.values(recs) == (0.6, 0.5) and crf.holds(recs) is True
    assert crf.metrics == "+CRF mIoU vs mIoU"
    assert Comparison("", "+CRF mIoU", "b", ">", "b", "mIoU").holds(recs) is None  # no CRF


def test_gslm_iterations_compare_each_stage_with_the_one_before() -> None:
    claim = claim_class("gslm_iterations")({"classifier": "c", "gslm": "g", "stages": {"g": 3}})
    comps = claim.comparisons()
    assert [(c.metric, c.lhs, c.relation, c.rhs) for c in comps] == [
        ("mIoU", "stage2", ">", "stage1"), ("m_under", "stage2", "<", "stage1"),
        ("mIoU", "stage3", ">", "stage2"), ("m_under", "stage3", "<", "stage2")]


def test_fullcam_methods_is_strict_only_at_the_top() -> None:
    claim = claim_class("fullcam_methods")(
        {"classifier": "c", "order": ["gradcam", "gradcampp", "cam", "fullcam"]})
    assert [c.statement for c in claim.comparisons()] == [
        "gradcampp ≥ gradcam", "cam ≥ gradcampp", "fullcam > cam"]


def claims_spec(workflow: Workflow, datasets: list[str]) -> dict[str, Any]:
    spec = {"datasets": datasets, "classifier": "resnet_small",
            "claims": {"crf": {"source": "cam"},
                       "fullcam_methods": {"order": ["gradcam", "cam", "fullcam"]},
                       "gslm_iterations": {"gslm": "gslm"}}}
    return table_class("claims").resolve(workflow, spec)


def test_claims_table_reads_each_benchmark_and_reports_failures(workflow: Workflow,
                                                                tmp_path: Path) -> None:
    workflow.config["datasets"]["parts"] = copy.deepcopy(workflow.config["datasets"]["synthetic"])
    spec = claims_spec(workflow, ["synthetic", "parts"])
    table = table_class("claims")(spec)
    inputs = table.inputs(workflow, "synthetic")
    assert inputs["parts/fullcam_methods/fullcam"] == \
        "results/parts/resnet_small/fullcam/train/eval.json"
    assert inputs["synthetic/gslm_iterations/stage4"] == \
        "results/synthetic/resnet_small/gslm/stage4/train/eval.json"
    # synthetic: every claim holds; parts: Fully-CAM below CAM and stage 3 below stage 2
    good = {"crf/seeds": record(0.50, crf=0.55), "fullcam_methods/gradcam": record(0.40),
            "fullcam_methods/cam": record(0.45), "fullcam_methods/fullcam": record(0.50),
            **{f"gslm_iterations/stage{n}": record(0.4 + 0.05 * n, m_under=1.0 - 0.1 * n)
               for n in range(1, 5)}}
    bad = {**good, "fullcam_methods/fullcam": record(0.44),
           "gslm_iterations/stage3": record(0.30, m_under=0.2)}
    records = {f"synthetic/{k}": v for k, v in good.items()} | \
              {f"parts/{k}": v for k, v in bad.items()}
    assert set(records) == set(inputs)
    built = table.build(records, "synthetic")
    assert built.columns[:4] == ["paper", "where", "claim", "metric"]
    assert built.columns[4:] == ["synthetic: left", "synthetic: right", "synthetic: holds",
                                 "parts: left", "parts: right", "parts: holds"]
    rows = {(r[2], r[3]): r for r in built.rows}
    assert len(rows) == len(built.rows) == 1 + 2 + 6
    assert all(r[6] == "yes" for r in built.rows)
    fullcam = rows[("fullcam > cam", "mIoU")]
    assert (round(fullcam[7], 6), round(fullcam[8], 6), fullcam[9]) == (44, 45, "NO")
    assert rows[("gslm stage 3 > stage 2", "mIoU")][9] == "NO"
    assert rows[("gslm stage 4 > stage 3", "mIoU")][9] == "yes"
    assert rows[("gslm stage 3 < stage 2", "m_under")][7:] == ["0.200", "0.800", "yes"]
    assert rows[("gslm stage 4 < stage 3", "m_under")][9] == "NO"
    assert "synthetic 9/9" in built.title and "parts 6/9" in built.title
    png = tmp_path / "claims.png"
    claims_figure(records, spec, "synthetic", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_claims_default_to_the_tables_dataset(workflow: Workflow) -> None:
    spec = claims_spec(workflow, ["synthetic"])
    del spec["datasets"]
    inputs = table_class("claims")(spec).inputs(workflow, "voc12")
    assert inputs and all(k.startswith("voc12/") and v.startswith("results/voc12/")
                          for k, v in inputs.items())


@pytest.mark.parametrize(("claims", "message"), [
    ({"gslm_iteratoins": {"gslm": "gslm"}}, "did you mean 'gslm_iterations'"),
    ({"gslm_iterations": {"gslm": "nope"}}, "nope"),
    ({"crf": {"source": "cam", "extra": 1}}, "tables.claims.claims.crf"),
    ({"crf": {"source": "cam", "classifier": "nope"}}, "nope"),
])
def test_bad_claim_settings_name_the_key(workflow: Workflow, claims: dict[str, Any],
                                         message: str) -> None:
    with pytest.raises(CamflowInputError, match=message):
        table_class("claims").resolve(workflow, {"classifier": "resnet_small",
                                                 "claims": claims})


def test_every_claim_names_its_paper_and_where() -> None:
    for name in CLAIMS.names():
        cls = claim_class(name)
        assert cls.paper and cls.where and cls.__doc__, name


def test_a_null_claim_is_left_out(workflow: Workflow) -> None:
    """An overlay drops a claim (and every input it needs) by setting it to null."""
    claims = {"crf": {"source": "cam"}, "gslm_iterations": {"gslm": "gslm"}}
    full = table_class("claims").resolve(workflow, {"classifier": "resnet_small",
                                                    "claims": claims})
    dropped = table_class("claims").resolve(
        workflow, {"classifier": "resnet_small", "claims": {**claims, "gslm_iterations": None}})
    assert list(dropped["claims"]) == ["crf"]
    before = table_class("claims")(full).inputs(workflow, "synthetic")
    after = table_class("claims")(dropped).inputs(workflow, "synthetic")
    assert set(after) < set(before) and not any("gslm" in v for v in after.values())
    with pytest.raises(CamflowInputError, match="every claim is null"):
        table_class("claims").resolve(workflow, {"classifier": "resnet_small",
                                                 "claims": {"crf": None}})


def test_pnoc_saliency_and_pseudo_mask_claims(workflow: Workflow) -> None:
    """C²AM-H beats C²AM in P. and R., with the priors and the ground truth; the pseudo
    masks rise along `order`; each number is its record's."""
    spec = workflow.table_spec("claims")["claims"]
    hints = claim_class("pnoc_saliency_hints")(spec["pnoc_saliency_hints"])
    inputs = hints.inputs(workflow, "synthetic")
    assert inputs["c2am_h_poc_r@gt"] == \
        "results/synthetic/saliency/c2am_h_poc_r/train/eval/gt.json"
    assert len(inputs) == 8
    records = {key: record(0.5) for key in inputs} | {"c2am_h_poc@gt": record(0.4)}
    holds = {c.statement: c.holds(records) for c in hints.comparisons()}
    assert holds == {"c2am_h_poc > c2am_small (P., priors resnet_small_p_oc/cam)": False,
                     "c2am_h_poc > c2am_small (P., priors gt)": False,
                     "c2am_h_poc_r > c2am_small_r (R., priors resnet_small_p_oc/cam)": False,
                     "c2am_h_poc_r > c2am_small_r (R., priors gt)": False}
    records["c2am_h_poc_r@gt"] = record(0.6)
    assert hints.comparisons()[3].holds(records)
    masks = claim_class("pnoc_pseudo_masks")(spec["pnoc_pseudo_masks"])
    inputs = masks.inputs(workflow, "synthetic")
    order = spec["pnoc_pseudo_masks"]["order"]
    assert list(inputs.values()) == [f"results/synthetic/{m}/train/eval.json" for m in order]
    records = {order[0]: record(0.5), order[1]: record(0.6), order[2]: record(0.55)}
    assert [c.holds(records) for c in masks.comparisons()] == [True, False]
