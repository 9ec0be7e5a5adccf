"""Fully connected CRF (Krähenbühl & Koltun 2011) through ``pydensecrf2``.

Two variants, with the defaults of the base pipeline (``docs/fidelity.md``, conventions of the
base pipeline, "Dense CRF"):

* :func:`crf_labels` — IRN's CRF of a hard label map: unary from labels with
  ``gt_prob`` 0.7; Gaussian sxy 3, compat 3; bilateral sxy 50, srgb 5, compat 10; 10 iterations.
* :func:`crf_scores` — PSA's CRF of class probabilities: softmax unary; Gaussian sxy 3,
  compat 3; bilateral sxy 80, srgb 13, compat 10; 10 iterations.
"""

from __future__ import annotations

import numpy as np
import pydensecrf.densecrf as dcrf
from pydensecrf.utils import unary_from_labels, unary_from_softmax

from camflow.io import CamflowInputError


def _rgb(image: np.ndarray, hw: tuple[int, ...]) -> np.ndarray:
    """The image as the writable C-contiguous ``uint8`` H×W×3 array pydensecrf requires.

    Arrays decoded by PIL are read-only, which pydensecrf's memoryview refuses: always copy.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != tuple(hw):
        raise CamflowInputError(
            f"CRF: image has shape {image.shape}; expected {tuple(hw) + (3,)} (H×W×3 RGB)"
        )
    if image.dtype != np.uint8:
        raise CamflowInputError(f"CRF: image must be uint8 RGB, got dtype {image.dtype}")
    return np.array(image, order="C", copy=True)


def _crf(
    image: np.ndarray,
    unary: np.ndarray,
    n_labels: int,
    gauss: tuple[float, float],
    bilateral: tuple[float, float, float],
    iters: int,
) -> np.ndarray:
    """Mean-field inference; returns the marginals as float32 ``(n_labels, H, W)``."""
    h, w = image.shape[:2]
    crf = dcrf.DenseCRF2D(w, h, n_labels)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=gauss[0], compat=gauss[1])
    crf.addPairwiseBilateral(sxy=bilateral[0], srgb=bilateral[1], rgbim=image, compat=bilateral[2])
    q = crf.inference(iters)
    return np.asarray(q, dtype=np.float32).reshape(n_labels, h, w)


def crf_label_marginals(
    image: np.ndarray,
    labels: np.ndarray,
    n_labels: int,
    gt_prob: float = 0.7,
    gauss_sxy: float = 3,
    gauss_compat: float = 3,
    bi_sxy: float = 50,
    bi_srgb: float = 5,
    bi_compat: float = 10,
    iters: int = 10,
) -> np.ndarray:
    """Refine a hard label map with IRN's dense CRF; returns the marginals, float32
    n_labels×H×W (:func:`crf_labels` takes their argmax).

    ``labels`` holds indices ``0..n_labels-1`` (e.g. a seed's channel indices: 0 background,
    i the i-th class map).  The unary is ``unary_from_labels(..., gt_prob, zero_unsure=False)``:
    every pixel, label 0 included, is a confident observation with probability ``gt_prob``.
    Defaults are IRN's (docs/fidelity.md, conventions: "Dense CRF").
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise CamflowInputError(f"crf_labels: labels must be H×W, got shape {labels.shape}")
    if n_labels < 2:
        raise CamflowInputError(f"crf_labels: n_labels must be at least 2, got {n_labels}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_labels):
        raise CamflowInputError(
            f"crf_labels: labels span {labels.min()}..{labels.max()}, outside 0..{n_labels - 1}"
        )
    rgb = _rgb(image, labels.shape)
    unary = unary_from_labels(labels.astype(np.int64), n_labels, gt_prob=gt_prob, zero_unsure=False)
    return _crf(rgb, unary, n_labels, (gauss_sxy, gauss_compat), (bi_sxy, bi_srgb, bi_compat),
                iters)


def crf_labels(image: np.ndarray, labels: np.ndarray, n_labels: int,
               **params: float) -> np.ndarray:
    """IRN's dense CRF of a hard label map (:func:`crf_label_marginals`): int64 labels H×W."""
    return np.argmax(crf_label_marginals(image, labels, n_labels, **params), axis=0)


def crf_scores(
    image: np.ndarray,
    probs: np.ndarray,
    gauss_sxy: float = 3,
    gauss_compat: float = 3,
    bi_sxy: float = 80,
    bi_srgb: float = 13,
    bi_compat: float = 10,
    iters: int = 10,
) -> np.ndarray:
    """Refine class probabilities ``probs`` (C×H×W, each pixel a distribution) with PSA's CRF.

    The unary is ``-log(probs)`` (``unary_from_softmax``, probabilities clipped at 1e-5).
    Returns the CRF marginals, float32 C×H×W, summing to 1 at every pixel.  Defaults are
    PSA's (docs/fidelity.md, conventions: "Dense CRF").
    """
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 3 or probs.shape[0] < 1:
        raise CamflowInputError(f"crf_scores: probs must be C×H×W, got shape {probs.shape}")
    rgb = _rgb(image, probs.shape[1:])
    unary = unary_from_softmax(probs)
    return _crf(
        rgb, unary, probs.shape[0], (gauss_sxy, gauss_compat), (bi_sxy, bi_srgb, bi_compat), iters
    )
