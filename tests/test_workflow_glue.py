"""camflow.workflow without Snakemake: config accessors, schema defaults, the resources check,
GSLM stage planning and the paths the rules are given."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from camflow.io import CamflowInputError
from camflow.schema import validate_config
from camflow.workflow import Workflow

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())


def workflow(**changes) -> Workflow:
    config = copy.deepcopy(CONFIG)
    for key, value in changes.items():
        config[key] = {**config[key], **value}
    wf = Workflow(config)
    wf.check()
    return wf


def wc(**kw) -> SimpleNamespace:
    return SimpleNamespace(dataset="synthetic", classifier="resnet_small", **kw)


def test_schema_defaults_are_filled_in() -> None:
    small = {k: v for k, v in CONFIG["classifiers"]["resnet_small"].items()
             if k not in ("seed", "freeze_bn_stats", "trainable_from_stage")}
    cfg = workflow(classifiers={"bare": small}).classifier_config("bare")
    assert cfg["method"] == "cam" and cfg["seed"] == 0
    assert cfg["freeze_bn_stats"] is False and cfg["trainable_from_stage"] == 1
    slm = workflow().slm_config("gslm")
    assert slm["method"] == "slm" and slm["seed_reactivation"] is True


@pytest.mark.parametrize(("changes", "key"), [
    ({"classifiers": {"resnet_small": {**CONFIG["classifiers"]["resnet_small"],
                                       "method": "puzle"}}}, "classifiers.resnet_small.method"),
    ({"classifiers": {"resnet_small": {**CONFIG["classifiers"]["resnet_small"],
                                       "epochz": 3}}}, "classifiers.resnet_small"),
    ({"resources": {"train_clasifier": {"gpu": 1, "mem_mb": 1, "runtime": 1}}},
     "resources.train_clasifier"),
    ({"refiners": {"irn": {**CONFIG["refiners"]["irn"], "method": "irm"}}},
     "refiners.irn.method"),
    ({"refiners": {"crf": {**CONFIG["refiners"]["crf"], "threshhold": 0.2}}}, "refiners.crf"),
    ({"sources": {"gradcam": {"method": "gradcam", "layr": "backbone.stages.3"}}},
     "sources.gradcam"),
    ({"sources": {"x": {"method": "fulcam", "layers": "all"}}}, "sources.x.method"),
    ({"datasets": {"voc2012": CONFIG["datasets"]["voc12"]}},
     "datasets.voc2012: unknown dataset 'voc2012' (did you mean 'voc12'?)"),
])
def test_a_typo_fails_when_the_workflow_is_read_and_names_the_key(changes, key) -> None:
    with pytest.raises(CamflowInputError, match=re.escape(key)):
        workflow(**changes)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda c: c.update(evalutaion={}),
     r"config key \(top level\): unknown key 'evalutaion' \(did you mean 'evaluation'\?\)"),
    (lambda c: c["cams"].update(scaels=[1.0]),
     r"config key cams: unknown key 'scaels' \(did you mean 'scales'\?\)"),
    (lambda c: c["classifiers"]["resnet_small"]["optimizer"].update(lr="1e-3"),
     r"optimizer\.lr: '1e-3' is a string, not a number: YAML 1\.1 .* write 0\.001 or 1\.0e-3"),
])
def test_config_errors_are_one_line_in_the_users_words(edit, message) -> None:
    """The whole config is validated by camflow (not snakemake.utils.validate, whose message
    is the schema dump: 1,415 lines for a top-level typo), one line naming the key."""
    config = copy.deepcopy(CONFIG)
    edit(config)
    with pytest.raises(CamflowInputError, match=message) as err:
        Workflow(config).check()
    assert "\n" not in str(err.value)


def test_the_static_schema_fills_defaults_in_place() -> None:
    """As snakemake.utils.validate did: the rules read the very dict that was validated."""
    config = {"a": {"x": 1}}
    validate_config(config, {"type": "object", "properties": {"a": {
        "type": "object", "properties": {"x": {}, "b": {"default": 3}}}}})
    assert config == {"a": {"x": 1, "b": 3}}


def test_workers_zero_still_gives_jobs_one_thread() -> None:
    """threads: 0 would export OMP_NUM_THREADS=0, and libgomp warns in every job."""
    assert workflow(runtime={"workers": 0}).threads == 1
    assert workflow(runtime={"workers": 3}).threads == 3
    rules = "".join(p.read_text() for p in (REPO / "rules").glob("*.smk"))
    assert 'threads: config["runtime"]["workers"]' not in rules and "threads: W.threads" in rules


def test_dataset_fingerprint_follows_the_files(tmp_path: Path) -> None:
    """check_dataset's `files` param changes when a mask of the split is edited (so
    Snakemake reruns the check and every stage after it), not when another split's is."""
    from fixtures import make_coco_fixture, make_voc_fixture

    voc = make_voc_fixture(tmp_path / "voc")
    wf = workflow(datasets={"voc12": {**CONFIG["datasets"]["voc12"], "root": str(voc)}})
    before = {s: wf.dataset_fingerprint("voc12", s) for s in ("train", "val")}
    mask = voc / "SegmentationClass" / "2007_000039.png"
    mask.write_bytes(mask.read_bytes())
    os.utime(mask, ns=(1, 1))
    assert wf.dataset_fingerprint("voc12", "train") != before["train"]
    assert wf.dataset_fingerprint("voc12", "val") == before["val"]
    assert wf.dataset_fingerprint("synthetic", "train") is None
    coco = make_coco_fixture(tmp_path / "coco")
    wf = workflow(datasets={"coco14": {**CONFIG["datasets"]["coco14"], "root": str(coco)}})
    first = wf.dataset_fingerprint("coco14", "train")
    os.utime(coco / "annotations" / "instances_train2014.json", ns=(1, 1))
    assert wf.dataset_fingerprint("coco14", "train") != first


def test_gslm_stage_chain_and_sweep_points() -> None:
    wf = workflow()
    stage3 = wf.slm_training_inputs(wc(gslm="gslm", n="3"))
    prefix = "results/synthetic/resnet_small/gslm"
    assert stage3["previous"] == f"{prefix}/stage2/classifier.pt"
    assert stage3["confidence"] == f"{prefix}/stage2/train_aug/confidence.h5"
    stage2 = wf.slm_training_inputs(wc(gslm="gslm_no_sr", n="2"))  # stage 1 shared with gslm
    assert stage2["previous"] == "results/synthetic/resnet_small/classifier.pt"
    assert stage2["confidence"] == f"{prefix}/stage1/train_aug/confidence.h5"
    with pytest.raises(CamflowInputError, match="gslm.gslm_no_sr.stages"):
        wf.slm_training_inputs(wc(gslm="gslm_no_sr", n="3"))
    # GSLM+ starts from IRN's refined scores; Fig. 8's points are registered configurations
    assert wf.gslm_eval_path("resnet_small", "gslm_plus", 1, "synthetic") == \
        "results/synthetic/resnet_small/cam/irn_small/train/eval.json"
    assert wf.config["gslm"]["gslm_k24"]["slm"]["k"] == 24
    assert wf.config["affinity_labels"]["gslm_bg0p15_fg0p3"]["bg_threshold"] == 0.15


def test_refiner_paths() -> None:
    wf = workflow()
    crf = wf.refine_inputs(wc(source="cam", refiner="crf", split="train"))
    assert "model" not in crf
    assert crf["seed_eval"] == "results/synthetic/resnet_small/cam/train/eval.json"
    irn = wf.refine_inputs(wc(source="cam", refiner="irn_small", split="val"))
    assert irn["model"] == "results/synthetic/resnet_small/cam/irn_small/model.pt"
    assert irn["cache"] == "results/synthetic/resnet_small/cam/val/cams.h5"
    assert wf.refiner_inference_config("crf")["settings"]["threshold"] == "best"
    assert "random_walk" not in wf.refiner_training_config("irn_small")
    with pytest.raises(CamflowInputError, match="refiners.crf.method"):
        wf.refiner_training_config("crf")


def test_resources_come_from_one_place() -> None:
    wf = workflow(resources={"refine": {"gpu": 0, "mem_mb": 123, "runtime": 7}})
    assert wf.stage_resources("refine") == {"gpu": 0, "mem_mb": 123, "runtime": 7}
    del wf.config["resources"]["refine"]
    with pytest.raises(CamflowInputError, match="resources.refine"):
        wf.stage_resources("refine")


def test_a_dataset_entry_names_its_format_and_a_generated_one_its_root() -> None:
    demo = {**CONFIG["datasets"]["synthetic"], "format": "synthetic", "root": "data/demo"}
    voc_copy = {**CONFIG["datasets"]["voc12"], "format": "voc12", "root": "/data/voc"}
    wf = workflow(datasets={"demo": demo, "voc_copy": voc_copy})
    assert wf.dataset_params("demo", "eval_split")["format"] == "synthetic"
    assert "format" not in wf.dataset_params("synthetic", "eval_split")  # params as before
    assert wf.dataset_marker(SimpleNamespace(dataset="demo")) == "data/demo/meta.json"
    assert wf.dataset_marker(SimpleNamespace(dataset="voc_copy")) == []
    assert wf.generated_dataset("data/demo")["generate"] == demo["generate"]
    assert wf.dataset_fingerprint("demo", "train") is None
    with pytest.raises(CamflowInputError, match=r"datasets.voc_copy.generate"):
        workflow(datasets={"voc_copy": {**voc_copy, "generate": demo["generate"]}})
    with pytest.raises(CamflowInputError, match=r"datasets.x.format: unknown dataset 'vco12' "
                                                r"\(did you mean 'voc12'\?\)"):
        workflow(datasets={"x": {**voc_copy, "format": "vco12"}})


def test_a_table_target_builds_its_files_and_the_cam_figures_of_its_caches() -> None:
    wf = workflow()
    base = "results/synthetic/tables"
    seeds = wf.table_targets("cam_seeds")
    assert seeds == [f"{base}/cam_seeds.{x}" for x in ("csv", "md", "html")] + [
        f"{base}/cam_seeds_classes.png", "results/synthetic/resnet_small/cam/train/figure.png"]
    # masks and segmentation records have no CAM figure; GSLM stages and Fig. 4 do
    pipeline = wf.table_targets("base_pipeline")
    assert [p for p in pipeline if p.endswith("figure.png")] == [
        "results/synthetic/resnet_small/cam/train/figure.png"]
    fig5 = wf.table_targets("gslm_fig5")
    assert f"{base}/gslm_fig5.png" in fig5
    assert "results/synthetic/resnet_small/gslm_nocrf/stage4/train/figure.png" in fig5
    assert "results/synthetic/resnet_small/gslm/stages.png" in fig5
    assert wf.cam_figure("results/synthetic/resnet_small/cam/irn_small/train/eval.json") is None
    assert wf.cam_figure("results/synthetic/segmentation/deeplabv2_small/gt/val/eval.json") is None
    assert "Mai et al." in wf.table_description("gslm_table1")
    with pytest.raises(CamflowInputError, match="config key 'targets': 'cam_seed' is not a"):
        wf = Workflow({**copy.deepcopy(CONFIG), "targets": ["cam_seed"]})
        wf.check()


def test_replicates_become_classifiers_of_their_own_seeds() -> None:
    """`replicates: 3` trains seeds s, s+1, s+2 as three classifiers (the first keeps the
    name); a seed list gives those seeds; a bad value or a clash fails naming the key."""
    cfg = copy.deepcopy(CONFIG)
    cfg["classifiers"]["resnet_small_p_noc"]["replicates"] = 3
    cfg["classifiers"]["resnet_small_puzzle"]["replicates"] = [4, 7]
    w = Workflow(cfg)
    w.check()
    assert w.replicate_names("resnet_small_p_noc") == [
        "resnet_small_p_noc", "resnet_small_p_noc_seed1", "resnet_small_p_noc_seed2"]
    assert [w.classifier_config(n)["seed"] for n in w.replicate_names("resnet_small_p_noc")] \
        == [0, 1, 2]
    assert w.classifier_config("resnet_small_p_noc_seed2")["method"] == "p_noc"
    assert w.replicate_names("resnet_small_puzzle") == ["resnet_small_puzzle",
                                                        "resnet_small_puzzle_seed7"]
    assert w.classifier_config("resnet_small_puzzle")["seed"] == 4
    assert w.replicate_names("resnet_small") == ["resnet_small"]
    assert "replicates" not in w.classifier_config("resnet_small_p_noc")  # no rerun of run 1
    for bad in (0, [1, 1], True, "3"):
        cfg = copy.deepcopy(CONFIG)
        cfg["classifiers"]["resnet_small"]["replicates"] = bad
        with pytest.raises(CamflowInputError, match="classifiers.resnet_small.replicates"):
            Workflow(cfg).check()


def test_an_ordinary_classifier_must_exist_and_not_need_its_pupil() -> None:
    cfg = copy.deepcopy(CONFIG)
    cfg["classifiers"]["resnet_small_oc_cse"]["oc"] = "nope"
    with pytest.raises(CamflowInputError, match="classifiers.resnet_small_oc_cse.oc.*nope"):
        Workflow(cfg).check()
    cfg = copy.deepcopy(CONFIG)
    cfg["classifiers"]["resnet_small_ra"].update(method="oc_cse", oc="resnet_small_p_noc")
    with pytest.raises(CamflowInputError, match="a cycle"):
        Workflow(cfg).check()
    w = workflow()
    inputs = w.classifier_training_inputs(SimpleNamespace(dataset="synthetic",
                                                          classifier="resnet_small_p_oc"))
    assert inputs["oc"] == "results/synthetic/resnet_small_ra/classifier.pt"


def test_saliency_sources_their_paths_and_the_labels_that_read_them() -> None:
    wf = workflow()
    cfg = wf.saliency_config("c2am_h_poc")
    assert cfg["hints"] == {"delta_fg": 0.4, "delta_bg": None, "weight": 1.0,
                            "reduction": "mean"}
    assert wf.saliency_config("c2am_small")["hints"] is False
    refined = wf.saliency_config("c2am_h_poc_r")
    assert refined["segmenter"]["arch"] == "deeplabv2"   # the segmenter's block, not its name
    assert refined["segmenter"]["iterations"] == CONFIG["segmenters"]["saliency_small"][
        "iterations"]
    w = wc(saliency="c2am_h_poc")
    assert wf.saliency_training_inputs(w)["priors"] == \
        "results/synthetic/resnet_small_p_oc/cam/train_aug/cams.h5"
    assert "priors" not in wf.saliency_training_inputs(wc(saliency="c2am_small"))  # no hints
    assert wf.saliency_inputs(wc(saliency="c2am_small", split="train"))["priors"] == \
        "results/synthetic/resnet_small_p_oc/cam/train_aug/cams.h5"     # the partition's sign
    w = wc(saliency="c2am_h_poc_r")
    assert wf.saliency_training_inputs(w)["masks"] == \
        "results/synthetic/saliency/c2am_h_poc_r/training_masks"
    assert wf.saliency_masks_input(w) == \
        "results/synthetic/saliency/c2am_h_poc/train_aug/saliency.h5"
    assert wf.saliency_inputs(wc(saliency="c2am_h_poc_r", split="train"))["model"] == \
        "results/synthetic/saliency/c2am_h_poc_r/model.pt"
    evals = wf.saliency_eval_inputs(wc(saliency="c2am_small", split="train",
                                       priors="resnet_small_p_oc/cam"))
    assert evals["priors"] == "results/synthetic/resnet_small_p_oc/cam/train/cams.h5"
    assert "priors" not in wf.saliency_eval_inputs(wc(saliency="c2am_small", split="train",
                                                      priors="gt"))
    labels = wf.affinity_label_inputs(wc(source="cam", split="train_aug", style="sal_poc"))
    assert labels["saliency"] == "results/synthetic/saliency/c2am_h_poc_r/train_aug/saliency.h5"
    assert "saliency" not in wf.affinity_label_inputs(wc(source="cam", split="train_aug",
                                                         style="irn"))
    assert set(wf.saliency_pattern(learned=True).split("|")) == set(CONFIG["saliency"])


@pytest.mark.parametrize(("saliency", "labels", "message"), [
    ({"c2am_small": {"hints": {"delta_fg": 0.4, "wieght": 1}}}, {},
     "saliency.c2am_small.*wieght"),
    ({"c2am_h_poc_r": {"of": "nope"}}, {}, "saliency.c2am_h_poc_r.of.*'nope'"),
    ({"c2am_small": {"priors": "nope/cam"}}, {}, "classifiers.nope"),
    ({}, {"sal_poc": {"saliency": "nope"}}, "affinity_labels.sal_poc.saliency.*'nope'"),
    ({}, {"irn": {"saliency": "c2am_small"}}, "affinity_labels"),
])
def test_bad_saliency_settings_name_the_key(saliency, labels, message) -> None:
    config = copy.deepcopy(CONFIG)
    for name, change in saliency.items():
        config["saliency"][name] = {**config["saliency"][name], **change}
    for name, change in labels.items():
        config["affinity_labels"][name] = {**config["affinity_labels"][name], **change}
    with pytest.raises(CamflowInputError, match=message):
        Workflow(config).check()
