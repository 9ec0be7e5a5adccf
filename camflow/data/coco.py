"""MS COCO 2014 for WSSS, read from the layout of the official download.

Layout, relative to ``root`` (from https://cocodataset.org/#download: "2014 Train images",
"2014 Val images" and "2014 Train/Val annotations", i.e. ``annotations_trainval2014.zip``)::

    train2014/COCO_train2014_%012d.jpg
    val2014/COCO_val2014_%012d.jpg
    annotations/instances_train2014.json
    annotations/instances_val2014.json

Choices:

* Classes are the annotation file's categories in increasing category-id order, mapped to
  indices 1..K (K = 80 for COCO, whose ids run 1..90 with gaps); index 0 is "background".
* Image ids are the file stems, e.g. ``COCO_train2014_000000000009``.
* Images without any annotation of a category have no image-level label: :meth:`ids` leaves
  them out with a logged warning, as for every dataset.
* Image-level labels are the categories of all annotations of the image, crowd ones included
  (a crowd region does contain its class).
* Masks are rendered with pycocotools ``annToMask`` at the annotated height/width: crowd
  annotations (``iscrowd=1``) are painted first as 255 (ignore), then the other objects in
  decreasing pixel area (ties by annotation id), so a smaller object overlapping a larger one
  stays visible and an object annotated individually inside a crowd region keeps its class.
* pycocotools is imported on first use; annotation files are loaded lazily per split.
* With ``cache_dir``, labels are cached as ``{cache_dir}/coco14_{split}_labels.json`` and the
  categories as ``{cache_dir}/coco14_categories.json``, so ids, labels and class names need not
  parse the (large) annotation files again.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from camflow.data.base import IGNORE_INDEX, SegmentationDataset, register_dataset
from camflow.data.voc import (
    Labels,
    image_size,
    read_labels_cache,
    write_labels_cache,
)
from camflow.io import CamflowInputError, read_image, stat_fingerprint, write_json

log = logging.getLogger(__name__)

SPLIT_DIRS: dict[str, str] = {"train": "train2014", "val": "val2014"}
_ID_RE = re.compile(r"COCO_(train2014|val2014)_(\d{12})")
_DOWNLOAD_HINT = (
    "COCO 2014 comes from https://cocodataset.org/#download: the 2014 Train and Val images "
    "(train2014.zip, val2014.zip) and annotations_trainval2014.zip, unpacked under {root}"
)


@register_dataset("coco14")
class COCO14Dataset(SegmentationDataset):
    """MS COCO 2014 instance annotations turned into semantic masks (splits ``train``, ``val``)."""

    def __init__(self, root: str | Path, cache_dir: str | Path | None = None) -> None:
        super().__init__(root)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._apis: dict[str, Any] = {}
        self._categories: list[dict[str, Any]] | None = None
        self._ids: dict[str, list[str]] = {}
        self._labels: dict[str, Labels] = {}
        if not self.root.is_dir():
            raise CamflowInputError(
                f"coco14: dataset root {self.root} does not exist; "
                + _DOWNLOAD_HINT.format(root=self.root)
            )

    # -- paths -------------------------------------------------------------------------------

    def annotation_path(self, split: str) -> Path:
        return self.root / "annotations" / f"instances_{SPLIT_DIRS[split]}.json"

    def image_path(self, image_id: str) -> Path:
        match = _ID_RE.fullmatch(image_id)
        if match is None:
            raise CamflowInputError(
                f"coco14: {image_id!r} is not a COCO 2014 image id "
                "(expected COCO_train2014_%012d or COCO_val2014_%012d)"
            )
        return self.root / match.group(1) / f"{image_id}.jpg"

    def _cache_path(self, stem: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / f"{self.name}_{stem}.json"

    # -- categories --------------------------------------------------------------------------

    @property
    def class_names(self) -> tuple[str, ...]:
        return ("background", *(str(c["name"]) for c in self._cats()))

    def _cats(self) -> list[dict[str, Any]]:
        """Categories sorted by id: from the cache, a loaded split, or the first split on disk."""
        if self._categories is None:
            cache = self._cache_path("categories")
            if cache is not None and cache.is_file():
                with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                    raw = json.loads(cache.read_text())
                    current = self._annotation_fingerprint(SPLIT_DIRS)
                    if current is None or raw["fingerprint"] == current:
                        self._categories = [{"id": int(c["id"]), "name": str(c["name"])}
                                            for c in raw["categories"]]
            if self._categories is None:
                on_disk = [s for s in SPLIT_DIRS if self.annotation_path(s).is_file()]
                self._api(on_disk[0] if on_disk else "train")
        assert self._categories is not None
        return self._categories

    def _cat_index(self) -> dict[int, int]:
        """COCO category id → class index 1..K."""
        return {c["id"]: i for i, c in enumerate(self._cats(), 1)}

    def _set_categories(self, raw: Any, path: Path) -> None:
        try:
            cats = sorted(({"id": int(c["id"]), "name": str(c["name"])} for c in raw),
                          key=lambda c: c["id"])
        except (TypeError, KeyError, ValueError) as exc:
            raise CamflowInputError(f"coco14: malformed 'categories' in {path}: {exc}") from exc
        if not cats:
            raise CamflowInputError(f"coco14: {path} has no 'categories'")
        if self._categories is not None and cats != self._categories:
            raise CamflowInputError(
                f"coco14: the categories of {path} differ from those already loaded"
            )
        if self._categories is None:
            self._categories = cats
            cache = self._cache_path("categories")
            if cache is not None:
                write_json(cache, {"fingerprint": self._annotation_fingerprint(SPLIT_DIRS),
                                   "categories": cats})

    # -- annotation files --------------------------------------------------------------------

    def _api(self, split: str) -> Any:
        """The pycocotools ``COCO`` index of ``split``, loaded on first use."""
        if split not in self._apis:
            path = self.annotation_path(split)
            image_dir = self.root / SPLIT_DIRS[split]
            for needed in (path, image_dir):
                if not needed.exists():
                    raise CamflowInputError(
                        f"coco14: {needed} does not exist; " + _DOWNLOAD_HINT.format(root=self.root)
                    )
            from pycocotools.coco import COCO

            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    api = COCO(str(path))
            except (OSError, ValueError, TypeError, KeyError, AssertionError) as exc:
                raise CamflowInputError(
                    f"coco14: {path} is not a valid COCO instances file: {exc}"
                ) from exc
            self._set_categories(api.dataset.get("categories", []), path)
            self._apis[split] = api
        return self._apis[split]

    # -- the seam ----------------------------------------------------------------------------

    def splits(self) -> tuple[str, ...]:
        return tuple(SPLIT_DIRS)

    def _split_ids(self, split: str) -> list[str]:
        if split not in self._ids:
            self._ids[split] = list(self._split_labels(split))
        return self._ids[split]

    def source_files(self, split: str) -> list[Path]:
        """The annotation file and the image folder of ``split`` (a folder's modification time
        changes when an image is added or removed): reading the ids would parse the JSON."""
        return [self.annotation_path(split).resolve(), (self.root / SPLIT_DIRS[split]).resolve()]

    def _annotation_fingerprint(self, splits: Iterable[str]) -> str | None:
        """:func:`stat_fingerprint` of the annotation files of ``splits`` that are on disk;
        None when none is (the caches are then trusted as they are)."""
        paths = [self.annotation_path(s).resolve() for s in splits]
        return stat_fingerprint(paths) if any(p.is_file() for p in paths) else None

    def _split_labels(self, split: str) -> Labels:
        if split not in self._labels:
            cache = self._cache_path(f"{split}_labels")
            labels = fingerprint = None
            if cache is not None:
                fingerprint = self._annotation_fingerprint([split])
                labels = read_labels_cache(cache, None, self.num_classes, fingerprint)
            if labels is None:
                labels = self._labels_from_annotations(split)
                if cache is not None:
                    write_labels_cache(cache, labels, fingerprint)
            self._labels[split] = {i: labels[i] for i in sorted(labels)}
        return self._labels[split]

    def _labels_from_annotations(self, split: str) -> Labels:
        """Labels of every image of the annotation file (``()`` for one without annotations,
        which :meth:`ids` leaves out with a warning, as for every dataset)."""
        api = self._api(split)
        index = self._cat_index()
        return {Path(info["file_name"]).stem: tuple(sorted(
                    {self._class_of(a, index, split) for a in api.imgToAnns.get(img_id, [])}))
                for img_id, info in api.imgs.items()}

    def _class_of(self, ann: dict[str, Any], index: dict[int, int], split: str) -> int:
        try:
            return index[ann["category_id"]]
        except KeyError as exc:
            raise CamflowInputError(
                f"coco14: annotation {ann.get('id')!r} in {self.annotation_path(split)} has "
                f"category_id {ann.get('category_id')!r}, which is not in its 'categories'"
            ) from exc

    def load_image(self, image_id: str) -> np.ndarray:
        return read_image(self.image_path(image_id), image_id)

    def load_mask(self, image_id: str, split: str) -> np.ndarray:
        """Semantic mask of ``image_id`` rendered from ``split``'s annotations (see module doc)."""
        self.check_split(split)
        api = self._api(split)
        path = self.annotation_path(split)
        match = _ID_RE.fullmatch(image_id)
        img_id = int(match.group(2)) if match else None
        if img_id not in api.imgs:
            raise CamflowInputError(f"coco14: image {image_id!r} is not in {path}")
        info = api.imgs[img_id]
        index = self._cat_index()
        mask = np.zeros((int(info["height"]), int(info["width"])), dtype=np.uint8)
        objects: list[tuple[int, int, np.ndarray, int]] = []
        for ann in api.imgToAnns.get(img_id, []):
            cls = self._class_of(ann, index, split)
            try:
                region = api.annToMask(ann).astype(bool)
            except (TypeError, ValueError, KeyError, IndexError) as exc:
                raise CamflowInputError(
                    f"coco14: cannot render annotation {ann.get('id')!r} of {image_id!r} "
                    f"in {path}: {exc}"
                ) from exc
            if ann.get("iscrowd", 0):
                mask[region] = IGNORE_INDEX
            else:
                objects.append((int(region.sum()), int(ann.get("id", 0)), region, cls))
        for _, _, region, cls in sorted(objects, key=lambda o: (-o[0], o[1])):
            mask[region] = cls
        shape = image_size(self.image_path(image_id), image_id)
        return self.validate_mask(mask, image_id, shape, path)
