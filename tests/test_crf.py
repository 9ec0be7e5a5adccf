"""Dense CRF wrappers (IRN label CRF, PSA score CRF) on a synthetic two-region image."""

from __future__ import annotations

import numpy as np
import pytest

from camflow.io import CamflowInputError
from camflow.refine.crf import crf_labels, crf_scores


def _two_regions() -> tuple[np.ndarray, np.ndarray]:
    """A 32×40 image: flat red left half, flat blue right half; truth 0 left, 1 right."""
    image = np.zeros((32, 40, 3), np.uint8)
    image[:, :20] = (200, 40, 40)
    image[:, 20:] = (30, 60, 210)
    truth = np.zeros((32, 40), np.int64)
    truth[:, 20:] = 1
    return image, truth


def test_crf_labels_cleans_isolated_errors() -> None:
    image, truth = _two_regions()
    noisy = truth.copy()
    for y, x in [(5, 5), (10, 14), (25, 8), (4, 30), (16, 26), (28, 35)]:
        noisy[y, x] = 1 - noisy[y, x]
    # a non-contiguous view: the wrapper must hand pydensecrf a C-contiguous copy
    image_view = np.ascontiguousarray(image[:, ::-1])[:, ::-1]
    refined = crf_labels(image_view, noisy, n_labels=2)
    assert refined.shape == truth.shape
    before = (noisy == truth).mean()
    after = (refined == truth).mean()
    assert after > before
    assert after == 1.0


def test_crf_labels_rejects_bad_input() -> None:
    image, truth = _two_regions()
    with pytest.raises(CamflowInputError, match="outside 0..1"):
        crf_labels(image, truth * 2, n_labels=2)
    with pytest.raises(CamflowInputError, match="uint8"):
        crf_labels(image.astype(np.float32), truth, n_labels=2)


def test_crf_scores_is_a_distribution() -> None:
    image, truth = _two_regions()
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, *truth.shape)).astype(np.float32)
    logits[truth, np.arange(32)[:, None], np.arange(40)] += 1.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=0)
    refined = crf_scores(image, probs)
    assert refined.shape == probs.shape and refined.dtype == np.float32
    assert (refined >= 0).all()
    np.testing.assert_allclose(refined.sum(axis=0), 1.0, atol=1e-5)


def test_crf_accepts_read_only_images_as_decoded_by_pil() -> None:
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    image[:, 4:] = 255
    image.setflags(write=False)
    labels = np.zeros((8, 8), dtype=np.int64)
    labels[:, 4:] = 1
    assert (crf_labels(image, labels, 2) == labels).all()
