"""Saliency maps as priors' partners: the semantic map a saliency map makes with a set of
priors, scored the way P-NOC's Table 6 scores saliency (David et al., Sec. 6.2 and 7.2).

"Concatenating the pseudo-saliency maps of an input image with its CAM" (Sec. 6.2) is, in the
authors' code (``scripts/evaluate.py`` with ``--sal_threshold``), a background channel equal
to 1 where the saliency is below the threshold and 0 elsewhere, stacked in front of the class
maps, then the argmax: background where the image is not salient, the strongest prior's
class where it is. :func:`saliency_semantic_map` is that map; :func:`gt_prior_map` is the same
with the ground truth as the priors (Table 6's "GT" rows): a pixel is right when it is salient
and annotated with a class, or not salient and annotated background.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from camflow.cache import CamCache, SaliencyCache
from camflow.data.base import IGNORE_INDEX, SegmentationDataset
from camflow.evaluate import (
    ConfusionMatrix,
    channel_lut,
    evaluation_record,
    segmentation_metrics,
)
from camflow.io import CamflowInputError, read_saliency_png, some_ids
from camflow.runtime import progress_bar


def saliency_semantic_map(saliency: np.ndarray, keys: np.ndarray, cams: np.ndarray,
                          threshold: float) -> np.ndarray:
    """uint8 H×W class map: 0 where ``saliency`` < ``threshold``, else the class (of
    ``keys``) of the strongest map of ``cams`` (n_keys×H×W), 0 where every map is 0."""
    keys = np.asarray(keys, dtype=np.int64)
    background = (saliency < threshold).astype(np.float32)[None]
    stack = np.concatenate([background, np.asarray(cams, dtype=np.float32)])
    return channel_lut(keys)[np.argmax(stack, axis=0)].astype(np.uint8)


def gt_prior_map(saliency: np.ndarray, gt: np.ndarray, threshold: float) -> np.ndarray:
    """The semantic map of ``saliency`` with the ground truth ``gt`` (H×W, 255 ignored) as
    the priors: salient pixels take their annotated class; a salient pixel annotated
    background takes the image's largest annotated class (a false positive of that class);
    pixels that are not salient are background. An image without an annotated class is all
    background."""
    salient = saliency >= threshold
    classes, counts = np.unique(gt[(gt != 0) & (gt != IGNORE_INDEX)], return_counts=True)
    out = np.zeros(gt.shape, dtype=np.uint8)
    if classes.size == 0:
        return out
    out[salient] = classes[np.argmax(counts)]
    annotated = salient & (gt != 0) & (gt != IGNORE_INDEX)
    out[annotated] = gt[annotated]
    return out


class SaliencyFolder:
    """Saliency maps from an external source: a folder of ``<image id>.png`` greyscale maps
    (0–255), as users of EPS and similar methods have them from off-the-shelf detectors.

    :meth:`check` names every image of a split without a map before any work starts;
    :meth:`read` names the file and the image when a map is unreadable or its size is not
    the image's.
    """

    def __init__(self, root: str | Path, dataset: SegmentationDataset) -> None:
        self.root = Path(root)
        self.dataset = dataset

    def path(self, image_id: str) -> Path:
        return self.root / f"{image_id}.png"

    def check(self, ids: list[str]) -> None:
        if not self.root.is_dir():
            raise CamflowInputError(f"saliency folder {self.root} does not exist")
        missing = [i for i in ids if not self.path(i).is_file()]
        if missing:
            raise CamflowInputError(f"saliency folder {self.root}: no map for {len(missing)} "
                                    f"of {len(ids)} images: {some_ids(missing)}")

    def read(self, image_id: str) -> np.ndarray:
        """float32 H×W in [0, 1], the size of the image."""
        sal = read_saliency_png(self.path(image_id), image_id)
        h, w = self.dataset.load_image(image_id).shape[:2]
        if sal.shape != (h, w):
            raise CamflowInputError(
                f"saliency map of {image_id!r} ({self.path(image_id)}) is "
                f"{sal.shape[1]}x{sal.shape[0]}, the image {w}x{h}")
        return sal


def evaluate_saliency(saliency: SaliencyCache, priors: CamCache | None,
                      dataset: SegmentationDataset, split: str, threshold: float,
                      progress: bool = True) -> dict[str, Any]:
    """Table 6's score of a saliency cache on ``split``: the mIoU of
    :func:`saliency_semantic_map` with ``priors`` (a CAM cache), or of :func:`gt_prior_map`
    with the ground truth as the priors (``priors`` None). An evaluation record of kind
    ``saliency``."""
    ids = dataset.ids(split)
    saliency.require(ids, f"{dataset.name}/{split}")
    if priors is not None:
        priors.require(ids, f"{dataset.name}/{split}")
    conf = ConfusionMatrix(dataset.num_classes + 1)
    for image_id in progress_bar(progress, iterable=ids, desc=f"saliency {split}"):
        gt = dataset.load_mask(image_id, split)
        sal = saliency.saliency(image_id)
        if sal.shape != gt.shape:
            raise CamflowInputError(
                f"{saliency.label} {saliency.path}: image {image_id!r} is "
                f"{sal.shape[1]}x{sal.shape[0]}, its mask {gt.shape[1]}x{gt.shape[0]}")
        if priors is None:
            pred = gt_prior_map(sal, gt, threshold)
        else:
            keys, cams = priors.read(image_id, "full")
            pred = saliency_semantic_map(sal, keys, cams, threshold)
        conf.update(pred, gt)
    metrics = segmentation_metrics(conf.matrix, dataset.class_names)
    provenance = {"saliency": str(saliency.path), "priors": str(priors.path) if priors
                  else "ground truth", "threshold": threshold}
    return evaluation_record("saliency", split, len(ids), metrics, provenance,
                             threshold=threshold)
