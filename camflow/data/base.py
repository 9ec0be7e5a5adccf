"""The dataset seam: every dataset camflow reads implements :class:`SegmentationDataset`.

Conventions shared by all datasets:

* class index 0 is background, 1..K are the foreground classes, 255 is "ignore";
* image-level labels are tuples of foreground class indices (1..K) present in the image;
* images are ``uint8`` H×W×3 RGB arrays, masks ``uint8`` H×W arrays of class indices.
"""

from __future__ import annotations

import abc
import logging
from pathlib import Path

import numpy as np

from camflow.io import CamflowInputError, some_ids, stat_fingerprint
from camflow.registry import Registry

log = logging.getLogger(__name__)

IGNORE_INDEX = 255

DATASETS: Registry[type[SegmentationDataset]] = Registry("dataset", ("camflow.data",))


def register_dataset(name: str):
    """Class decorator: register a :class:`SegmentationDataset` under ``name`` (the key of
    its ``datasets.<name>`` config entry)."""
    return DATASETS.register(name)


class SegmentationDataset(abc.ABC):
    """A dataset of images with image-level labels and (for evaluation) pixel masks."""

    name: str = "dataset"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._with_foreground: dict[str, list[str]] = {}

    @property
    @abc.abstractmethod
    def class_names(self) -> tuple[str, ...]:
        """Class names, index 0 being background."""

    @property
    def num_classes(self) -> int:
        """Number of foreground classes K."""
        return len(self.class_names) - 1

    @abc.abstractmethod
    def splits(self) -> tuple[str, ...]:
        """Names of the splits this dataset knows."""

    @abc.abstractmethod
    def _split_ids(self, split: str) -> list[str]:
        """Image ids listed for ``split`` (already validated)."""

    @abc.abstractmethod
    def load_image(self, image_id: str) -> np.ndarray:
        """RGB ``uint8`` H×W×3 image; a missing/corrupt file raises an error naming it."""

    @abc.abstractmethod
    def load_mask(self, image_id: str, split: str) -> np.ndarray:
        """Class-index mask ``uint8`` H×W for ``image_id`` as annotated for ``split``."""

    @abc.abstractmethod
    def _split_labels(self, split: str) -> dict[str, tuple[int, ...]]:
        """Image-level labels (foreground class indices) of every id in ``split``."""

    def check_split(self, split: str) -> None:
        if split not in self.splits():
            raise CamflowInputError(
                f"{self.name}: unknown split {split!r}; known splits: {', '.join(self.splits())}"
            )

    def ids(self, split: str) -> list[str]:
        """Image ids of ``split`` that have at least one foreground class.

        One policy for every dataset (``docs/fidelity.md``, Datasets): an image without a
        foreground class is left out of the split — training, CAMs and evaluation — with a
        logged warning naming how many and the first ids.  It gives a classifier nothing to
        learn and a CAM nothing to localise, and the published COCO lists (82,081 train /
        40,137 val images) leave such images out the same way."""
        self.check_split(split)
        if split not in self._with_foreground:
            labels = self.image_labels(split)
            listed = self._split_ids(split)
            kept = [i for i in listed if labels.get(i)]
            if len(kept) < len(listed):
                empty = [i for i in listed if not labels.get(i)]
                log.warning("%s/%s: leaving out %d image(s) with no foreground class: %s",
                            self.name, split, len(empty), some_ids(empty))
            self._with_foreground[split] = kept
        return self._with_foreground[split]

    @abc.abstractmethod
    def source_files(self, split: str) -> list[Path]:
        """The files ``split``'s ids, labels and masks are read from (absolute paths)."""

    def fingerprint(self, split: str) -> str:
        """:func:`~camflow.io.stat_fingerprint` of :meth:`source_files`: it changes when any
        of them is edited, replaced, added, removed or read from another root."""
        return stat_fingerprint(self.source_files(split))

    def validate_split(self, split: str) -> dict[str, object]:
        """Check every image of ``split`` cheaply before any training: the split list is not
        empty, and each listed image's mask exists and is valid for its image (read from the
        image header).  Every problem is collected, so one error names all the bad files.
        Returns a report: how many images are listed, kept and left out (:meth:`ids`)."""
        listed = self._split_ids(split)
        problems = []
        for image_id in listed:
            try:
                self.load_mask(image_id, split)
            except CamflowInputError as exc:
                problems.append(str(exc))
        if problems:
            shown = "\n  ".join(problems[:20])
            more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise CamflowInputError(f"{self.name}/{split}: {len(problems)} of {len(listed)} "
                                    f"image(s) cannot be used:\n  {shown}{more}")
        kept = self.ids(split)
        return {"dataset": self.name, "split": split, "listed": len(listed), "kept": len(kept),
                "left_out": sorted(set(listed) - set(kept))}

    def image_labels(self, split: str) -> dict[str, tuple[int, ...]]:
        """Image id → sorted tuple of foreground class indices (1..K) present."""
        self.check_split(split)
        return self._split_labels(split)

    def multi_hot(self, labels: tuple[int, ...]) -> np.ndarray:
        """K-dimensional float32 target for foreground labels ``labels`` (1..K)."""
        target = np.zeros(self.num_classes, dtype=np.float32)
        for c in labels:
            target[c - 1] = 1.0
        return target

    def validate_mask(self, mask: np.ndarray, image_id: str, image_shape: tuple[int, ...],
                      path: Path) -> np.ndarray:
        """Check a mask against its image and the class list; errors name id and file."""
        if mask.shape != tuple(image_shape[:2]):
            raise CamflowInputError(
                f"{self.name}: mask of {image_id!r} ({path}) has size {mask.shape[1]}x"
                f"{mask.shape[0]} but its image is {image_shape[1]}x{image_shape[0]}"
            )
        values = np.unique(mask)
        bad = values[(values > self.num_classes) & (values != IGNORE_INDEX)]
        if bad.size:
            raise CamflowInputError(
                f"{self.name}: mask of {image_id!r} ({path}) has label(s) "
                f"{bad.tolist()} outside the class list (0..{self.num_classes}, 255 = ignore)"
            )
        return mask


def labels_from_mask(mask: np.ndarray, num_classes: int) -> tuple[int, ...]:
    """Foreground classes present in a mask (ignoring background and 255)."""
    values = np.unique(mask)
    return tuple(int(v) for v in values if 1 <= v <= num_classes)
