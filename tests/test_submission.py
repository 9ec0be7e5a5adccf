"""The PASCAL VOC 2012 evaluation server's archive (rule `export_submission`): its layout,
palette and sizes, that it holds the segmenter's predictions, clear errors for a split it
cannot export, and that the rule plans on the VOC overlay."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from test_segmentation import CFG

from camflow.data.voc import SyntheticDataset, VOC12Dataset
from camflow.io import CamflowInputError, current_umask, voc_palette
from camflow.refine.crf import crf_scores
from camflow.segmentation import (
    crf_score_defaults,
    export_submission,
    load_segmenter,
    predict_probs,
    train_segmentation,
)
from fixtures import VOC_TEST_SIZES, make_synthetic_fixture, make_voc_fixture

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
CPU = torch.device("cpu")
MEMBER = "results/VOC2012/Segmentation/comp6_test_cls/{}.png"
SCALES = [1.0, 0.75]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[VOC12Dataset, Path]:
    """The tiny VOC fixture and a segmenter trained on its `train` masks for 3 iterations, at
    a learning rate small enough that it still predicts several classes (a model that says
    background everywhere would make every comparison below trivial)."""
    tmp = tmp_path_factory.mktemp("submission")
    dataset = VOC12Dataset(make_voc_fixture(tmp / "data"))
    cfg = {**CFG, "iterations": 3, "optimizer": {**CFG["optimizer"], "lr": 1e-4}}
    ckpt = train_segmentation(cfg, dataset, "train", None, tmp / "model.pt", CPU,
                              progress=False)
    return dataset, ckpt


def read_archive(path: Path) -> tuple[list[str], dict[str, Image.Image]]:
    """Member names in order, and each PNG by image id."""
    with tarfile.open(path) as tar:
        names = tar.getnames()
        images = {}
        for name in names:
            with Image.open(io.BytesIO(tar.extractfile(name).read())) as im:
                im.load()
                images[Path(name).stem] = im
    return names, images


def test_archive_holds_the_predictions_as_the_server_reads_them(trained, tmp_path) -> None:
    dataset, ckpt = trained
    out = export_submission(ckpt, dataset, "test", SCALES, True, None, CPU,
                            tmp_path / "submission.tar.gz", progress=False)
    assert os.listdir(tmp_path) == ["submission.tar.gz"]     # no temporary left beside it
    assert out.stat().st_mode & 0o777 == 0o666 & ~current_umask()
    names, images = read_archive(out)
    assert names == [MEMBER.format(i) for i in VOC_TEST_SIZES]
    model = load_segmenter(ckpt, CPU)
    classes = set()
    for image_id, (h, w) in VOC_TEST_SIZES.items():
        im = images[image_id]
        assert im.mode == "P" and im.getpalette() == voc_palette()
        assert im.size == (w, h)
        label = np.asarray(im)
        assert set(np.unique(label)) <= set(range(21))
        probs = predict_probs(model, dataset.load_image(image_id), SCALES, True, CPU)
        np.testing.assert_array_equal(label, probs.argmax(axis=0))
        classes |= set(np.unique(label).tolist())
    assert len(classes) > 1, "a constant prediction would not tell the archive from garbage"


def test_crf_predictions_match_the_crf_of_the_probabilities(trained, tmp_path) -> None:
    """With `crf`, each PNG is the argmax of the CRF marginals (PSA's defaults overridden),
    the same over two worker processes as in-process."""
    dataset, ckpt = trained
    crf = {"iters": 2}
    archives = [read_archive(export_submission(
        ckpt, dataset, "test", [1.0], False, crf, CPU, tmp_path / f"{workers}.tar.gz",
        workers=workers, progress=False))[1] for workers in (1, 2)]
    model = load_segmenter(ckpt, CPU)
    for image_id in VOC_TEST_SIZES:
        image = dataset.load_image(image_id)
        probs = predict_probs(model, image, [1.0], False, CPU)
        expected = crf_scores(image, probs, **{**crf_score_defaults(), **crf}).argmax(axis=0)
        for images in archives:
            np.testing.assert_array_equal(np.asarray(images[image_id]), expected)


def rewrite_split(dataset: VOC12Dataset, split: str, ids: list[str]) -> None:
    dataset.split_file(split).write_text("".join(f"{i}\n" for i in ids))


@pytest.mark.parametrize("case, message", [
    ("empty", r"voc12: split list \S+/test\.txt lists no image"),
    ("missing list", r"voc12: split list of split 'test' \(\S+/test\.txt\) does not exist"),
    ("missing image", r"voc12: image '2009_000012' listed in \S+/test\.txt \(line 2\) "
                      r"does not exist"),
    ("background only", r"voc12/train_aug has no images to export"),
])
def test_a_split_without_images_fails_naming_it(trained, tmp_path, case: str,
                                                message: str) -> None:
    fresh = VOC12Dataset(make_voc_fixture(tmp_path / "data"))
    if case == "empty":
        rewrite_split(fresh, "test", [])
    elif case == "missing list":
        fresh.split_file("test").unlink()
    elif case == "missing image":
        fresh.image_path("2009_000012").unlink()
    else:                                           # every listed image is left out
        rewrite_split(fresh, "train_aug", ["2008_000002"])
    split = "train_aug" if case == "background only" else "test"
    out = tmp_path / "submission.tar.gz"
    with pytest.raises(CamflowInputError, match=message):
        export_submission(trained[1], fresh, split, SCALES, True, None, CPU, out,
                          progress=False)
    assert not out.exists()


def test_only_the_voc_classes_are_exported(trained, tmp_path) -> None:
    synthetic = SyntheticDataset(make_synthetic_fixture(tmp_path))
    with pytest.raises(CamflowInputError, match="21 VOC classes; dataset synthetic has"):
        export_submission(trained[1], synthetic, "val", SCALES, True, None, CPU,
                          tmp_path / "submission.tar.gz", progress=False)


def test_the_rule_plans_on_the_voc_overlay(tmp_path: Path) -> None:
    """A dry run of the archive of DeepLab on IRN's masks, VOC test: export_submission of
    split `test`, after the segmenter it reads."""
    root = make_voc_fixture(tmp_path / "data")
    local = tmp_path / "local.yaml"
    local.write_text(yaml.safe_dump({"datasets": {"voc12": {"root": str(root)}}}))
    target = "results/voc12/segmentation/deeplabv2/resnet50_irn/cam/irn/test/submission.tar.gz"
    proc = subprocess.run(
        [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "-n",
         "--cores", "1", target,
         "--configfile", str(REPO / "config" / "voc12.yaml"), str(local)],
        capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rules = re.findall(r"^(?:local)?rule (\w+):", proc.stdout, re.M)
    assert rules.count("export_submission") == 1 and "train_segmentation" in rules
    job = proc.stdout[proc.stdout.index("rule export_submission:"):]
    assert f"output: {target}" in job
    assert re.search(r"wildcards: .*masks=resnet50_irn/cam/irn, split=test", job)
