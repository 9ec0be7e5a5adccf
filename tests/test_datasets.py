"""Dataset loaders on tiny fixtures laid out like the real downloads."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camflow.data import build_dataset
from camflow.data.coco import COCO14Dataset
from camflow.data.voc import VOC12_CLASSES, SyntheticDataset, VOC12Dataset
from camflow.io import CamflowInputError
from fixtures import (
    SYNTHETIC_CLASSES,
    VOC_SPLITS,
    VOC_TEST_SIZES,
    make_coco_fixture,
    make_synthetic_fixture,
    make_voc_fixture,
    voc_fixture_mask,
    write_palette_png,
)

TRAIN9 = "COCO_train2014_000000000009"
TRAIN25 = "COCO_train2014_000000000025"
TRAIN30 = "COCO_train2014_000000000030"
VAL42 = "COCO_val2014_000000000042"


def esc(value: object) -> str:
    return re.escape(str(value))


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    return make_voc_fixture(tmp_path)


@pytest.fixture
def coco_root(tmp_path: Path) -> Path:
    return make_coco_fixture(tmp_path)


# -- PASCAL VOC 2012 ----------------------------------------------------------------------------


def test_voc12_ids_and_classes(voc_root: Path) -> None:
    ds = build_dataset("voc12", voc_root)
    assert isinstance(ds, VOC12Dataset)
    assert ds.name == "voc12"
    assert ds.class_names == VOC12_CLASSES
    assert ds.class_names[0] == "background" and ds.class_names[20] == "tvmonitor"
    assert ds.num_classes == 20
    assert ds.splits() == ("train", "val", "train_aug", "test")
    for split, ids in VOC_SPLITS.items():   # 2008_000002 is background only: left out
        assert ds.ids(split) == [i for i in ids if i != "2008_000002"]
    image = ds.load_image("2007_000032")
    assert image.shape == (30, 40, 3) and image.dtype == np.uint8


def test_voc12_masks_exact(voc_root: Path) -> None:
    ds = VOC12Dataset(voc_root)
    mask = ds.load_mask("2007_000032", "train")
    np.testing.assert_array_equal(mask, voc_fixture_mask("2007_000032"))
    assert mask[10, 10] == 1 and mask[20, 30] == 15  # aeroplane, person
    assert mask[4, 10] == 255 and mask[15, 10] == 255  # VOC object outline
    assert mask[0, 0] == 0
    aug = ds.load_mask("2007_000032", "train_aug")  # greyscale SBD mask, no outline
    np.testing.assert_array_equal(aug, voc_fixture_mask("2007_000032", border=False))
    assert 255 not in aug
    val = ds.load_mask("2008_000003", "val")
    assert val[15, 20] == 8 and val[5, 5] == 12  # cat drawn over dog


def test_voc12_labels_from_masks(voc_root: Path) -> None:
    ds = VOC12Dataset(voc_root)
    assert ds.image_labels("train") == {"2007_000032": (1, 15), "2007_000039": (20,)}
    assert ds.image_labels("val") == {"2008_000003": (8, 12)}
    assert ds.image_labels("train_aug")["2008_000002"] == ()


def test_voc12_labels_cache_written_and_reused(
    voc_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    VOC12Dataset(voc_root, cache_dir=cache).image_labels("train")
    path = cache / "voc12_train_labels.json"
    doc = json.loads(path.read_text())
    assert doc["labels"] == {"2007_000032": [1, 15], "2007_000039": [20]}

    # A fresh dataset reads the cache instead of the masks (same fingerprint).
    doc["labels"] = {"2007_000032": [2], "2007_000039": [3, 4]}
    path.write_text(json.dumps(doc))

    def no_masks(*args: object) -> None:
        raise AssertionError("masks read although the labels cache exists")

    monkeypatch.setattr(VOC12Dataset, "load_mask", no_masks)
    labels = VOC12Dataset(voc_root, cache_dir=str(cache)).image_labels("train")
    assert labels == {"2007_000032": (2,), "2007_000039": (3, 4)}


def test_voc12_stale_cache_recomputed(voc_root: Path, tmp_path: Path) -> None:
    path = tmp_path / "voc12_train_labels.json"
    path.write_text(json.dumps({"other_id": [1]}))           # the format before fingerprints
    labels = VOC12Dataset(voc_root, cache_dir=tmp_path).image_labels("train")
    assert labels == {"2007_000032": (1, 15), "2007_000039": (20,)}
    assert json.loads(path.read_text())["labels"]["2007_000039"] == [20]


def test_voc12_labels_follow_edited_masks_and_another_root(voc_root: Path,
                                                          tmp_path: Path) -> None:
    """The cache is keyed by the masks' content (stat fingerprint), not the dataset name:
    relabelling a mask, or pointing at another root, recomputes the labels."""
    cache = tmp_path / "cache"
    assert VOC12Dataset(voc_root, cache_dir=cache).image_labels("train")["2007_000039"] == (20,)
    mask_path = voc_root / "SegmentationClass" / "2007_000039.png"
    mask = np.asarray(Image.open(mask_path))
    relabelled = np.where(mask == 20, 1, mask).astype(np.uint8)      # tvmonitor → aeroplane
    image = Image.fromarray(relabelled, mode="P")
    image.putpalette(Image.open(mask_path).getpalette())
    image.save(mask_path)
    assert VOC12Dataset(voc_root, cache_dir=cache).image_labels("train")["2007_000039"] == (1,)
    copy = tmp_path / "copy"
    shutil.copytree(voc_root, copy)
    (copy / "SegmentationClass" / "2007_000039.png").write_bytes(
        (voc_root / "SegmentationClass" / "2007_000032.png").read_bytes())
    assert VOC12Dataset(copy, cache_dir=cache).image_labels("train")["2007_000039"] == (1, 15)


def test_voc12_in_memory_labels_without_cache_dir(voc_root: Path, tmp_path: Path) -> None:
    ds = VOC12Dataset(voc_root)
    assert ds.image_labels("train") is ds.image_labels("train")
    assert not list(tmp_path.glob("**/*_labels.json"))


def test_images_without_foreground_are_left_out_of_the_split(
    voc_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One policy for every dataset (COCO below): training, CAMs and evaluation never see a
    background-only image, and the log names it."""
    ds = VOC12Dataset(voc_root)
    with caplog.at_level(logging.WARNING):
        kept = ds.ids("train_aug")
    assert kept == ["2007_000032", "2007_000039"]
    assert "leaving out 1 image(s) with no foreground class: '2008_000002'" in caplog.text
    assert set(ds.image_labels("train_aug")) == {*kept, "2008_000002"}


def test_voc12_split_list_with_paths(voc_root: Path) -> None:
    lists = voc_root / "ImageSets" / "Segmentation"
    (lists / "train_aug.txt").write_text(
        "/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png\n\n"
    )
    assert VOC12Dataset(voc_root).ids("train_aug") == ["2007_000032"]


def test_voc12_corrupt_jpeg(voc_root: Path) -> None:
    path = voc_root / "JPEGImages" / "2007_000039.jpg"
    path.write_bytes(b"this is not a jpeg" * 10)
    ds = VOC12Dataset(voc_root)
    with pytest.raises(CamflowInputError, match=f"2007_000039.*{esc(path)}.*corrupt"):
        ds.load_image("2007_000039")
    with pytest.raises(CamflowInputError, match=f"2007_000039.*{esc(path)}"):
        ds.load_mask("2007_000039", "train")


def test_voc12_missing_image(voc_root: Path) -> None:
    path = voc_root / "JPEGImages" / "2007_000039.jpg"
    path.unlink()
    ds = VOC12Dataset(voc_root)
    with pytest.raises(CamflowInputError, match=f"2007_000039.*{esc(path)}"):
        ds.ids("train")
    with pytest.raises(CamflowInputError, match=f"2007_000039.*{esc(path)}.*does not exist"):
        ds.load_image("2007_000039")


def test_voc12_missing_mask(voc_root: Path) -> None:
    path = voc_root / "SegmentationClass" / "2007_000039.png"
    path.unlink()
    ds = VOC12Dataset(voc_root)
    with pytest.raises(CamflowInputError, match=f"2007_000039.*{esc(path)}.*does not exist"):
        ds.load_mask("2007_000039", "train")
    with pytest.raises(CamflowInputError, match=esc(path)):
        ds.image_labels("train")


def test_voc12_mask_size_mismatch(voc_root: Path) -> None:
    path = voc_root / "SegmentationClass" / "2007_000039.png"
    write_palette_png(path, np.zeros((20, 20), dtype=np.uint8))
    with pytest.raises(CamflowInputError, match=f"2007_000039.*{esc(path)}.*20x20.*40x30"):
        VOC12Dataset(voc_root).load_mask("2007_000039", "train")


def test_voc12_label_outside_class_list(voc_root: Path) -> None:
    path = voc_root / "SegmentationClass" / "2007_000039.png"
    mask = voc_fixture_mask("2007_000039")
    mask[0, 0] = 21
    write_palette_png(path, mask)
    ds = VOC12Dataset(voc_root)
    with pytest.raises(CamflowInputError, match=f"2007_000039.*{esc(path)}.*\\[21\\]"):
        ds.load_mask("2007_000039", "train")
    with pytest.raises(CamflowInputError, match=esc(path)):
        ds.image_labels("train")


def test_voc12_missing_segmentation_class_aug(voc_root: Path) -> None:
    shutil.rmtree(voc_root / "SegmentationClassAug")
    ds = VOC12Dataset(voc_root)
    assert ds.ids("train") == VOC_SPLITS["train"]  # the VOC tarball splits still work
    expected = voc_root / "SegmentationClassAug"
    with pytest.raises(CamflowInputError, match="SBD") as err:
        ds.ids("train_aug")
    assert "SegmentationClassAug.zip" in str(err.value)
    assert "Hariharan et al. 2011" in str(err.value)
    assert str(expected) in str(err.value)
    with pytest.raises(CamflowInputError, match="SBD"):
        ds.load_mask("2007_000032", "train_aug")


def test_voc12_missing_train_aug_list(voc_root: Path) -> None:
    path = voc_root / "ImageSets" / "Segmentation" / "train_aug.txt"
    path.unlink()
    with pytest.raises(CamflowInputError, match=f"{esc(path)}.*SBD"):
        VOC12Dataset(voc_root).image_labels("train_aug")


def test_voc12_bad_root(voc_root: Path, tmp_path: Path) -> None:
    with pytest.raises(CamflowInputError, match="does not exist"):
        VOC12Dataset(tmp_path / "nowhere")
    with pytest.raises(CamflowInputError, match=f"did you mean {esc(voc_root)}"):
        VOC12Dataset(voc_root.parent)  # VOCdevkit given instead of VOC2012
    shutil.rmtree(voc_root / "JPEGImages")
    with pytest.raises(CamflowInputError, match=esc(voc_root / "JPEGImages")):
        VOC12Dataset(voc_root)


def test_unknown_split(voc_root: Path) -> None:
    with pytest.raises(CamflowInputError, match="unknown split 'trainval'"):
        VOC12Dataset(voc_root).ids("trainval")


def test_voc12_test_split_is_images_only(voc_root: Path) -> None:
    """VOC 2012 test (masks withheld by the evaluation server): every listed image is in the
    split and loads; asking for its masks or labels says the split has none."""
    ds = VOC12Dataset(voc_root)
    assert ds.ids("test") == list(VOC_TEST_SIZES)
    for image_id, size in VOC_TEST_SIZES.items():
        assert ds.load_image(image_id).shape == (*size, 3)
    assert [p.suffix for p in ds.source_files("test")] == [".txt"] + [".jpg"] * 3
    first = next(iter(VOC_TEST_SIZES))
    for read in (lambda: ds.load_mask(first, "test"), lambda: ds.image_labels("test")):
        with pytest.raises(CamflowInputError, match="voc12: split 'test' has no masks"):
            read()
    path = voc_root / "ImageSets" / "Segmentation" / "test.txt"
    path.unlink()
    with pytest.raises(CamflowInputError, match=f"split 'test'.*{esc(path)}.*VOC2012test.tar"):
        VOC12Dataset(voc_root).ids("test")


# -- synthetic ----------------------------------------------------------------------------------


def test_synthetic_loader(tmp_path: Path) -> None:
    root = make_synthetic_fixture(tmp_path)
    ds = SyntheticDataset(root, cache_dir=tmp_path / "cache")
    assert ds.name == "synthetic"
    assert ds.class_names == tuple(SYNTHETIC_CLASSES)
    assert ds.splits() == ("train_aug", "train", "val")
    assert ds.ids("train") == ["syn_0000", "syn_0001"]
    assert ds.image_labels("train") == {"syn_0000": (1,), "syn_0001": (1, 2)}
    mask = ds.load_mask("syn_0001", "train")
    assert mask.shape == (16, 24)
    assert mask[2, 2] == 1 and mask[10, 15] == 2 and mask[0, 0] == 0
    assert ds.load_image("syn_0002").shape == (16, 24, 3)


def test_synthetic_labels_come_from_cls_labels(tmp_path: Path) -> None:
    root = make_synthetic_fixture(tmp_path)
    (root / "cls_labels.json").write_text(json.dumps({"syn_0002": [2, 1]}))
    assert SyntheticDataset(root).image_labels("val") == {"syn_0002": (1, 2)}
    with pytest.raises(CamflowInputError, match="syn_0000.*cls_labels.json"):
        SyntheticDataset(root).image_labels("train")
    (root / "cls_labels.json").write_text(json.dumps({"syn_0002": [3]}))
    with pytest.raises(CamflowInputError, match="syn_0002.*1..2"):
        SyntheticDataset(root).image_labels("val")


def test_synthetic_missing_meta(tmp_path: Path) -> None:
    root = make_synthetic_fixture(tmp_path)
    (root / "meta.json").unlink()
    with pytest.raises(CamflowInputError, match="snakemake data/synthetic/meta.json"):
        SyntheticDataset(root)
    (root / "meta.json").write_text(json.dumps({"classes": ["background", "a"]}))
    with pytest.raises(CamflowInputError, match="'class_names'"):
        SyntheticDataset(root)


# -- MS COCO 2014 -------------------------------------------------------------------------------


def test_coco_ids_classes_labels(coco_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    ds = build_dataset("coco14", coco_root)
    assert isinstance(ds, COCO14Dataset)
    # Category ids 1, 3, 18 (listed unsorted) map to 1, 2, 3 in id order.
    assert ds.class_names == ("background", "person", "car", "dog")
    assert ds.num_classes == 3
    assert ds.splits() == ("train", "val")
    with caplog.at_level(logging.WARNING):
        assert ds.ids("train") == [TRAIN9, TRAIN25]  # 30 has no annotation
    assert "leaving out 1 image(s) with no foreground class" in caplog.text
    assert ds.image_labels("train") == {TRAIN9: (1, 3), TRAIN25: (1, 2), TRAIN30: ()}
    assert ds.image_labels("val") == {VAL42: (2,)}
    assert ds.load_image(VAL42).shape == (24, 32, 3)


def test_coco_masks_exact(coco_root: Path) -> None:
    ds = COCO14Dataset(coco_root)
    # Large person (1), smaller dog (3) on top although the dog is annotated first.
    expected = np.zeros((30, 40), dtype=np.uint8)
    expected[5:25, 5:25] = 1
    expected[10:16, 10:16] = 3
    np.testing.assert_array_equal(ds.load_mask(TRAIN9, "train"), expected)

    # Car (2) from compressed RLE; crowd (uncompressed RLE) → 255; a person inside the crowd.
    expected = np.zeros((30, 40), dtype=np.uint8)
    expected[2:12, 20:35] = 2
    expected[15:28, 2:30] = 255
    expected[18:24, 5:10] = 1
    np.testing.assert_array_equal(ds.load_mask(TRAIN25, "train"), expected)

    # A car made of two polygons.
    expected = np.zeros((24, 32), dtype=np.uint8)
    expected[2:8, 2:8] = 2
    expected[10:20, 20:30] = 2
    np.testing.assert_array_equal(ds.load_mask(VAL42, "val"), expected)


def test_coco_cache_written_and_reused(coco_root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    COCO14Dataset(coco_root, cache_dir=cache).image_labels("train")
    path = cache / "coco14_train_labels.json"
    assert json.loads(path.read_text())["labels"] == {TRAIN9: [1, 3], TRAIN25: [1, 2],
                                                      TRAIN30: []}
    assert (cache / "coco14_categories.json").is_file()
    # Without the annotation files, ids, labels and classes still come from the cache.
    shutil.rmtree(coco_root / "annotations")
    ds = COCO14Dataset(coco_root, cache_dir=cache)
    assert ds.class_names == ("background", "person", "car", "dog")
    assert ds.ids("train") == [TRAIN9, TRAIN25]
    assert ds.image_labels("train") == {TRAIN9: (1, 3), TRAIN25: (1, 2), TRAIN30: ()}


def test_coco_missing_files(coco_root: Path, tmp_path: Path) -> None:
    with pytest.raises(CamflowInputError, match="does not exist.*cocodataset.org"):
        COCO14Dataset(tmp_path / "nowhere")
    path = coco_root / "annotations" / "instances_val2014.json"
    path.unlink()
    ds = COCO14Dataset(coco_root)
    with pytest.raises(CamflowInputError, match=f"{esc(path)}.*annotations_trainval2014.zip"):
        ds.ids("val")
    shutil.rmtree(coco_root / "train2014")
    with pytest.raises(CamflowInputError, match=f"{esc(coco_root / 'train2014')}.*cocodataset"):
        COCO14Dataset(coco_root).ids("train")


def test_coco_corrupt_jpeg_and_bad_ids(coco_root: Path) -> None:
    path = coco_root / "train2014" / f"{TRAIN9}.jpg"
    path.write_bytes(b"\xff\xd8garbage" * 8)
    ds = COCO14Dataset(coco_root)
    with pytest.raises(CamflowInputError, match=f"{TRAIN9}.*{esc(path)}.*corrupt"):
        ds.load_image(TRAIN9)
    with pytest.raises(CamflowInputError, match=f"{TRAIN9}.*{esc(path)}"):
        ds.load_mask(TRAIN9, "train")
    with pytest.raises(CamflowInputError, match=f"{VAL42}.*instances_train2014.json"):
        ds.load_mask(VAL42, "train")
    with pytest.raises(CamflowInputError, match="'img_1'.*not a COCO 2014 image id"):
        ds.load_image("img_1")


def test_coco_caches_follow_the_annotation_file(coco_root: Path, tmp_path: Path) -> None:
    """Moving an annotation to another category, or adding a category, is seen by a
    dataset with a warm cache: both caches carry the annotation files' fingerprint."""
    cache = tmp_path / "cache"
    assert COCO14Dataset(coco_root, cache_dir=cache).image_labels("train")[TRAIN9] == (1, 3)
    path = coco_root / "annotations" / "instances_train2014.json"
    doc = json.loads(path.read_text())
    for ann in doc["annotations"]:
        if ann["image_id"] == 9 and ann["category_id"] == 18:
            ann["category_id"] = 3                                   # dog → car
    doc["categories"].append({"id": 44, "name": "bottle"})
    path.write_text(json.dumps(doc))
    os.utime(path, ns=(1, 1))                                        # whatever the clock
    fresh = COCO14Dataset(coco_root, cache_dir=cache)
    assert fresh.class_names == ("background", "person", "car", "dog", "bottle")
    assert fresh.image_labels("train")[TRAIN9] == (1, 2)


def test_coco_annotation_errors(coco_root: Path) -> None:
    path = coco_root / "annotations" / "instances_train2014.json"
    doc = json.loads(path.read_text())
    doc["annotations"][0]["category_id"] = 99
    path.write_text(json.dumps(doc))
    with pytest.raises(CamflowInputError, match=f"annotation 101.*{esc(path)}.*99"):
        COCO14Dataset(coco_root).image_labels("train")
    doc["annotations"][0]["category_id"] = 18
    doc["images"][0]["height"] = 20  # the json disagrees with the image file
    path.write_text(json.dumps(doc))
    with pytest.raises(CamflowInputError, match=f"{TRAIN9}.*{esc(path)}.*40x20.*40x30"):
        COCO14Dataset(coco_root).load_mask(TRAIN9, "train")
    path.write_text("{not json")
    with pytest.raises(CamflowInputError, match=f"{esc(path)} is not a valid COCO"):
        _ = COCO14Dataset(coco_root).class_names
