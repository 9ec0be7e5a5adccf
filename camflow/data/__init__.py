"""Datasets: PASCAL VOC 2012, MS COCO 2014 and the embedded synthetic benchmark.

A dataset is a :class:`SegmentationDataset` subclass registered with
:func:`camflow.data.base.register_dataset` under the name of its ``datasets.<name>`` entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from camflow.data.base import (
    DATASETS,
    IGNORE_INDEX,
    SegmentationDataset,
    labels_from_mask,
    register_dataset,
)


def build_dataset(name: str, root: str | Path, **options: Any) -> SegmentationDataset:
    """Construct the registered dataset ``name`` rooted at ``root``."""
    return DATASETS.get(name, f"datasets.{name}")(root, **options)


__all__ = [
    "DATASETS",
    "IGNORE_INDEX",
    "SegmentationDataset",
    "build_dataset",
    "labels_from_mask",
    "register_dataset",
]
