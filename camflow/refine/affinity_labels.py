"""Affinity (inter-pixel relation) labels from CAMs: confident foreground, confident
background, and the uncertain rest ignored (255).

Two published recipes (``docs/fidelity.md``, conventions: "IR labels and IRN", "PSA /
AffinityNet"); both read the full-resolution maps of any CAM cache:

* :func:`irn_labels` (Ahn et al. 2019, Sec. 3.1): seeds with background scores 0.30 and 0.05,
  each refined by IRN's label CRF; foreground where the 0.30 seed (after CRF) says
  foreground, background where both say background, 255 where they disagree.  GSLM's Coarse
  Generation (GSLM, Mai et al., Eq. 3, θ_fg 0.30, θ_bg 0.05, R = dense CRF) is the same map: its
  confidence CAM of class c is 1 where the label is c, −1 where it is 255, else 0.
* :func:`psa_labels` (Ahn & Kwak 2018, Sec. 3.2): background score (1 − max CAM)^α with
  α = 4 ("low", more background) and α = 32 ("high"); each score stack is refined by PSA's
  score CRF (:func:`psa_scores`); foreground from the low one, background from the high one,
  the rest 255 (:func:`psa_label_rule`).

The output is a label cache (:class:`camflow.cache.LabelCacheWriter`): per image its class
keys and a uint8 map of class indices 0..K with 255 = ignore.  The ``psa`` style also stores
the two CRF score stacks: PSA does not reduce the *labels* to AffinityNet's stride-8 grid but
the scores, averaged over the 8×8 blocks of each training crop before the argmax
(:func:`psa_grid_labels`), and the blocks move with the random crop, so the reduction can only
happen at training time (:class:`camflow.methods.affinitynet.PsaScoreDataset`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

from camflow.cache import CamCache, LabelCacheWriter, SaliencyCache
from camflow.data.base import IGNORE_INDEX, SegmentationDataset
from camflow.evaluate import channel_lut, seed_channels
from camflow.io import CamflowInputError
from camflow.refine.crf import crf_labels, crf_scores
from camflow.runtime import parallel_map

log = logging.getLogger(__name__)

STYLES = ("irn", "psa", "saliency")


def irn_labels(image: np.ndarray, keys: np.ndarray, cams: np.ndarray, fg_threshold: float = 0.30,
               bg_threshold: float = 0.05,
               crf: dict[str, float] | None | bool = None) -> np.ndarray:
    """IRN's IR labels (conventions "IR labels and IRN"): uint8 H×W, 0..K and 255.

    ``cams`` are the image's max-normalised class maps (n_keys×H×W) of classes ``keys``.
    ``crf``: overrides of the label CRF's defaults, or ``False`` for the seeds unrefined (the
    ablation of GSLM's boundary constraint, GSLM (Mai et al.) Fig. 5).
    """
    keys = np.asarray(keys, dtype=np.int64)
    if keys.size == 0:
        return np.zeros(cams.shape[1:], dtype=np.uint8)
    lut = channel_lut(keys)

    def seed(threshold: float) -> np.ndarray:
        channels = seed_channels(cams, threshold)
        if crf is False:
            return lut[channels]
        return lut[crf_labels(image, channels, keys.size + 1, **(crf or {}))]

    fg, bg = seed(fg_threshold), seed(bg_threshold)
    out = fg.copy()
    out[fg == 0] = IGNORE_INDEX
    out[(fg == 0) & (bg == 0)] = 0
    return out.astype(np.uint8)


def saliency_labels(image: np.ndarray, keys: np.ndarray, cams: np.ndarray,
                    saliency: np.ndarray, fg_threshold: float = 0.30,
                    bg_threshold: float = 0.05,
                    crf: dict[str, float] | None | bool = None) -> np.ndarray:
    """P-NOC's saliency-aware affinity labels (David et al., Sec. 5): uint8 H×W, 0..K and 255.

    Background where the saliency (H×W in [0, 1]) is below ``bg_threshold``; the CAM's class
    where its map exceeds ``fg_threshold``; uncertain (255) where the image is salient but
    no CAM is strong. As the authors' code does it (``scripts/rw/make_affinity_labels.py``),
    each of the two maps is refined by the label CRF of :func:`irn_labels`: first the
    salient / not-salient map, then the class seeds kept only where that map is salient —
    so where saliency is low and a CAM strong (an overlap the paper does not order) the
    label is background. ``crf=False``: both maps unrefined.
    """
    keys = np.asarray(keys, dtype=np.int64)
    salient = (saliency > bg_threshold).astype(np.int64)
    if crf is not False:
        salient = crf_labels(image, salient, 2, **(crf or {}))
    if keys.size == 0:
        return np.where(salient == 1, IGNORE_INDEX, 0).astype(np.uint8)
    channels = seed_channels(cams, fg_threshold) * salient
    if crf is not False:
        channels = crf_labels(image, channels, keys.size + 1, **(crf or {}))
    fg = channel_lut(keys)[channels]
    out = fg.copy()
    out[fg == 0] = IGNORE_INDEX
    out[(fg == 0) & (salient == 0)] = 0
    return out.astype(np.uint8)


def psa_scores(image: np.ndarray, keys: np.ndarray, cams: np.ndarray, alpha_low: float = 4,
               alpha_high: float = 32, crf: dict[str, float] | None = None) -> np.ndarray:
    """PSA's two CRF score stacks (code: ``infer_cls.py``, ``_crf_with_alpha`` for
    ``--low_alpha`` 4 and ``--high_alpha`` 32): float32 2(1+n)×H×W, the α_low stack
    [background, class maps] followed by the α_high one.

    The background score (1 − max_c CAM_c)^α is stacked in front of the class maps, the stack
    is normalised to a distribution per pixel and refined with PSA's score CRF
    (:func:`crf_scores`).  An image without a class has the scores 1 (background) in both.
    """
    keys = np.asarray(keys, dtype=np.int64)
    if keys.size == 0:
        return np.ones((2, *cams.shape[1:]), dtype=np.float32)

    def refined(alpha: float) -> np.ndarray:
        bg = (1.0 - cams.max(axis=0, keepdims=True)) ** alpha
        stack = np.concatenate([bg, cams]).astype(np.float32)
        probs = stack / np.maximum(stack.sum(axis=0, keepdims=True), 1e-5)
        return crf_scores(image, probs, **(crf or {}))

    return np.concatenate([refined(alpha_low), refined(alpha_high)])


def psa_label_rule(scores: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """PSA's labels from its two score stacks (:func:`psa_scores`) on any grid (code:
    ``voc12/data.py``, ``VOC12AffDataset.__getitem__``): uint8, 0..K and 255.

    ``low`` and ``high`` are the argmax channels of the α_low and α_high halves; the label is
    ``low``'s class, 255 where ``low`` is background, 0 where ``high`` is background (that
    wins), and 255 where every score is below 1e-5 (no score: the zero padding of a crop).
    """
    scores = np.asarray(scores)
    low_scores, high_scores = np.split(scores, 2)
    low, high = low_scores.argmax(axis=0), high_scores.argmax(axis=0)
    out = channel_lut(keys)[low]
    out[low == 0] = IGNORE_INDEX
    out[high == 0] = 0
    out[scores.max(axis=0) < 1e-5] = IGNORE_INDEX
    return out.astype(np.uint8)


def psa_labels(image: np.ndarray, keys: np.ndarray, cams: np.ndarray, alpha_low: float = 4,
               alpha_high: float = 32, crf: dict[str, float] | None = None) -> np.ndarray:
    """PSA's affinity labels at full resolution (conventions "PSA / AffinityNet"): uint8 H×W,
    0..K and 255 — :func:`psa_label_rule` of :func:`psa_scores`.  AffinityNet trains on
    :func:`psa_grid_labels` of the scores instead."""
    return psa_label_rule(psa_scores(image, keys, cams, alpha_low, alpha_high, crf), keys)


def psa_grid_labels(scores: np.ndarray, keys: np.ndarray, stride: int = 8) -> np.ndarray:
    """PSA's affinity labels on the stride grid of a training crop: uint8
    ⌈h/stride⌉×⌈w/stride⌉ from the crop's score stacks 2(1+n)×h×w (zero where the crop is
    padding).

    PSA (``train_aff.py``: the label transform ``imutils.AvgPool2d(8)``, i.e.
    ``skimage.measure.block_reduce(·, (8, 8, 1), np.mean)`` after the random crop and flip)
    averages every score map over the stride×stride blocks — a block cut by the crop's
    right or bottom edge is padded with 0 and still divided by stride² — and then applies
    :func:`psa_label_rule`: the label is the argmax of the block *means*, not the label of
    any one pixel, and a block entirely in the crop's padding has no score (255).
    """
    c, h, w = scores.shape
    gh, gw = -(-h // stride), -(-w // stride)
    padded = np.zeros((c, gh * stride, gw * stride), dtype=np.float32)
    padded[:, :h, :w] = scores
    means = padded.reshape(c, gh, stride, gw, stride).mean(axis=(2, 4))
    return psa_label_rule(means, keys)


@dataclasses.dataclass(frozen=True)
class _LabelJob:
    cache: CamCache
    dataset: SegmentationDataset
    params: dict[str, Any]
    saliency: SaliencyCache | None = None

    def __call__(self, image_id: str) -> tuple[str, np.ndarray, np.ndarray, np.ndarray | None]:
        keys, cams = self.cache.read(image_id, "full")
        image = self.dataset.load_image(image_id)
        if image.shape[:2] != cams.shape[1:]:
            raise CamflowInputError(
                f"image {image_id!r} is {image.shape[1]}x{image.shape[0]} but its CAM in "
                f"{self.cache.path} is {cams.shape[2]}x{cams.shape[1]}")
        p = self.params
        if p["method"] == "irn":
            return image_id, keys, irn_labels(image, keys, cams, p["fg_threshold"],
                                              p["bg_threshold"], p.get("crf")), None
        if p["method"] == "saliency":
            assert self.saliency is not None
            saliency = self.saliency.saliency(image_id)
            if saliency.shape != cams.shape[1:]:
                raise CamflowInputError(
                    f"image {image_id!r}: its saliency in {self.saliency.path} is "
                    f"{saliency.shape[1]}x{saliency.shape[0]}, its CAM {cams.shape[2]}x"
                    f"{cams.shape[1]}")
            return image_id, keys, saliency_labels(image, keys, cams, saliency,
                                                   p["fg_threshold"], p["bg_threshold"],
                                                   p.get("crf")), None
        scores = psa_scores(image, keys, cams, p["alpha_low"], p["alpha_high"], p.get("crf"))
        return image_id, keys, psa_label_rule(scores, keys), scores


def make_affinity_labels(cache: CamCache, dataset: SegmentationDataset, split: str,
                         params: dict[str, Any], out_path: str | Path, workers: int = 1,
                         progress: bool = True, saliency: SaliencyCache | None = None) -> Path:
    """Affinity labels of every image of ``split`` in ``cache``; writes a label cache.

    ``params``: ``method`` (``irn``, ``psa`` or ``saliency``), ``fg_threshold`` /
    ``bg_threshold`` (irn, saliency) or ``alpha_low``/``alpha_high`` (psa), and ``crf``
    (overrides of the CRF's defaults; irn and saliency also take ``false``: no CRF).  ``psa``
    also stores each image's :func:`psa_scores`; ``saliency`` (:func:`saliency_labels`)
    reads the split's maps from the ``saliency`` cache.
    """
    style = params.get("method")
    if style not in STYLES:
        raise CamflowInputError(f"unknown affinity-label method {style!r}; known: {STYLES}")
    if (style == "saliency") != (saliency is not None):
        raise CamflowInputError(f"affinity-label method {style!r}: a saliency cache is "
                                f"{'needed' if saliency is None else 'not used'}")
    ids = dataset.ids(split)
    cache.require(ids, f"{dataset.name}/{split}")
    if saliency is not None:
        saliency.require(ids, f"{dataset.name}/{split}")
    job = _LabelJob(cache, dataset, params, saliency)
    provenance = {**params, "cams": str(cache.path), "split": split,
                  **({"saliency_cache": str(saliency.path)} if saliency else {})}
    ignored = total = 0
    with LabelCacheWriter(out_path, dataset.class_names, provenance) as writer:
        for image_id, keys, labels, scores in parallel_map(job, ids, workers, progress,
                                                           f"{style} labels {split}"):
            writer.add(image_id, keys, labels, scores)
            ignored += int((labels == IGNORE_INDEX).sum())
            total += labels.size
    log.info("wrote %s: %d images, %.1f%% of pixels ignored", out_path, len(ids),
             100 * ignored / max(total, 1))
    return Path(out_path)
