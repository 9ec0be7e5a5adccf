"""Table objects: rows in the paper's order, each value from the evaluation its key names."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from camflow.figures import gslm_fig8_figure
from camflow.io import CamflowInputError
from camflow.tables import TABLES, pct, table_class
from camflow.workflow import Workflow

REPO = Path(__file__).resolve().parents[1]


def seed_eval(miou: float, crf: float | None = None) -> dict[str, Any]:
    return {"kind": "seeds", "miou": miou, "m_under": 1 - miou, "m_over": miou / 2,
            "threshold": 0.15, "crf": None if crf is None else {"miou": crf},
            "sweep": {"thresholds": [0.1, 0.15, 0.2], "miou": [miou - 0.01, miou, miou - 0.02],
                      "m_under": [0.1, 0.2, 0.3], "m_over": [0.3, 0.2, 0.1]},
            "provenance": {"method": "cam", "arch": "resnet_small", "scales": [1.0],
                           "flip": True}}


@pytest.fixture
def workflow() -> Workflow:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    wf = Workflow(config)
    wf.check()
    return wf


def test_gslm_table5_follows_the_paper_rows_and_check_marks() -> None:
    modules = {"gslm": {"CR": True, "SR": True, "L_cls": True},
               "no_cg": {"CR": False, "SR": True, "L_cls": True},
               "no_cls": {"CR": True, "SR": True, "L_cls": False}}
    spec = {"classifier": "c", "full": "gslm", "rows": ["no_cg", "no_cls"],
            "stages": {"gslm": 4, "no_cg": 2, "no_cls": 2}, "modules": modules}
    table = table_class("gslm_table5")(spec)
    labels = [label for label, _, _ in table.variants()]
    records = {label: seed_eval(v, v + 0.05)
               for label, v in zip(labels, (0.40, 0.41, 0.42, 0.45, 0.50), strict=True)}
    built = table.build(records, "synthetic")
    assert built.columns[:5] == ["variant", "CR", "SR", "L_cls", "iter"]
    assert [row[:5] for row in built.rows] == [
        ["CAM (baseline)", "-", "-", "-", 0],
        ["no_cg", "", "x", "x", 1],
        ["no_cls", "x", "x", "", 1],
        ["gslm w/o iterations", "x", "x", "x", 1],
        ["gslm", "x", "x", "x", 3]]
    assert [round(row[5], 6) for row in built.rows] == [40, 41, 42, 45, 50]
    assert round(built.rows[-1][6], 6) == 55
    assert "Mai et al." in built.title and "seed 0" not in built.title


def test_gslm_fig8_rows_and_figure(tmp_path) -> None:
    variants = {"thresholds": [["0.05/0.3", "gslm", 2], ["0.1/0.3", "gslm_bg0p1_fg0p3", 2]],
                "k": [["6", "gslm", 2]],
                "iterations": [["0", "gslm", 1], ["1", "gslm", 2], ["2", "gslm", 3]]}
    spec = {"classifier": "c", "base": "gslm", "sweep_stage": 2, "variants": variants}
    keys = ["thresholds/0.05/0.3", "thresholds/0.1/0.3", "k/6", "iterations/0",
            "iterations/1", "iterations/2"]
    records = {k: seed_eval(v) for k, v in zip(keys, (0.5, 0.4, 0.5, 0.3, 0.5, 0.6),
                                               strict=True)}
    table = table_class("gslm_fig8")(spec).build(records, "synthetic")
    assert [row[:4] for row in table.rows] == [
        ["theta_bg/theta_fg", "0.05/0.3", "gslm", 2],
        ["theta_bg/theta_fg", "0.1/0.3", "gslm_bg0p1_fg0p3", 2],
        ["k", "6", "gslm", 2],
        ["iterations", "0", "gslm", 1], ["iterations", "1", "gslm", 2],
        ["iterations", "2", "gslm", 3]]
    assert [round(row[4], 6) for row in table.rows] == [50, 40, 50, 30, 50, 60]
    png = tmp_path / "fig8.png"
    gslm_fig8_figure(records, spec, "synthetic", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", ["fullcam_table5", "fullcam_table3", "base_pipeline"])
def test_reordered_config_rows_keep_each_number_with_its_row(workflow: Workflow,
                                                             name: str) -> None:
    """A table's inputs are named: reversing a config list reorders the rows, and every row
    still shows the numbers of its own evaluation file."""
    def build(wf: Workflow) -> dict[str, list[Any]]:
        inputs = wf.table_inputs(name, "synthetic")
        # each file's mIoU is a function of its path alone
        records = {key: seed_eval(sum(map(ord, path)) % 97 / 100)
                   for key, path in inputs.items()}
        table = table_class(name)(wf.table_spec(name)).build(records, "synthetic")
        return {row[0]: row[1:] for row in table.rows}

    config = copy.deepcopy(workflow.config)
    spec = config["tables"][name]
    if name == "base_pipeline":
        config["classifiers"]["other"] = config["classifiers"]["resnet_small"]
        spec["rows"] = ["resnet_small", "other"]
        workflow = Workflow(copy.deepcopy(config))
    before = build(workflow)
    spec["rows"] = spec["rows"][::-1]
    if "sources" in spec:
        spec["sources"] = spec["sources"][::-1]
    after = build(Workflow(config))
    assert list(after) == list(before)[::-1]
    if "sources" in spec:   # columns reversed too
        after = {k: [v[0], *v[1:][::-1]] for k, v in after.items()}
    assert after == before


def test_every_configured_table_resolves_and_names_its_paper(workflow: Workflow) -> None:
    for name in workflow.config["tables"]:
        inputs = workflow.table_inputs(name, "synthetic")
        benchmarks = workflow.config["tables"][name].get("datasets", ["synthetic"])  # claims
        assert inputs and all(p.split("/")[1] in benchmarks for p in inputs.values())
        assert table_class(name).paper
    assert set(workflow.config["tables"]) <= set(TABLES.names())


def test_unknown_table_names_the_key() -> None:
    with pytest.raises(CamflowInputError, match="tables.nope"):
        table_class("nope")


def test_every_table_says_what_it_shows_and_which_paper() -> None:
    for name in TABLES.names():
        about = table_class(name).about()
        assert about["name"] == name and about["title"] and about["short"]
        assert about["paper"] and len(about["description"]) > 30, name
        assert "\n" not in about["description"]


def test_run_table_writes_csv_markdown_html_and_the_class_iou_figure(
        workflow: Workflow, tmp_path: Path) -> None:
    import json

    from PIL import Image

    from camflow.stages import run_table

    inputs = {}
    for key in workflow.table_inputs("cam_seeds", "synthetic"):
        record = seed_eval(0.4567, 0.5)
        record["per_class"] = [{"class": c, "iou": v} for c, v in
                               (("background", 0.9), ("cat", 0.25), ("dog", 0.5))]
        (tmp_path / "eval.json").write_text(json.dumps(record))
        inputs[key] = str(tmp_path / "eval.json")
    spec = workflow.table_spec("cam_seeds")
    out = {k: str(tmp_path / f"t.{k}") for k in ("csv", "md", "html")}
    out["classes"] = str(tmp_path / "classes.png")
    run_table("cam_seeds", inputs, spec, table_class("cam_seeds").about(), "synthetic", out)
    assert (tmp_path / "t.csv").read_text().splitlines()[1].startswith("resnet_small,45.67,")
    page = (tmp_path / "t.html").read_text()
    assert "<td>45.67</td>" in page and "<th>seed_miou</th>" in page
    assert "tables.cam_seeds" in page and "Seed mIoU" in page       # config and description
    assert Image.open(tmp_path / "classes.png").size[0] > 300


def test_results_doc_gathers_the_built_tables_and_copies_their_figures(
        tmp_path: Path, monkeypatch) -> None:
    from PIL import Image

    from camflow.stages import run_results_doc

    monkeypatch.chdir(tmp_path)
    tables = Path("results/demo/tables")
    tables.mkdir(parents=True)
    (tables / "cam_seeds.md").write_text("### CAM seeds — demo\n\n| a |\n|---|\n| 51.00 |\n")
    figure = Path("results/demo/resnet_small/cam/train/figure.png")
    figure.parent.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(figure)
    other = Path("results/parts/resnet_small/cam/train/figure.png")  # a claims table's
    other.parent.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(other)
    files = [str(tables / "cam_seeds.csv"), str(tables / "cam_seeds.md"), str(figure)]
    about = {name: table_class(name).about() for name in ("cam_seeds", "base_pipeline")}
    run_results_doc({"cam_seeds": files, "base_pipeline": [*files, str(other)]}, about,
                    ["config.yaml", "config/demo.yaml"], "demo", "docs/results/demo.md",
                    "docs/results/demo")
    text = Path("docs/results/demo.md").read_text()
    assert "## CAM seeds — demo" in text and "| 51.00 |" in text
    assert "config files `config.yaml`, `config/demo.yaml`" in text
    assert about["cam_seeds"]["description"] in text
    assert "![resnet_small__cam__train__figure.png](demo/resnet_small__cam__train__figure.png)" \
        in text
    assert Path("docs/results/demo/resnet_small__cam__train__figure.png").is_file()
    assert Path("docs/results/demo/parts__resnet_small__cam__train__figure.png").is_file()
    assert text.count("figure.png)") == 2           # a figure two tables share, shown once


def seg_eval(msf: float, single: float, crf: float, classes: list[float]) -> dict[str, Any]:
    """A segmentation record: ``classes`` are the +CRF per-class IoUs."""
    names = ["background", "frog", "deer"]
    per_class = [{"class": n, "iou": v} for n, v in zip(names, classes, strict=True)]
    return {"kind": "segmentation", "miou": msf, "per_class": per_class,
            "single_scale": {"miou": single, "per_class": per_class},
            "crf": {"miou": crf, "per_class": per_class}}


def test_segmentation_table_rows_columns_and_the_test_server_cell(
        workflow: Workflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each row's val numbers come from its own record; the test column appears on a dataset
    with a test split, filled only where the user wrote the server's result."""
    monkeypatch.chdir(tmp_path)
    table = workflow.table("gslm_table2")
    assert table.spec["rows"] == {
        "GSLM": {"masks": "resnet_small/gslm/stage4/irn_small", "segmenter": "deeplabv2_small"},
        "GSLM+": {"masks": "resnet_small/gslm_plus/stage2/irn_small",
                  "segmenter": "deeplabv2_small"}}
    synthetic = table.inputs(workflow, "synthetic")
    assert synthetic == {
        "GSLM/val": "results/synthetic/segmentation/deeplabv2_small/"
                    "resnet_small/gslm/stage4/irn_small/val/eval.json",
        "GSLM+/val": "results/synthetic/segmentation/deeplabv2_small/"
                     "resnet_small/gslm_plus/stage2/irn_small/val/eval.json"}
    assert table.extras(workflow, "synthetic") == []
    run = "results/voc12/segmentation/deeplabv2_small/resnet_small/gslm/stage4/irn_small"
    assert f"{run}/test/submission.tar.gz" in table.extras(workflow, "voc12")
    assert "GSLM/test" not in table.inputs(workflow, "voc12")
    server = tmp_path / run / "test" / "server.json"
    server.parent.mkdir(parents=True)
    server.write_text('{"miou": 69.7}')
    inputs = table.inputs(workflow, "voc12")
    assert inputs["GSLM/test"] == f"{run}/test/server.json" and "GSLM+/test" not in inputs
    records = {"GSLM/val": seg_eval(0.60, 0.55, 0.65, [0.9, 0.5, 0.55]),
               "GSLM+/val": seg_eval(0.70, 0.66, 0.72, [0.9, 0.6, 0.66]),
               "GSLM/test": {"miou": 69.7}}
    built = table.build(records, "voc12")
    assert built.columns == ["method", "masks", "segmenter", "val", "val_msf", "val_crf", "test"]
    assert [[row[0], *(round(v, 6) for v in row[3:6]), row[6]] for row in built.rows] == [
        ["GSLM", 55, 60, 65, 69.7], ["GSLM+", 66, 70, 72, ""]]
    del records["GSLM/test"]
    assert table.build(records, "synthetic").columns[-1] == "val_crf"
    server.write_text('{"miou": 0.697e3}')
    with pytest.raises(CamflowInputError, match="server.json.*percentage"):
        table.inputs(workflow, "voc12")


def test_fullcam_table1_is_per_class_from_the_chosen_evaluation(workflow: Workflow) -> None:
    table = workflow.table("fullcam_table1")
    records = {"IRN/val": seg_eval(0.60, 0.55, 0.65, [0.9, 0.5, 0.55]),
               "Fully-CAM + IRN/val": seg_eval(0.70, 0.66, 0.72, [0.91, 0.6, 0.65])}
    built = table.build(records, "synthetic")
    assert built.columns == ["method", "background", "frog", "deer", "mean"]
    assert [[row[0], *(round(v, 6) for v in row[1:])] for row in built.rows] == [
        ["IRN", 90, 50, 55, 65], ["Fully-CAM + IRN", 91, 60, 65, 72]]
    records["IRN/val"]["crf"] = None
    with pytest.raises(CamflowInputError, match="tables.fullcam_table1.column"):
        table.build(records, "synthetic")


@pytest.mark.parametrize(("masks", "message"), [
    ("resnet_small/cam", "neither gt nor"), ("nope/cam/irn_small", "classifiers.nope"),
    ("resnet_small/cam/nope", "refiners.nope"), ("resnet_small/gslm/stage9/irn_small", "2..4"),
    ("resnet_small/gslm/stagex/irn_small", "neither gt nor"),
    ("resnet_small/nope/irn_small", "sources.nope")])
def test_segmentation_rows_name_the_bad_masks(masks: str, message: str) -> None:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["tables"]["gslm_table2"]["rows"] = {"bad": masks}
    wf = Workflow(config)
    with pytest.raises(CamflowInputError, match=message):
        wf.table("gslm_table2")


def test_gslm_table1_puts_a_column_group_per_dataset(workflow: Workflow) -> None:
    """GSLM Table 1's VOC and COCO columns: each dataset's numbers from its own records, a
    Mask column per random walk, and a random-walk row showing only its own masks."""
    spec = {**workflow.config["tables"]["gslm_table1"], "rows": ["gslm"],
            "datasets": ["synthetic", "synthetic_parts"]}
    table = table_class("gslm_table1")(table_class("gslm_table1").resolve(workflow, spec))
    inputs = table.inputs(workflow, "synthetic")
    assert inputs["synthetic_parts/gslm/irn_small"] == (
        "results/synthetic_parts/resnet_small/gslm/stage4/irn_small/train/eval.json")
    value = {"synthetic": 0.4, "synthetic_parts": 0.6}
    records = {k: seed_eval(value[k.split("/")[0]] + 0.01 * ("irn" in k) + 0.02 * ("gslm" in k))
               for k in inputs}
    built = table.build(records, "synthetic")
    assert built.columns[:5] == ["method", "stages", "synthetic: seed", "synthetic: crf",
                                 "synthetic: mask_affinitynet_small"]
    assert "synthetic_parts: mask_irn_small" in built.columns
    rows = {row[0]: dict(zip(built.columns, row, strict=True)) for row in built.rows}
    assert set(rows) == {"CAM", "random walk (affinitynet_small)", "random walk (irn_small)",
                         "gslm"}
    assert rows["random walk (irn_small)"]["synthetic: mask_irn_small"] == pytest.approx(41)
    assert rows["random walk (irn_small)"]["synthetic: mask_affinitynet_small"] == "-"
    assert rows["gslm"]["synthetic_parts: seed"] == pytest.approx(62)
    assert rows["gslm"]["synthetic_parts: mask_irn_small"] == pytest.approx(63)
    assert rows["CAM"]["synthetic_parts: mask_irn_small"] == "-"


def sal_eval(miou: float, threshold: float) -> dict[str, Any]:
    return {"kind": "saliency", "miou": miou, "threshold": threshold, "per_class": []}


def test_pnoc_table6_reads_p_and_r_per_row_and_table7_each_split(workflow: Workflow) -> None:
    spec = workflow.table_spec("pnoc_table6")
    table = table_class("pnoc_table6")(table_class("pnoc_table6").resolve(workflow, spec))
    inputs = table.inputs(workflow, "synthetic")
    assert inputs["C²AM-H (P-OC), GT/R"] == \
        "results/synthetic/saliency/c2am_h_poc_r/train/eval/gt.json"
    assert inputs["C²AM, P-OC/P"] == \
        "results/synthetic/saliency/c2am_small/train/eval/resnet_small_p_oc/cam.json"
    records = {key: sal_eval(0.01 * i, 0.05 * (i % 5)) for i, key in enumerate(inputs)}
    built = table.build(records, "synthetic")
    assert built.columns == ["method", "saliency", "priors", "P.", "P. threshold", "R.",
                             "R. threshold"]
    row = next(r for r in built.rows if r[0] == "C²AM-H (P-OC), GT")
    i = list(inputs).index("C²AM-H (P-OC), GT/P")
    assert row[2:4] == ["gt", pct(0.01 * i)] and row[5] == pct(0.01 * (i + 1))

    spec = workflow.table_spec("pnoc_table7")
    table = table_class("pnoc_table7")(table_class("pnoc_table7").resolve(workflow, spec))
    inputs = table.inputs(workflow, "synthetic")
    assert inputs["P-OC+C²AM-H/val"] == \
        "results/synthetic/resnet_small_p_oc/cam/irn_small_sal_poc/val/eval.json"
    records = {key: {"miou": 0.5 + 0.01 * i} for i, key in enumerate(inputs)}
    built = table.build(records, "synthetic")
    assert built.columns == ["method", "masks", "train", "val"]
    assert built.rows[1] == ["P-OC", "resnet_small_p_oc/cam/irn_small", pct(0.52), pct(0.53)]
