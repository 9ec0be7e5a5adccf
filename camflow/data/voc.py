"""VOC-layout datasets: PASCAL VOC 2012 (with SBD ``train_aug``) and the synthetic benchmark.

Layout read, relative to ``root``::

    JPEGImages/{id}.jpg
    ImageSets/Segmentation/{split}.txt     one image id per line
    {mask_dir}/{id}.png                    palette (P) or greyscale (L) class indices, 255 = ignore

Each split names its own mask directory (VOC 2012: ``SegmentationClass`` for ``train``/``val``,
``SegmentationClassAug`` for ``train_aug``), or none for a split of images only (VOC 2012
``test``, scored by the evaluation server: it can be predicted, not trained on or evaluated).
Image-level labels are derived from the masks and, when ``cache_dir`` is given, cached as
``{cache_dir}/{name}_{split}_labels.json`` with the :meth:`fingerprint` of the split list,
images and masks: a cache computed from other files (edited masks, another root) or for other
ids is recomputed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from camflow.data.base import SegmentationDataset, labels_from_mask, register_dataset
from camflow.io import (
    CamflowInputError,
    read_image,
    read_label_png,
    write_json,
)

log = logging.getLogger(__name__)

Labels = dict[str, tuple[int, ...]]

VOC12_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)


def image_size(path: Path, image_id: str) -> tuple[int, int]:
    """``(height, width)`` of an image read from its header only; errors name id and file."""
    if not path.is_file():
        raise CamflowInputError(f"image {image_id!r} ({path}) does not exist")
    try:
        with Image.open(path) as im:
            width, height = im.size
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise CamflowInputError(
            f"image {image_id!r} ({path}) is corrupt or unreadable: {exc}"
        ) from exc
    return height, width


def read_labels_cache(path: Path, ids: Sequence[str] | None, num_classes: int,
                      fingerprint: str | None) -> Labels | None:
    """Labels cached at ``path``, or ``None`` when absent, unreadable or stale.

    The cache is stale when it was computed from other annotation files (its ``fingerprint``
    differs from ``fingerprint``: :func:`stat_fingerprint` of the files the labels come
    from; ``None`` trusts the cache, for annotation files that are not on disk), its ids
    differ from ``ids`` (if given) or a label is outside 1..K.
    """
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        stored = raw.get("fingerprint")
        labels = {str(k): tuple(sorted({int(c) for c in v})) for k, v in raw["labels"].items()}
    except (OSError, ValueError, TypeError, AttributeError, KeyError) as exc:
        log.warning("ignoring unreadable labels cache %s (%s); recomputing", path, exc)
        return None
    if fingerprint is not None and stored != fingerprint:
        log.warning("labels cache %s was computed from other annotation files (changed, "
                    "moved or another root); recomputing", path)
        return None
    if ids is not None and set(labels) != set(ids):
        log.warning("labels cache %s does not match the split list; recomputing", path)
        return None
    if any(not 1 <= c <= num_classes for v in labels.values() for c in v):
        log.warning("labels cache %s has labels outside 1..%d; recomputing", path, num_classes)
        return None
    return labels


def write_labels_cache(path: Path, labels: Labels, fingerprint: str | None) -> None:
    """Write ``labels`` (id → classes) with the ``fingerprint`` of their sources, atomically."""
    write_json(path, {"fingerprint": fingerprint,
                      "labels": {k: list(v) for k, v in labels.items()}})


class VOCLayoutDataset(SegmentationDataset):
    """A dataset in the VOC directory layout; ``mask_dirs`` maps each split to its mask dir
    (None: the split has images only)."""

    name = "voc_layout"

    def __init__(
        self,
        root: str | Path,
        class_names: Sequence[str],
        mask_dirs: Mapping[str, str | None],
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__(root)
        if len(class_names) < 2:
            raise CamflowInputError(
                f"{self.name}: need background plus at least one class, got {list(class_names)}"
            )
        self._class_names = tuple(str(c) for c in class_names)
        self.mask_dirs = dict(mask_dirs)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._ids: dict[str, list[str]] = {}
        self._labels: dict[str, Labels] = {}
        self._check_layout()

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._class_names

    def splits(self) -> tuple[str, ...]:
        return tuple(self.mask_dirs)

    # -- paths -------------------------------------------------------------------------------

    def image_path(self, image_id: str) -> Path:
        return self.root / "JPEGImages" / f"{image_id}.jpg"

    def annotated(self, split: str) -> bool:
        """Whether ``split`` has masks (VOC 2012 ``test`` has images only)."""
        return self.mask_dirs[split] is not None

    def mask_dir(self, split: str) -> Path:
        """The mask directory of ``split``; a split of images only has none."""
        folder = self.mask_dirs[split]
        if folder is None:
            raise CamflowInputError(
                f"{self.name}: split {split!r} has no masks (images only, like the VOC 2012 "
                "test set that the evaluation server scores): it can be predicted, not "
                "trained on or evaluated")
        return self.root / folder

    def mask_path(self, image_id: str, split: str) -> Path:
        return self.mask_dir(split) / f"{image_id}.png"

    def split_file(self, split: str) -> Path:
        return self.root / "ImageSets" / "Segmentation" / f"{split}.txt"

    def source_files(self, split: str) -> list[Path]:
        """The split list, and every listed image and mask (absolute paths)."""
        root = self.root.resolve()
        ids = self._split_ids(split)
        files = [root / self.split_file(split).relative_to(self.root),
                 *(root / "JPEGImages" / f"{i}.jpg" for i in ids)]
        if self.annotated(split):
            masks = root / self.mask_dir(split).relative_to(self.root)
            files += [masks / f"{i}.png" for i in ids]
        return files

    def labels_cache_path(self, split: str) -> Path | None:
        """Where labels of ``split`` are cached, or ``None`` for an in-memory cache only."""
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"{self.name}_{split}_labels.json"

    # -- checks and hints --------------------------------------------------------------------

    def _root_hint(self) -> str:
        """Advice appended when the root or ``JPEGImages`` is missing."""
        return ""

    def _missing_hint(self, split: str) -> str:
        """Advice appended when the split list or mask directory of ``split`` is missing."""
        return ""

    def _check_layout(self) -> None:
        if not self.root.is_dir():
            raise CamflowInputError(
                f"{self.name}: dataset root {self.root} does not exist{self._root_hint()}"
            )
        jpeg = self.root / "JPEGImages"
        if not jpeg.is_dir():
            raise CamflowInputError(
                f"{self.name}: image directory {jpeg} does not exist{self._root_hint()}"
            )

    def _check_split_files(self, split: str) -> None:
        files = [(self.split_file(split), "split list")]
        if self.annotated(split):
            files.append((self.mask_dir(split), "mask directory"))
        for path, what in files:
            if not path.exists():
                raise CamflowInputError(
                    f"{self.name}: {what} of split {split!r} ({path}) does not exist"
                    f"{self._missing_hint(split)}"
                )

    # -- the seam ----------------------------------------------------------------------------

    def ids(self, split: str) -> list[str]:
        """:meth:`SegmentationDataset.ids`; a split of images only keeps every listed id (it
        has no labels to leave an image out by)."""
        self.check_split(split)
        return super().ids(split) if self.annotated(split) else self._split_ids(split)

    def _split_ids(self, split: str) -> list[str]:
        if split not in self._ids:
            self._check_split_files(split)
            self._ids[split] = self._read_split_list(split)
        return self._ids[split]

    def _read_split_list(self, split: str) -> list[str]:
        """Ids of ``split``'s list; each must be unique and have its image."""
        path = self.split_file(split)
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise CamflowInputError(f"{self.name}: cannot read split list {path}: {exc}") from exc
        ids: list[str] = []
        seen: set[str] = set()
        for lineno, line in enumerate(lines, 1):
            fields = line.split()
            if not fields:
                continue
            image_id = fields[0]
            # Tolerate the "/JPEGImages/{id}.jpg /SegmentationClassAug/{id}.png" list format.
            if "/" in image_id or image_id.endswith(".jpg"):
                image_id = Path(image_id).stem
            if image_id in seen:
                raise CamflowInputError(
                    f"{self.name}: image {image_id!r} is listed twice in {path} (line {lineno})"
                )
            image = self.image_path(image_id)
            if not image.is_file():
                raise CamflowInputError(
                    f"{self.name}: image {image_id!r} listed in {path} (line {lineno}) "
                    f"does not exist: {image}"
                )
            seen.add(image_id)
            ids.append(image_id)
        if not ids:
            raise CamflowInputError(f"{self.name}: split list {path} lists no image")
        return ids

    def load_image(self, image_id: str) -> np.ndarray:
        return read_image(self.image_path(image_id), image_id)

    def load_mask(self, image_id: str, split: str) -> np.ndarray:
        """Mask of ``image_id`` in ``split``, checked against its image size and the classes."""
        self.check_split(split)
        path = self.mask_path(image_id, split)
        if not path.is_file():
            self._check_split_files(split)
        mask = read_label_png(path, image_id)
        shape = image_size(self.image_path(image_id), image_id)
        return self.validate_mask(mask, image_id, shape, path)

    def _split_labels(self, split: str) -> Labels:
        if split not in self._labels:
            ids = self._split_ids(split)
            cache = self.labels_cache_path(split)
            labels = fingerprint = None
            if cache is not None:
                fingerprint = self.fingerprint(split)
                labels = read_labels_cache(cache, ids, self.num_classes, fingerprint)
            if labels is None:
                labels = self._compute_labels(split, ids)
                if cache is not None:
                    write_labels_cache(cache, labels, fingerprint)
            self._labels[split] = {i: labels[i] for i in ids}
        return self._labels[split]

    def _compute_labels(self, split: str, ids: list[str]) -> Labels:
        """Image-level labels of ``ids``, derived from their (validated) masks."""
        return {i: labels_from_mask(self.load_mask(i, split), self.num_classes) for i in ids}


@register_dataset("voc12")
class VOC12Dataset(VOCLayoutDataset):
    """PASCAL VOC 2012; ``root`` is the ``VOCdevkit/VOC2012`` directory.

    Splits ``train`` and ``val`` use ``SegmentationClass/`` (from the VOC tarball); ``train_aug``
    uses ``SegmentationClassAug/`` and ``ImageSets/Segmentation/train_aug.txt`` (from SBD);
    ``test`` is images only (``JPEGImages/`` and ``ImageSets/Segmentation/test.txt`` from the
    test tarball): predicted for the evaluation server.
    """

    MASK_DIRS: dict[str, str | None] = {
        "train": "SegmentationClass",
        "val": "SegmentationClass",
        "train_aug": "SegmentationClassAug",
        "test": None,
    }

    def __init__(self, root: str | Path, cache_dir: str | Path | None = None) -> None:
        super().__init__(root, VOC12_CLASSES, self.MASK_DIRS, cache_dir)

    def _root_hint(self) -> str:
        for candidate in (self.root / "VOC2012", self.root / "VOCdevkit" / "VOC2012"):
            if (candidate / "JPEGImages").is_dir():
                return f" (did you mean {candidate}? the root must be the VOC2012 directory)"
        return (
            " (the root must be the VOCdevkit/VOC2012 directory unpacked from "
            "VOCtrainval_11-May-2012.tar)"
        )

    def _missing_hint(self, split: str) -> str:
        if not self.annotated(split):
            return (" (it is part of the VOC 2012 test tarball, VOC2012test.tar, from the "
                    "evaluation server; it unpacks into the same VOCdevkit/VOC2012)")
        if self.mask_dirs[split] != "SegmentationClassAug":
            return " (it is part of VOCtrainval_11-May-2012.tar)"
        return (
            ". SegmentationClassAug/ and ImageSets/Segmentation/train_aug.txt are not in the "
            "VOC tarball: they come from the SBD augmentation (Hariharan et al. 2011, "
            "'Semantic contours from inverse detectors'), commonly distributed as "
            "SegmentationClassAug.zip. Place the masks at exactly "
            f"{self.root / 'SegmentationClassAug'}/{{id}}.png and the id list at exactly "
            f"{self.split_file(split)}"
        )


@register_dataset("synthetic")
class SyntheticDataset(VOCLayoutDataset):
    """The generated synthetic benchmark (VOC layout + ``meta.json`` + ``cls_labels.json``).

    Labels are read from ``cls_labels.json`` (id → foreground class indices), not the masks; that
    file already is a cache, so ``cache_dir`` is accepted for a uniform signature but not used
    (a copy would go stale when the benchmark is regenerated).
    """

    def __init__(self, root: str | Path, cache_dir: str | Path | None = None) -> None:
        meta = Path(root) / "meta.json"
        super().__init__(
            root,
            _read_class_names(meta),
            {"train_aug": "SegmentationClass", "train": "SegmentationClass",
             "val": "SegmentationClass"},
            cache_dir,
        )
        self._cls_labels: dict[str, object] | None = None

    def labels_cache_path(self, split: str) -> Path | None:
        return None

    def _compute_labels(self, split: str, ids: list[str]) -> Labels:
        path = self.root / "cls_labels.json"
        if self._cls_labels is None:
            raw = _read_json(path, what="image-level labels")
            if not isinstance(raw, dict):
                raise CamflowInputError(f"synthetic: {path} must map image id → class list")
            self._cls_labels = raw
        labels: Labels = {}
        for image_id in ids:
            if image_id not in self._cls_labels:
                raise CamflowInputError(f"synthetic: image {image_id!r} has no entry in {path}")
            value = self._cls_labels[image_id]
            if not isinstance(value, list) or not all(
                type(c) is int and 1 <= c <= self.num_classes for c in value
            ):
                raise CamflowInputError(
                    f"synthetic: labels of {image_id!r} in {path} must be a list of class "
                    f"indices in 1..{self.num_classes}, got {value!r}"
                )
            labels[image_id] = tuple(sorted(set(value)))
        return labels


def _read_json(path: Path, what: str) -> object:
    """Parse a JSON file of the synthetic benchmark; a missing one says how to generate it."""
    if not path.is_file():
        raise CamflowInputError(
            f"synthetic: {what} file {path} does not exist; generate the benchmark with the "
            "`synthetic` rule (`snakemake data/synthetic/meta.json`, or `make demo`)"
        )
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CamflowInputError(f"synthetic: cannot parse {path}: {exc}") from exc


def _read_class_names(meta: Path) -> list[str]:
    """``class_names`` of ``meta.json`` (background first)."""
    raw = _read_json(meta, what="metadata")
    names = raw.get("class_names") if isinstance(raw, dict) else None
    if not (
        isinstance(names, list) and len(names) >= 2 and all(isinstance(n, str) for n in names)
    ):
        raise CamflowInputError(
            f"synthetic: key 'class_names' of {meta} must be a list of at least two names "
            f"(background first), got {names!r}"
        )
    return names
