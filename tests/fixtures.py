"""Tiny on-disk datasets laid out exactly like the real downloads, with known masks.

Objects are axis-aligned rectangles given as ``(y0, y1, x0, x1)`` half-open pixel ranges, so
tests can check exact mask values.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from camflow.io import voc_palette

Box = tuple[int, int, int, int]

# ---------------------------------------------------------------------------------------------
# PASCAL VOC 2012 (+ SBD SegmentationClassAug)

VOC_SIZE = (30, 40)  # (height, width)
VOC_OBJECTS: dict[str, list[tuple[int, Box]]] = {
    # id: [(class index, box)] painted in order; 1 aeroplane, 8 cat, 12 dog, 15 person, 20 tv
    "2007_000032": [(1, (5, 15, 5, 20)), (15, (18, 26, 25, 35))],
    "2007_000039": [(20, (8, 22, 10, 30))],
    "2008_000002": [],  # background only
    "2008_000003": [(12, (3, 27, 3, 37)), (8, (10, 20, 15, 25))],
}
VOC_SPLITS: dict[str, list[str]] = {
    "train": ["2007_000032", "2007_000039"],
    "val": ["2008_000003"],
    "train_aug": ["2007_000032", "2007_000039", "2008_000002"],
}
# VOC 2012 test: images of different sizes (height, width) listed in test.txt, without masks
VOC_TEST_SIZES: dict[str, tuple[int, int]] = {
    "2008_000006": (30, 40),
    "2009_000012": (36, 28),
    "2010_000021": (24, 50),
}


def voc_fixture_mask(image_id: str, border: bool = True) -> np.ndarray:
    """Expected mask of ``image_id``; ``border`` adds VOC's 1-pixel 255 outline per object."""
    mask = np.zeros(VOC_SIZE, dtype=np.uint8)
    for cls, (y0, y1, x0, x1) in VOC_OBJECTS[image_id]:
        if border:
            mask[y0 - 1 : y1 + 1, x0 - 1 : x1 + 1] = 255
        mask[y0:y1, x0:x1] = cls
    return mask


def _write_jpeg(path: Path, mask: np.ndarray) -> None:
    """An RGB JPEG whose colours follow ``mask`` (so images look like their masks)."""
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, size=(256, 3), dtype=np.uint8)
    colours[0] = (128, 128, 128)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(colours[mask]).save(path, format="JPEG", quality=90)


def write_palette_png(path: Path, mask: np.ndarray) -> None:
    """Write ``mask`` as a VOC palette (mode P) PNG."""
    im = Image.fromarray(mask.astype(np.uint8), mode="P")
    im.putpalette(voc_palette())
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format="PNG")


def write_grey_png(path: Path, mask: np.ndarray) -> None:
    """Write ``mask`` as a greyscale (mode L) PNG, like SBD's SegmentationClassAug."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8), mode="L").save(path, format="PNG")


def make_voc_fixture(tmp_path: Path) -> Path:
    """Build ``tmp_path/VOCdevkit/VOC2012`` and return it.

    ``SegmentationClass`` holds palette PNGs with 255 object outlines; ``SegmentationClassAug``
    holds greyscale PNGs without outlines (so tests can tell which one was read).  The
    ``test`` split is images only (``VOC_TEST_SIZES``), like the real test set.
    """
    root = Path(tmp_path) / "VOCdevkit" / "VOC2012"
    seg_ids = set(VOC_SPLITS["train"]) | set(VOC_SPLITS["val"])
    for image_id in VOC_OBJECTS:
        _write_jpeg(root / "JPEGImages" / f"{image_id}.jpg", voc_fixture_mask(image_id, False))
        if image_id in seg_ids:
            write_palette_png(
                root / "SegmentationClass" / f"{image_id}.png", voc_fixture_mask(image_id)
            )
        if image_id in VOC_SPLITS["train_aug"]:
            write_grey_png(
                root / "SegmentationClassAug" / f"{image_id}.png",
                voc_fixture_mask(image_id, border=False),
            )
    for image_id, (h, w) in VOC_TEST_SIZES.items():
        scene = np.zeros((h, w), dtype=np.uint8)
        scene[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 12
        _write_jpeg(root / "JPEGImages" / f"{image_id}.jpg", scene)
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    for split, ids in {**VOC_SPLITS, "test": list(VOC_TEST_SIZES)}.items():
        (lists / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


# ---------------------------------------------------------------------------------------------
# Synthetic benchmark

SYNTHETIC_CLASSES = ["background", "circle", "square"]
SYNTHETIC_SIZE = (16, 24)
SYNTHETIC_OBJECTS: dict[str, list[tuple[int, Box]]] = {
    "syn_0000": [(1, (2, 8, 2, 8))],
    "syn_0001": [(1, (1, 5, 1, 5)), (2, (8, 14, 10, 20))],
    "syn_0002": [(2, (4, 12, 4, 12))],
}
SYNTHETIC_SPLITS = {"train_aug": ["syn_0000", "syn_0001"], "train": ["syn_0000", "syn_0001"],
                    "val": ["syn_0002"]}


def make_synthetic_fixture(tmp_path: Path) -> Path:
    """Build a tiny synthetic benchmark directory at ``tmp_path/synthetic`` and return it."""
    root = Path(tmp_path) / "synthetic"
    cls_labels: dict[str, list[int]] = {}
    for image_id, objects in SYNTHETIC_OBJECTS.items():
        mask = np.zeros(SYNTHETIC_SIZE, dtype=np.uint8)
        for cls, (y0, y1, x0, x1) in objects:
            mask[y0:y1, x0:x1] = cls
        _write_jpeg(root / "JPEGImages" / f"{image_id}.jpg", mask)
        write_palette_png(root / "SegmentationClass" / f"{image_id}.png", mask)
        cls_labels[image_id] = sorted({cls for cls, _ in objects})
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    for split, ids in SYNTHETIC_SPLITS.items():
        (lists / f"{split}.txt").write_text("\n".join(ids) + "\n")
    (root / "meta.json").write_text(json.dumps({"class_names": SYNTHETIC_CLASSES}))
    (root / "cls_labels.json").write_text(json.dumps(cls_labels))
    return root


# ---------------------------------------------------------------------------------------------
# MS COCO 2014

# Category ids are non-contiguous and listed unsorted: sorted ids 1, 3, 18 → indices 1, 2, 3.
COCO_CATEGORIES = [
    {"id": 18, "name": "dog", "supercategory": "animal"},
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
]
COCO_SIZES = {9: (30, 40), 25: (30, 40), 30: (30, 40), 42: (24, 32)}  # (height, width)


def _box_mask(shape: tuple[int, int], box: Box) -> np.ndarray:
    y0, y1, x0, x1 = box
    mask = np.zeros(shape, dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def _polygon(box: Box) -> list[float]:
    """A rectangle polygon; pycocotools rasterises it to exactly the half-open box."""
    y0, y1, x0, x1 = box
    return [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]


def _compressed_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's list-of-counts RLE (column-major, starting with a run of zeros)."""
    flat = mask.flatten(order="F")
    counts: list[int] = []
    value, run = 0, 0
    for v in flat:
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def _annotation(ann_id: int, img_id: int, cat: int, box: Box, kind: str, crowd: int = 0) -> dict:
    mask = _box_mask(COCO_SIZES[img_id], box)
    y0, y1, x0, x1 = box
    segmentation: object
    if kind == "polygon":
        segmentation = [_polygon(box)]
    elif kind == "rle":
        segmentation = _compressed_rle(mask)
    else:
        segmentation = _uncompressed_rle(mask)
    return {
        "id": ann_id, "image_id": img_id, "category_id": cat, "iscrowd": crowd,
        "segmentation": segmentation, "area": float(mask.sum()),
        "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
    }


def make_coco_fixture(tmp_path: Path) -> Path:
    """Build ``tmp_path/coco`` (train2014/, val2014/, annotations/) and return it.

    train: 9 = small dog (listed first) over a large person (polygons); 25 = car (compressed
    RLE), a crowd of people (uncompressed RLE, iscrowd=1) and a person inside the crowd;
    30 = no annotation (left out of the split). val: 42 = a car made of two polygons.
    """
    root = Path(tmp_path) / "coco"
    train_anns = [
        _annotation(101, 9, 18, (10, 16, 10, 16), "polygon"),
        _annotation(102, 9, 1, (5, 25, 5, 25), "polygon"),
        _annotation(103, 25, 3, (2, 12, 20, 35), "rle"),
        _annotation(104, 25, 1, (15, 28, 2, 30), "counts", crowd=1),
        _annotation(105, 25, 1, (18, 24, 5, 10), "polygon"),
    ]
    car = _annotation(201, 42, 3, (2, 8, 2, 8), "polygon")
    car["segmentation"].append(_polygon((10, 20, 20, 30)))
    splits = {"train": ([9, 25, 30], train_anns), "val": ([42], [car])}
    for split, (img_ids, anns) in splits.items():
        images = []
        for img_id in img_ids:
            name = f"COCO_{split}2014_{img_id:012d}.jpg"
            h, w = COCO_SIZES[img_id]
            images.append({"id": img_id, "file_name": name, "height": h, "width": w})
            painted = np.zeros((h, w), dtype=np.uint8)
            for ann in anns:
                if ann["image_id"] == img_id:
                    x, y, bw, bh = (int(v) for v in ann["bbox"])
                    painted[y : y + bh, x : x + bw] = ann["category_id"]
            _write_jpeg(root / f"{split}2014" / name, painted)
        doc = {"images": images, "annotations": anns, "categories": COCO_CATEGORIES}
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{split}2014.json").write_text(json.dumps(doc))
    return root
