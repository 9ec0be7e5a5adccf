"""Datasets: PASCAL VOC 2012, MS COCO 2014 and the embedded synthetic benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from camflow.data.base import IGNORE_INDEX, SegmentationDataset, labels_from_mask
from camflow.io import CamflowInputError

DATASETS = ("voc12", "coco14", "synthetic")


def build_dataset(name: str, root: str | Path, **options: Any) -> SegmentationDataset:
    """Construct dataset ``name`` (``voc12``, ``coco14`` or ``synthetic``) rooted at ``root``."""
    if name == "voc12":
        from camflow.data.voc import VOC12Dataset

        return VOC12Dataset(root, **options)
    if name == "coco14":
        from camflow.data.coco import COCO14Dataset

        return COCO14Dataset(root, **options)
    if name == "synthetic":
        from camflow.data.voc import SyntheticDataset

        return SyntheticDataset(root, **options)
    raise CamflowInputError(f"unknown dataset {name!r} (config key 'dataset'); known: {DATASETS}")


__all__ = [
    "DATASETS",
    "IGNORE_INDEX",
    "SegmentationDataset",
    "build_dataset",
    "labels_from_mask",
]
