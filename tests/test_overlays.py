"""The paper overlays (config/voc12.yaml, config/coco14.yaml): one command plans a paper's
tables with the published settings — a dry run against the tiny VOC and COCO fixtures, whose
planned jobs must use the paper profiles and none of the synthetic benchmark's CPU profiles.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from camflow.cli import load_config
from camflow.workflow import Workflow
from fixtures import make_coco_fixture, make_voc_fixture

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
OVERLAYS = {"voc12": make_voc_fixture, "coco14": make_coco_fixture}
# the CAM networks, refiners and segmenters the papers train (config.yaml)
PAPER = {
    "classifier": {"resnet50_irn", "resnet50_gslm", "resnet101_irn", "vgg16",
                   # P-NOC's strategies and their replicates (config/voc12.yaml)
                   *(f"resnest269_{s}{r}" for s in ("ra", "cam", "oc_cse", "puzzle", "p_oc",
                                                    "p_oc_ls", "p_noc", "p_noc_ls")
                     for r in ("", "_seed1", "_seed2"))},
    "refiner": {"irn", "affinitynet", "irn_sal_poc", "irn_sal_pnoc_ls"},
    "segmenter": {"deeplabv2"},
    # P-NOC's C²AM (ResNet-50), C²AM-H (ResNeSt-269) and their refined maps (config/voc12.yaml)
    "saliency": {f"{s}{r}" for s in ("c2am_rn50", "c2am_h_rs269_poc", "c2am_h_rs269_pnoc_ls")
                 for r in ("", "_r")},
}


def overlay(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())


def test_the_coco_overlay_is_the_voc_overlay_with_coco() -> None:
    voc, coco = overlay("voc12"), overlay("coco14")
    assert (voc.pop("dataset"), coco.pop("dataset")) == ("voc12", "coco14")
    assert set(voc.pop("datasets")) == {"voc12"} and set(coco.pop("datasets")) == {"coco14"}
    assert (voc["tables"]["claims"].pop("datasets"),
            coco["tables"]["claims"].pop("datasets")) == (["voc12"], ["coco14"])
    # P-NOC (Sec. 6.1) trains on COCO with half the learning rate and 640-px crops
    for name in [n for n in voc["classifiers"] if n.startswith("resnest269_")]:
        pair = [copy.deepcopy(o["classifiers"][name]) for o in (voc, coco)]
        if "optimizer" in pair[0]:
            assert [c["optimizer"].pop("lr") for c in pair] == [0.01, 0.005]
        if "augment" in pair[0]:
            assert [c["augment"].pop("crop") for c in pair] == [512, 640]
        voc["classifiers"][name], coco["classifiers"][name] = pair
    assert voc == coco


def planned(stdout: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job of a dry run."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", stdout):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if head:
            found = re.search(r"^\s+wildcards: (.*)$", block, re.M)
            pairs = (p.split("=", 1) for p in found[1].split(", ")) if found else ()
            jobs.append((head[1], dict(pairs)))
    return jobs


@pytest.mark.parametrize("name", sorted(OVERLAYS))
def test_overlay_dry_run_plans_every_table_with_paper_profiles(name: str, tmp_path: Path) -> None:
    root = OVERLAYS[name](tmp_path / "data")
    local = tmp_path / "local.yaml"
    local.write_text(yaml.safe_dump({"datasets": {name: {"root": str(root)}}}))
    config = load_config([str(REPO / "config" / f"{name}.yaml"), str(local)])
    tables = list(config["tables"])
    full = subprocess.run(
        [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "-n",
         "--cores", "1", *tables,  # targets first: --configfile takes every value after it
         "--configfile", str(REPO / "config" / f"{name}.yaml"), str(local)],
        capture_output=True, text=True, cwd=tmp_path)
    assert full.returncode == 0, full.stderr[-4000:]
    jobs = planned(full.stdout)
    rules = {rule for rule, _ in jobs}
    assert {"train_classifier", "train_refiner", "train_slm", "train_segmentation",
            *tables} <= rules
    for rule, wildcards in jobs:
        assert wildcards.get("dataset", name) == name, (rule, wildcards)
        for key, allowed in PAPER.items():
            if key in wildcards:
                assert wildcards[key] in allowed, (rule, wildcards)
        assert not re.search(r"_small|_synthetic|_1x", str(wildcards)), (rule, wildcards)
    # what the planned jobs are handed: the published settings
    wf = Workflow(config)
    wf.check()
    assert wf.source_config("cam")["scales"] == [1.0, 0.5, 1.5, 2.0]
    assert wf.source_config("cam")["flip"] is True
    for gslm in {w["gslm"] for r, w in jobs if r == "train_slm"}:
        slm = wf.slm_config(gslm)
        assert slm["augment"]["crop"] == 512 and slm["epochs"] == 5, gslm
        assert slm["optimizer"]["weight_decay"] == 0.001, gslm
    trained = {w["classifier"] for r, w in jobs if r == "train_classifier"}
    assert all(wf.classifier_config(c)["backbone"]["weights"] == "imagenet" for c in trained)
    assert wf.gslm_config("gslm_plus")["first_source"] == "cam/irn"
    assert config["resources"]["train_classifier"]["gpu"] == 1


def test_the_demo_plans_the_whole_pipeline_once_on_its_own_dataset(tmp_path: Path) -> None:
    """`make demo`'s DAG: seeds, CRF, IRN, DeepLab and one SLM stage on dataset `demo`, and
    none of the costly extras the full-size tables add (AffinityNet, the upper bound)."""
    proc = subprocess.run(
        [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "-n",
         "--cores", "1", f"--configfile={REPO / 'config' / 'demo.yaml'}"],
        capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    jobs = planned(proc.stdout)
    counts: dict[str, int] = {}
    for rule, wildcards in jobs:
        counts[rule] = counts.get(rule, 0) + 1
        assert wildcards.get("dataset", "demo") == "demo", (rule, wildcards)
        assert wildcards.get("refiner", "irn_small") == "irn_small", (rule, wildcards)
        assert wildcards.get("masks", "resnet_small/cam/irn_small") != "gt", (rule, wildcards)
    assert counts["train_classifier"] == counts["train_refiner"] == 1
    assert counts["train_slm"] == counts["train_segmentation"] == 1
    assert counts["table"] == 3 and counts["synthetic"] == 1
