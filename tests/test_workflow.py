"""The whole DAG on a tiny synthetic config, through the snakemake CLI, in a temporary dir.

Also the incremental-recomputation contract: nothing reruns when nothing changed, and a
change of one config value reruns exactly the stages that use it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "data" / "tiny_config.yaml"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

pytestmark = pytest.mark.slow
BASE_TABLE = "results/synthetic/tables/base_pipeline.csv"


def snakemake(workdir: Path, *args: str, config: dict | None = None,
              check: bool = True) -> subprocess.CompletedProcess:
    extra = []
    if config:
        override = workdir / "override.yaml"
        override.write_text(yaml.safe_dump(config))
        extra = [str(override)]
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", *args, "--configfile", str(TINY), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule → job count from a dry run's 'Job stats' block (empty when nothing to do)."""
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    block = text.split("Job stats:", 1)[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)
            if m[1] != "total"}


def test_slurm_profile_dry_run_needs_no_conda(tmp_path: Path) -> None:
    """The SLURM profile plans the DAG on a machine without conda (and without SLURM)."""
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    proc = subprocess.run(
        [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
         "--profile", str(REPO / "profiles" / "slurm"), "-n", f"--configfile={TINY}",
         "results/synthetic/tables/cam_seeds.csv"],
        capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert planned_jobs(proc)["train_classifier"] == 1


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("dag")
    snakemake(workdir, "results/synthetic/tables/cam_seeds.csv")
    return workdir


def test_dag_builds_the_cam_seeds_table(built: Path) -> None:
    table = (built / "results/synthetic/tables/cam_seeds.csv").read_text().splitlines()
    assert table[0] == "classifier,seed_miou,crf_miou,best_threshold,m_under,m_over"
    row = table[1].split(",")
    assert row[0] == "resnet_small"
    seed, crf = float(row[1]), float(row[2])
    assert 0 < seed <= 100 and 0 < crf <= 100
    ev = json.loads((built / "results/synthetic/resnet_small/cam/train/eval.json").read_text())
    assert abs(100 * ev["miou"] - seed) < 0.01 and ev["kind"] == "seeds"
    assert ev["threshold"] in ev["sweep"]["thresholds"]
    assert max(ev["sweep"]["miou"]) == ev["miou"]
    assert (built / "results/logs/synthetic/resnet_small/train_classifier.log").stat().st_size


def test_cam_figure_is_a_png(built: Path) -> None:
    png = built / "results/synthetic/resnet_small/cam/train/figure.png"
    snakemake(built, str(png.relative_to(built)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000


def test_second_run_does_nothing(built: Path) -> None:
    assert planned_jobs(snakemake(built, "-n", "results/synthetic/tables/cam_seeds.csv")) == {}


def test_changing_tta_scales_reruns_cams_not_training(built: Path) -> None:
    jobs = planned_jobs(snakemake(built, "-n", "results/synthetic/tables/cam_seeds.csv",
                                  config={"cams": {"scales": [1.0, 1.5]}}))
    assert jobs == {"make_cams": 1, "eval_cams": 1, "table": 1}


def test_changing_crf_reruns_only_evaluation(built: Path) -> None:
    jobs = planned_jobs(snakemake(built, "-n", "results/synthetic/tables/cam_seeds.csv",
                                  config={"evaluation": {"crf": {"enabled": False}}}))
    assert jobs == {"eval_cams": 1, "table": 1}


def test_changing_classifier_reruns_training_and_downstream(built: Path) -> None:
    jobs = planned_jobs(snakemake(built, "-n", "results/synthetic/tables/cam_seeds.csv",
                                  config={"classifiers": {"resnet_small": {"epochs": 2}}}))
    assert jobs == {"train_classifier": 1, "make_cams": 1, "eval_cams": 1, "table": 1}


def test_config_typo_fails_naming_the_key(tmp_path: Path) -> None:
    proc = snakemake(tmp_path, "-n", config={"cams": {"scalez": [1.0]}}, check=False)
    assert proc.returncode != 0
    assert "scalez" in proc.stdout + proc.stderr


def test_corrupt_image_fails_clearly_and_keeps_earlier_artifacts(built: Path,
                                                                  tmp_path: Path) -> None:
    work = tmp_path / "copy"
    shutil.copytree(built, work, symlinks=True)
    victim = sorted((work / "data/synthetic/JPEGImages").glob("train_*.jpg"))[0]
    victim.write_bytes(b"not a jpeg at all")
    checkpoint = work / "results/synthetic/resnet_small/classifier.pt"
    before = checkpoint.read_bytes()
    proc = snakemake(work, "results/synthetic/tables/cam_seeds.csv",
                     config={"cams": {"scales": [1.0, 1.5]}}, check=False)
    assert proc.returncode != 0
    assert victim.stem in proc.stdout + proc.stderr
    assert "corrupt" in proc.stdout + proc.stderr
    log = work / "results/logs/synthetic/resnet_small/cam/train/make_cams.log"
    assert victim.stem in log.read_text(), "the rule's log must say what failed"
    assert checkpoint.read_bytes() == before


def test_bad_masks_fail_before_training_and_are_named_at_once(tmp_path: Path) -> None:
    """check_dataset runs before train_classifier: two broken masks of a split (one
    missing, one unreadable) are named in one failed run, and no training has started."""
    snakemake(tmp_path, "data/synthetic/meta.json")
    root = tmp_path / "data/synthetic"
    first, second = sorted((root / "ImageSets/Segmentation/train.txt").read_text().split())[:2]
    next(root.glob(f"Segmentation*/{first}.png")).unlink()
    next(root.glob(f"Segmentation*/{second}.png")).write_bytes(b"not a png")
    proc = snakemake(tmp_path, "results/synthetic/tables/cam_seeds.csv", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "check_dataset" in out and "2 of " in out and first in out and second in out
    assert not (tmp_path / "results/synthetic/resnet_small/classifier.pt").exists()
    assert "train_classifier" not in "".join(
        line for line in out.splitlines() if line.startswith("localrule"))


def test_fullcam_tables_build(built: Path) -> None:
    targets = [f"results/synthetic/tables/fullcam_table{i}.csv" for i in (2, 3, 4, 5)]
    snakemake(built, *targets)
    t3 = (built / "results/synthetic/tables/fullcam_table3.csv").read_text().splitlines()
    assert [row.split(",")[:2] for row in t3[1:]] == [
        ["cam", "cam"], ["gradcam", "gradcam"], ["gradcampp", "gradcampp"],
        ["fullcam", "fullcam"]]
    for row in t3[1:]:
        assert 0 < float(row.split(",")[5]) <= 100
    t2 = (built / "results/synthetic/tables/fullcam_table2.csv").read_text().splitlines()
    assert [row.split(",")[2] for row in t2[1:]] == [
        "stage4", "stage4+stage3", "stage4+stage3+stage2", "all"]
    t4 = (built / "results/synthetic/tables/fullcam_table4.csv").read_text().splitlines()
    assert [row.split(",")[3:5] for row in t4[1:]] == [
        ["1", "no"], ["1/0.5", "no"], ["1/0.5/1.5", "no"], ["1/0.5", "no"], ["1/0.5", "yes"]]
    t5 = (built / "results/synthetic/tables/fullcam_table5.csv").read_text().splitlines()
    assert t5[0] == "classifier,backbone,cam_1x,fullcam_1x"
    assert [row.split(",")[0] for row in t5[1:]] == ["resnet_small", "resnet_small_os8"]
    # one classifier's training config reruns that network and its CAMs, not the other's
    jobs = planned_jobs(snakemake(built, "-n", targets[-1], config={
        "classifiers": {"resnet_small_os8": {"epochs": 2}}}))
    assert jobs == {"train_classifier": 1, "make_cams": 2, "eval_cams": 2, "table": 1}


def test_base_pipeline_table_builds_end_to_end(built: Path) -> None:
    snakemake(built, "results/synthetic/tables/base_pipeline.csv")
    lines = (built / "results/synthetic/tables/base_pipeline.csv").read_text().splitlines()
    assert lines[0] == ("classifier,seed,seed_crf,irn_small_masks,affinitynet_small_masks,"
                        "deeplab,deeplab_crf,upper_bound,upper_bound_crf")
    row = lines[1].split(",")
    assert row[0] == "resnet_small"
    assert all(0 <= float(v) <= 100 for v in row[1:])
    base = built / "results/synthetic/resnet_small/cam"
    masks = sorted((base / "irn_small/train/masks").glob("*.png"))
    assert len(masks) == 12                       # every image of the tiny `train` split
    ev = json.loads((base / "irn_small/train/eval.json").read_text())
    assert abs(100 * ev["miou"] - float(row[3])) < 0.01 and ev["n_images"] == 12
    assert (base / "train_aug/affinity_labels/irn.h5").is_file()
    assert (base / "train_aug/affinity_labels/psa.h5").is_file()
    gt = json.loads((built / "results/synthetic/segmentation/deeplabv2_small/gt/val/eval.json")
                    .read_text())
    assert abs(100 * gt["miou"] - float(row[7])) < 0.01
    # one walk parameter reruns that refiner's masks and what reads them, nothing upstream
    jobs = planned_jobs(snakemake(built, "-n", BASE_TABLE, config={
        "refiners": {"affinitynet_small": {"random_walk": {"beta": 4}}}}))
    assert jobs == {"refine": 1, "eval_masks": 1, "table": 1}
    # the IR-label thresholds reach IRN's training and everything after it
    jobs = planned_jobs(snakemake(built, "-n", BASE_TABLE, config={
        "affinity_labels": {"irn": {"fg_threshold": 0.4}}}))
    assert jobs == {"affinity_labels": 1, "train_refiner": 1, "refine": 2, "eval_masks": 1,
                    "train_segmentation": 1, "eval_segmentation": 1, "table": 1}


def test_table_target_rule_and_html_report(built: Path) -> None:
    """`snakemake base_pipeline` builds the table with the figures the report shows, and
    `--report` gathers the rendered table, its per-class IoU, the CAM figure and every
    training curve of its DAG, each with its caption."""
    snakemake(built, "base_pipeline")
    tables = built / "results/synthetic/tables"
    page = (tables / "base_pipeline.html").read_text()
    assert "<th>irn_small_masks</th>" in page and "tables.base_pipeline" in page
    assert (tables / "base_pipeline_classes.png").stat().st_size > 0
    assert (built / "results/synthetic/resnet_small/cam/train/figure.png").is_file()
    snakemake(built, "base_pipeline", "--report", "report.html")
    report = (built / "report.html").read_text()
    for name in ("base_pipeline.html", "base_pipeline_classes.png", "figure.png",
                 "training_curve.png", "Reproduces: the base pipeline", "CAM seeds",
                 "Training curve of"):
        assert name in report, name
    assert report.count("training_curve.png") >= 4   # classifier, 2 refiners, 2 DeepLabs


def test_crf_refiner_masks_score_as_the_seed_evaluations_crf(built: Path) -> None:
    """The `crf` refiner writes the "+CRF" seeds that the seed evaluation scores (at the
    source's best threshold), so its masks' mIoU is exactly the evaluation's CRF mIoU; it
    trains nothing. The classifier's metrics.csv and training curve are there too."""
    base = "results/synthetic/resnet_small/cam"
    dry = planned_jobs(snakemake(built, "-n", f"{base}/crf/train/eval.json"))
    assert dry == {"refine": 1, "eval_masks": 1}
    snakemake(built, f"{base}/crf/train/eval.json")
    masks = json.loads((built / base / "crf/train/eval.json").read_text())
    seeds = json.loads((built / base / "train/eval.json").read_text())
    assert masks["kind"] == "masks" and masks["miou"] == pytest.approx(seeds["crf"]["miou"])
    assert masks["per_class"] == seeds["crf"]["per_class"]
    run = built / "results/synthetic/resnet_small"
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",")[:4] == ["step", "epoch", "lr", "loss"] and len(rows) > 2
    assert (run / "training_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_gslm_stages_build_in_order_and_k_reruns_only_slm_stages(built: Path) -> None:
    dry = snakemake(built, "-n", "results/synthetic/tables/gslm_fig5.csv")
    text = dry.stdout + dry.stderr
    prefix = "results/synthetic/resnet_small/gslm"
    # the dry run lists stage 1's confidence CAM and SLM stages 2..3, each chained to the last
    assert f"output: {prefix}/stage1/train_aug/confidence.h5" in text
    inputs = dict(re.findall(r"input: ([^\n]*)\n\s+output: (\S+/stage\d/classifier\.pt)", text))
    by_stage = {out.split("/")[-2]: inp for inp, out in inputs.items()
                if out.startswith(prefix + "/")}
    assert sorted(by_stage) == ["stage2", "stage3"]
    assert "results/synthetic/resnet_small/classifier.pt" in by_stage["stage2"]
    assert f"{prefix}/stage1/train_aug/confidence.h5" in by_stage["stage2"]
    assert f"{prefix}/stage2/classifier.pt" in by_stage["stage3"]
    assert f"{prefix}/stage2/train_aug/confidence.h5" in by_stage["stage3"]
    snakemake(built, "results/synthetic/tables/gslm_fig5.csv")
    lines = (built / "results/synthetic/tables/gslm_fig5.csv").read_text().splitlines()
    assert lines[0] == "gslm,stage,seed_miou,m_under,m_over"
    assert [row.split(",")[:2] for row in lines[1:]] == [
        ["gslm", "1"], ["gslm", "2"], ["gslm", "3"],
        ["gslm_nocrf", "1"], ["gslm_nocrf", "2"], ["gslm_nocrf", "3"]]
    stage1 = json.loads((built / "results/synthetic/resnet_small/cam/train/eval.json")
                        .read_text())
    assert abs(float(lines[1].split(",")[2]) - 100 * stage1["miou"]) < 0.01
    stage3 = built / "results/synthetic/resnet_small/gslm/stage3"
    assert json.loads((stage3 / "train/eval.json").read_text())["provenance"]["checkpoint"] == \
        "results/synthetic/resnet_small/gslm/stage3/classifier.pt"
    # k is an SLM setting: every SLM stage of both configurations reruns, nothing upstream
    jobs = planned_jobs(snakemake(built, "-n", "results/synthetic/tables/gslm_fig5.csv", config={
        "gslm": {"gslm": {"slm": {"k": 4}}, "gslm_nocrf": {"slm": {"k": 4}}}}))
    assert jobs == {"train_slm": 4, "make_stage_cams": 6, "coarse_generation": 2,
                    "eval_cams": 4, "table": 1}


def test_gslm_fig8_sweeps_and_the_gslm_figures(built: Path) -> None:
    figures = ["results/synthetic/tables/gslm_fig8.png", "results/synthetic/tables/gslm_fig5.png",
               "results/synthetic/resnet_small/gslm/stages.png"]
    snakemake(built, "results/synthetic/tables/gslm_fig8.csv", *figures)
    lines = (built / "results/synthetic/tables/gslm_fig8.csv").read_text().splitlines()
    assert lines[0] == "parameter,value,gslm,stage,seed_miou,best_threshold,m_under,m_over"
    assert [row.split(",")[:4] for row in lines[1:]] == [
        ["theta_bg/theta_fg", "0.05/0.3", "gslm", "2"],
        ["theta_bg/theta_fg", "0.1/0.3", "gslm_bg0p1_fg0p3", "2"],
        ["k", "6", "gslm", "2"], ["k", "3", "gslm_k3", "2"],
        ["iterations", "0", "gslm", "1"], ["iterations", "1", "gslm", "2"],
        ["iterations", "2", "gslm", "3"]]
    for png in figures:
        assert (built / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # each derived point really runs with its own value, and stops at the sweep stage
    from camflow.cache import LabelCache
    from camflow.runtime import load_checkpoint
    base = built / "results/synthetic/resnet_small"
    conf = LabelCache(base / "gslm_bg0p1_fg0p3/stage1/train_aug/confidence.h5")
    assert (conf.provenance["bg_threshold"], conf.provenance["fg_threshold"]) == (0.1, 0.3)
    stage2 = load_checkpoint(base / "gslm_k3/stage2/classifier.pt")
    assert stage2["method"] == "slm" and stage2["config"]["k"] == 3
    assert stage2["config"]["network"]["method"] == "cam"   # what stage 1 was
    assert not (base / "gslm_k3/stage3").exists()
    # a k point trains on the base's stage-1 confidence CAM instead of recomputing it
    assert not (base / "gslm_k3/stage1").exists()
    log = built / "results/logs/synthetic/resnet_small/gslm_k3/stage2/train_slm.log"
    assert "gslm/stage1/train_aug/confidence.h5" in log.read_text()
    # a new sweep value adds that point's jobs only
    jobs = planned_jobs(snakemake(built, "-n", "results/synthetic/tables/gslm_fig8.csv", config={
        "tables": {"gslm_fig8": {"k": [6, 3, 4]}}}))
    assert jobs == {"train_slm": 1, "make_stage_cams": 1, "eval_cams": 1, "table": 1}
    # iterations past the base's last stage run the base one configuration longer
    longer = snakemake(built, "-n", "results/synthetic/tables/gslm_fig8.csv", config={
        "tables": {"gslm_fig8": {"iterations": [0, 3]}}})
    assert planned_jobs(longer)["train_slm"] == 3       # gslm_stages4: its stages 2, 3, 4
    assert "gslm_stages4/stage4/train/eval.json" in longer.stdout
    bad = snakemake(built, "-n", "results/synthetic/tables/gslm_fig8.csv", check=False, config={
        "tables": {"gslm_fig8": {"sweep_stage": 4}}})
    assert bad.returncode != 0
    assert "tables.gslm_fig8.sweep_stage" in bad.stdout + bad.stderr


def test_gslm_tables_1_4_and_5_build(built: Path) -> None:
    snakemake(built, "results/synthetic/tables/gslm_table1.csv",
              "results/synthetic/tables/gslm_table4.csv",
              "results/synthetic/tables/gslm_table5.csv")
    t4 = (built / "results/synthetic/tables/gslm_table4.csv").read_text().splitlines()
    assert t4[0] == "source,gslm,stages,seed,gslm_seed,gain"
    assert [row.split(",")[:3] for row in t4[1:]] == [["cam", "gslm", "3"],
                                                       ["cam/irn_small", "gslm_plus", "2"],
                                                       ["gradcam", "gslm_gradcam", "2"]]
    for row in t4[1:]:
        seed, after, gain = map(float, row.split(",")[3:])
        assert abs(after - seed - gain) < 0.02
    t1 = (built / "results/synthetic/tables/gslm_table1.csv").read_text().splitlines()
    assert t1[0] == ("method,stages,seed,crf,mask_affinitynet_small,mask_irn_small,m_under,"
                     "m_over")
    assert [row.split(",")[:2] for row in t1[1:]] == [
        ["CAM", "1"], ["random walk (affinitynet_small)", "1"], ["random walk (irn_small)", "1"],
        ["gslm", "3"], ["gslm_plus", "2"]]
    # a random-walk row shows its own refiner's masks of CAM; GSLM rows every refiner's
    cells = [row.split(",")[4:6] for row in t1[1:]]
    assert cells[0] == ["-", "-"] and cells[1][1] == "-" and cells[2][0] == "-"
    assert all(c != "-" for row in cells[3:] for c in row)
    base = built / "results/synthetic/resnet_small"
    # GSLM+ starts from IRN's refined scores and its Mask column refines its own last stage
    plus = json.loads((base / "gslm_plus/stage2/train/eval.json").read_text())
    assert plus["provenance"]["checkpoint"].endswith("gslm_plus/stage2/classifier.pt")
    conf = base / "gslm_plus/stage1/train_aug/confidence.h5"
    from camflow.cache import LabelCache
    assert LabelCache(conf).provenance["cams"].endswith("cam/irn_small/train_aug/scores.h5")
    assert (base / "gslm/stage3/irn_small/train/eval.json").is_file()
    t5 = (built / "results/synthetic/tables/gslm_table5.csv").read_text().splitlines()
    assert [row.split(",")[:5] for row in t5[1:]] == [
        ["CAM (baseline)", "-", "-", "-", "0"], ["gslm_no_cg", "", "x", "x", "1"],
        ["gslm_no_sr", "x", "", "x", "1"], ["gslm_no_cls", "x", "x", "", "1"],
        ["gslm w/o iterations", "x", "x", "x", "1"], ["gslm", "x", "x", "x", "2"]]
    # without Coarse Generation the SLM learns from the previous stage's CAM cache itself
    log = (built / "results/logs/synthetic/resnet_small/gslm_no_cg/stage2/train_slm.log")
    assert "cam/train_aug/cams.h5" in log.read_text()


def test_segmentation_tables_build_from_their_evaluations(built: Path) -> None:
    """GSLM Tables 2-3 and Fully-CAM Tables 1, 6, 7: DeepLab on each row's pseudo masks,
    every number read from that run's val evaluation (the synthetic benchmark has no test
    split, so no test column and no submission)."""
    names = ["gslm_table2", "gslm_table3", "fullcam_table1", "fullcam_table6", "fullcam_table7"]
    snakemake(built, *(f"results/synthetic/tables/{n}.csv" for n in names))
    seg = built / "results/synthetic/segmentation/deeplabv2_small"
    t6 = list(csv.reader((built / "results/synthetic/tables/fullcam_table6.csv").open()))
    assert t6[0] == ["method", "masks", "segmenter", "val", "val_msf", "val_crf"]
    assert [row[:2] for row in t6[1:]] == [["IRN", "resnet_small/cam/irn_small"],
                                           ["Fully-CAM + IRN", "resnet_small/fullcam_1x/irn_small"]]
    for row in t6[1:]:
        ev = json.loads((seg / row[1] / "val/eval.json").read_text())
        assert [float(v) for v in row[3:]] == pytest.approx(
            [100 * ev["single_scale"]["miou"], 100 * ev["miou"], 100 * ev["crf"]["miou"]],
            abs=0.006)
    t2 = list(csv.reader((built / "results/synthetic/tables/gslm_table2.csv").open()))
    assert [row[:2] for row in t2[1:]] == [["GSLM", "resnet_small/gslm/stage3/irn_small"],
                                           ["GSLM+", "resnet_small/gslm_plus/stage2/irn_small"]]
    t1 = list(csv.reader((built / "results/synthetic/tables/fullcam_table1.csv").open()))
    assert t1[0] == ["method", "background", "frog", "deer", "crab", "mean"]
    assert t1[1][-1] == t6[1][5]                     # the +CRF mean is Table 6's val_crf
    assert not list(seg.rglob("submission.tar.gz"))


def test_claims_table_builds_on_both_benchmarks(built: Path) -> None:
    """`snakemake claims` builds every claim's records on both synthetic benchmarks; each
    number is the one of the record it names and `holds` is its relation."""
    snakemake(built, "claims")
    tables = built / "results/synthetic/tables"
    header, *lines = csv.reader(io.StringIO((tables / "claims.csv").read_text()))
    assert header[4:] == [f"{ds}: {c}" for ds in ("synthetic", "synthetic_parts")
                          for c in ("left", "right", "holds")]
    rows = {row[2]: row for row in lines}
    assert set(rows) >= {"cam seeds + CRF > cam seeds", "irn_small masks > cam seeds",
                         "gslm stage 2 > stage 1", "fullcam > cam",
                         "fullcam_stage5_4 > fullcam_stage5", "irn_small masks of gslm > "
                         "irn_small masks of cam"}
    for row in rows.values():
        for left, right, holds in (row[4:7], row[7:10]):
            relation = next(r for r in (">", "<", "≥", "≤") if f" {r} " in row[2])
            expected = {">": float(left) > float(right), "<": float(left) < float(right),
                        "≥": float(left) >= float(right),
                        "≤": float(left) <= float(right)}[relation]
            assert holds == ("yes" if expected else "NO"), row
    for ds, offset in (("synthetic", 4), ("synthetic_parts", 7)):
        stage2 = json.loads((built / f"results/{ds}/resnet_small/gslm/stage2/train/eval.json")
                            .read_text())
        row = rows["gslm stage 2 > stage 1"]
        assert abs(100 * stage2["miou"] - float(row[offset])) < 0.01
    meta = json.loads((built / "data/synthetic_parts/meta.json").read_text())
    assert meta["config"]["part_offset"] == -1.5 and meta["config"]["max_distractors"] == 0
    assert (tables / "claims.png").stat().st_size > 0
    assert {"resnet_small_p_noc_ls ≥ resnet_small_cam",
            "resnet_small_puzzle ≥ resnet_small_cam on singletons",
            "resnet_small_puzzle ≤ resnet_small_cam on co-occurring classes",
            "resnet_small_p_noc > resnet_small_cam (2nd half)"} <= set(rows)
    # a claim's settings change the table, nothing it reads
    jobs = planned_jobs(snakemake(built, "-n", "claims", config={
        "tables": {"claims": {"claims": {"random_walk": {"refiners": ["irn_small"]}}}}}))
    assert jobs == {"table": 1, "table_figure": 1, "claims": 1}


def test_pnoc_tables_read_the_strategies_records(built: Path) -> None:
    """P-NOC's tables build on synthetic_parts: Table 3's cells are each strategy's per-class
    IoU and the class properties of the masks; Table 2's epochs are `eval_epochs`' and its
    TTA column the CAM evaluation's; Fig. 6 is drawn."""
    snakemake(built, "pnoc_table1", "pnoc_table2", "pnoc_table3", "pnoc_table4",
              "pnoc_table5", config={"dataset": "synthetic_parts"})
    results = built / "results/synthetic_parts"
    header, *lines = csv.reader((results / "tables/pnoc_table3.csv").open())
    rows = {row[0]: row for row in lines}
    record = json.loads((results / "resnet_small_p_noc_ls/cam/train/eval.json").read_text())
    for c in record["per_class"]:
        assert abs(float(rows[c["class"]][header.index("PNOC")]) - 100 * c["iou"]) < 0.01
    labels = json.loads((built / "data/synthetic_parts/cls_labels.json").read_text())
    ids = (built / "data/synthetic_parts/ImageSets/Segmentation/train.txt").read_text().split()
    for k, name in enumerate(["frog", "deer", "crab"], start=1):
        assert float(rows[name][header.index("O")]) == sum(k in labels[i] for i in ids)
    assert any(name.startswith("ρ %C") for name in rows)
    header, *lines = csv.reader((results / "tables/pnoc_table2.csv").open())
    row = next(r for r in lines if r[0] == "P-NOC+LS")
    epochs = json.loads((results / "resnet_small_p_noc_ls/epoch_eval/train.json").read_text())
    assert [float(v) for v in row[2:4]] == pytest.approx(
        [100 * e["miou"] for e in epochs["epochs"]], abs=0.01)
    assert float(row[header.index("TTA")]) == pytest.approx(100 * record["miou"], abs=0.01)
    assert (results / "tables/pnoc_table2.png").stat().st_size > 0
    for table in ("pnoc_table1", "pnoc_table4", "pnoc_table5"):
        assert (results / f"tables/{table}.md").stat().st_size > 0


def test_pnoc_priors_compose_with_every_later_stage(tmp_path: Path) -> None:
    """A P-NOC classifier's CAMs are a source like any: IRN refines them, GSLM starts from
    them, DeepLab trains on their masks; training it first trains its ordinary classifier."""
    prefix = "results/synthetic/resnet_small_p_noc"
    jobs = planned_jobs(snakemake(
        tmp_path, "-n", f"{prefix}/cam/irn_small/train/eval.json",
        f"{prefix}/gslm/stage2/train/eval.json",
        "results/synthetic/segmentation/deeplabv2_small/resnet_small_p_noc/cam/irn_small/val/"
        "eval.json"))
    assert jobs["train_classifier"] == 1 and jobs["train_classifier_epochs"] == 1
    assert {"train_refiner", "refine", "train_slm", "train_segmentation"} <= set(jobs)


def test_pnoc_saliency_tables_build(built: Path) -> None:
    """P-NOC Tables 6, 7, 8 and 10 build on the tiny config: C²AM / C²AM-H trained, oriented
    and scored with priors and with the ground truth (P.), refined by the binary segmenter
    (R.); IRN on saliency-aware labels; DeepLab on its masks. Each cell is its record's; a
    saliency setting reruns the saliency chain and what reads it, no classifier."""
    snakemake(built, "pnoc_table6", "pnoc_table7", "pnoc_table8", "pnoc_table10")
    results = built / "results/synthetic"
    header, *lines = csv.reader((results / "tables/pnoc_table6.csv").open())
    rows = {row[0]: row for row in lines}
    for label, saliency, priors in (("C²AM-H (P-OC), P-OC", "c2am_h_poc", "resnet_small_p_oc/cam"),
                                    ("C²AM, GT", "c2am_small", "gt")):
        p = json.loads((results / f"saliency/{saliency}/train/eval/{priors}.json").read_text())
        r = json.loads((results / f"saliency/{saliency}_r/train/eval/{priors}.json").read_text())
        assert float(rows[label][header.index("P.")]) == pytest.approx(100 * p["miou"], abs=0.01)
        assert float(rows[label][header.index("R.")]) == pytest.approx(100 * r["miou"], abs=0.01)
        assert p["kind"] == "saliency" and len(p["sweep"]["miou"]) == 16
    import h5py

    with h5py.File(results / "saliency/c2am_small/train/saliency.h5") as h5:
        provenance = json.loads(h5.attrs["provenance"])
    assert provenance["first_partition"] in ("foreground", "background")
    assert provenance["hints"] is False and provenance["priors"] == "resnet_small_p_oc/cam"
    for name in ("c2am_small", "c2am_h_poc_r"):                # P-NOC Fig. 8, per source
        assert (results / f"saliency/{name}/train/figure.png").stat().st_size > 0
    masks = sorted((results / "saliency/c2am_h_poc_r/training_masks").glob("*.png"))
    assert len(masks) == 24                                   # every train_aug image
    header, *lines = csv.reader((results / "tables/pnoc_table7.csv").open())
    row = next(r for r in lines if r[0] == "P-OC+C²AM-H")
    record = json.loads((results / "resnet_small_p_oc/cam/irn_small_sal_poc/val/eval.json")
                        .read_text())
    assert float(row[header.index("val")]) == pytest.approx(100 * record["miou"], abs=0.01)
    for table in ("pnoc_table8", "pnoc_table10"):
        assert (results / f"tables/{table}.md").stat().st_size > 0
    # the claims' rows read the same records
    config = yaml.safe_load((REPO / "config.yaml").read_text())["tables"]["claims"]["claims"]
    claims = {name: config[name] for name in ("pnoc_saliency_hints", "pnoc_pseudo_masks")}
    snakemake(built, "claims", config={"tables": {"claims": {
        "datasets": ["synthetic"], "claims": claims}}})
    header, *lines = csv.reader((results / "tables/claims.csv").open())
    rows = {row[2]: row for row in lines}
    p_oc = "resnet_small_p_oc/cam/irn_small"
    row = rows[f"{p_oc}_sal_poc masks > {p_oc} masks"]
    assert float(row[4]) == pytest.approx(100 * json.loads(
        (results / f"{p_oc}_sal_poc/train/eval.json").read_text())["miou"], abs=0.01)
    assert "c2am_h_poc_r > c2am_small_r (R., priors gt)" in rows
    jobs = planned_jobs(snakemake(built, "-n", "pnoc_table7", config={
        "saliency": {"c2am_h_poc": {"hints": {"delta_fg": 0.3}}}}))
    assert {"train_saliency", "make_saliency", "affinity_labels", "train_refiner"} <= set(jobs)
    assert not {"train_classifier", "train_classifier_epochs", "make_cams"} & set(jobs)
    assert jobs["train_saliency"] == 2                        # C²AM-H and its refiner
