"""Affinity labels, IRN / AffinityNet losses on hand-computed cases, the label cache."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from camflow.cache import CamCache, LabelCache, LabelCacheWriter
from camflow.io import CamflowInputError
from camflow.methods.affinitynet import affinitynet_loss
from camflow.methods.irn import irn_loss
from camflow.refine.affinity_labels import irn_labels, psa_labels

NO_CRF_ITERS = {"iters": 0}   # mean field with 0 iterations returns the unary's argmax
IMAGE = np.full((1, 3, 3), 128, dtype=np.uint8)


def test_irn_labels_hand_made() -> None:
    # pixels: confident fg (0.5), between the thresholds (0.2), confident bg (0.01)
    cams = np.array([[[0.5, 0.2, 0.01]]], dtype=np.float32)
    out = irn_labels(IMAGE, np.array([2]), cams, 0.30, 0.05, NO_CRF_ITERS)
    assert out.tolist() == [[2, 255, 0]]


def test_psa_labels_hand_made() -> None:
    # (1 - m)^4 and (1 - m)^32 against m: 0.5 fg in both; 0.2 bg in the low-alpha CRF but fg in
    # the high one (ignored); 0.01 bg in both
    cams = np.array([[[0.5, 0.2, 0.01]]], dtype=np.float32)
    out = psa_labels(IMAGE, np.array([2]), cams, 4, 32, NO_CRF_ITERS)
    assert out.tolist() == [[2, 255, 0]]


def test_affinity_labels_map_channels_to_class_keys() -> None:
    cams = np.array([[[0.9, 0.1, 0.0]], [[0.1, 0.8, 0.0]]], dtype=np.float32)
    for fn, args in ((irn_labels, (0.30, 0.05)), (psa_labels, (4, 32))):
        out = fn(IMAGE, np.array([1, 3]), cams, *args, NO_CRF_ITERS)
        assert out.tolist() == [[1, 3, 0]], fn.__name__
    assert irn_labels(IMAGE, np.array([], dtype=np.int64), cams[:0]).tolist() == [[0, 0, 0]]


def test_affinity_labels_with_the_crf_follow_the_image() -> None:
    """With the real CRF, a seed that spills over an image edge is pulled back to it."""
    image = np.zeros((24, 24, 3), dtype=np.uint8)
    image[:, 12:] = 255                                   # bright right half = the object
    cams = np.zeros((1, 24, 24), dtype=np.float32)
    cams[0, :, 9:] = 0.9                                  # CAM spills 3 px into the dark half
    out = irn_labels(image, np.array([1]), cams)
    assert (out[:, 14:] == 1).all() and (out[:, :8] == 0).all()
    assert (out[:, 10] != 1).all()


def test_label_cache_roundtrip_and_kind_check(tmp_path) -> None:
    path = tmp_path / "labels.h5"
    labels = np.array([[0, 1, 255], [2, 2, 0]], dtype=np.uint8)
    with LabelCacheWriter(path, ["bg", "a", "b"], {"style": "irn"}) as writer:
        writer.add("img/1", np.array([1, 2]), labels)
        with pytest.raises(CamflowInputError, match="outside 0..2"):
            writer.add("img2", np.array([1]), np.array([[3]], dtype=np.uint8))
    cache = LabelCache(path)
    keys, got = cache.read("img/1")
    assert keys.tolist() == [1, 2] and (got == labels).all()
    assert cache.provenance == {"style": "irn"}
    with pytest.raises(CamflowInputError, match="holds labels, not cams"):
        len(CamCache(path))


def _logit(p: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.log(p / (1 - p)), dtype=torch.float32)


def test_irn_loss_hand_computed() -> None:
    # radius 2: offsets (0,1), (1,-1), (1,0), (1,1); a 2x3 map has one source pixel, (0,1)
    boundary = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    labels = torch.tensor([[[255, 1, 1], [0, 2, 255]]])
    disp = torch.zeros(1, 2, 2, 3)
    disp[0, :, 0, 1] = torch.tensor([1.0, 2.0])          # D at the source
    disp[0, :, 0, 2] = torch.tensor([0.5, 1.0])          # D at its right neighbour (same class)
    out = irn_loss(_logit(boundary)[None, None], disp, labels, 2)
    # affinities: 1 - max boundary on IRN's band path: (0,2): 0.7; (1,0): the diagonal
    # band covers the whole 2x2 box, 1 - 0.5 (a one-pixel line would give 1 - 0.4);
    # (1,1): 0.5; (1,2): 0.4. Each mean divides by (number of pairs + 1e-5), as the code
    fg = -math.log(0.7 + 1e-5) / (1 + 1e-5)
    neg = 2 * -math.log(1 + 1e-5 - 0.5) / (2 + 1e-5)
    assert out["bg_pos"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["fg_pos"].item() == pytest.approx(fg, rel=1e-5)
    assert out["neg"].item() == pytest.approx(neg, rel=1e-5)
    # D_i - D_j = (0.5, 1.0) against the offset (0, 1): |.| sums to 0.5, over 2 x 1 pair
    dp_fg = 0.5 / (2 + 1e-5)
    assert out["dp_fg"].item() == pytest.approx(dp_fg, rel=1e-5)
    assert out["dp_bg"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["total"].item() == pytest.approx((fg / 2 + neg) / 2 + dp_fg / 2, rel=1e-5)


def test_irn_loss_ignored_pixels_give_no_gradient() -> None:
    logits = torch.zeros(1, 1, 6, 6, requires_grad=True)
    disp = torch.zeros(1, 2, 6, 6, requires_grad=True)
    labels = torch.full((1, 6, 6), 255)
    labels[0, :, :2] = 0
    irn_loss(logits, disp, labels, 2)["total"].backward()
    assert logits.grad[0, 0, :, 4:].abs().sum() == 0     # only ignored pairs reach there
    assert logits.grad[0, 0, :, :2].abs().sum() > 0


def test_affinitynet_loss_hand_computed() -> None:
    feats = torch.zeros(1, 2, 2, 3)
    feats[0, :, 0, 2] = torch.tensor([1.0, 1.0])          # mean |diff| 1
    feats[0, :, 1, 0] = torch.tensor([2.0, 0.0])          # mean |diff| 1
    feats[0, :, 1, 1] = torch.tensor([0.0, 0.5])          # mean |diff| 0.25
    labels = torch.tensor([[[255, 0, 0], [0, 1, 255]]])
    out = affinitynet_loss(feats, labels, 2)
    bg = 2 * -math.log(math.exp(-1) + 1e-5) / (2 + 1e-5)
    neg = -math.log(1 + 1e-5 - math.exp(-0.25)) / (1 + 1e-5)
    assert out["bg_pos"].item() == pytest.approx(bg, rel=1e-5)
    assert out["fg_pos"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["neg"].item() == pytest.approx(neg, rel=1e-5)
    assert out["total"].item() == pytest.approx(bg / 4 + neg / 2, rel=1e-5)
