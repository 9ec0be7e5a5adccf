"""IRN's boundary inference (``net/resnet50_irn.py``, ``EdgeDisplacement``) and training resize
(``misc/imutils.py``), worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from camflow.data.transforms import random_rescale
from camflow.methods.irn import boundary_map


class Pooled(torch.nn.Module):
    """Boundary logits = 4×4 mean of channel 0 (+ the stride-4 column index with ``ramp``),
    so flips and padding act on them in a way that can be worked out by hand."""

    def __init__(self, ramp: bool) -> None:
        super().__init__()
        self.ramp = ramp

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        edge = F.avg_pool2d(x[:, :1], 4)
        if self.ramp:
            edge = edge + torch.arange(edge.shape[-1], dtype=edge.dtype)
        return edge, torch.zeros_like(edge).expand(-1, 2, -1, -1)


def test_flip_averages_logits_not_probabilities() -> None:
    """Zero image 8×8 padded to 32: logits c and 7 − c (c the column) average to 3.5, so
    every pixel is σ(3.5); averaging probabilities would give (σ(c) + σ(7 − c)) / 2."""
    got = boundary_map(Pooled(ramp=True), torch.zeros(3, 8, 8), flip=True, pad_to=32)
    assert got.shape == (2, 2)
    assert torch.allclose(got, torch.full((2, 2), 1 / (1 + math.exp(-3.5))))
    assert got[0, 0].item() != pytest.approx((0.5 + 1 / (1 + math.exp(-7))) / 2)


def test_flip_before_pad_reproduces_irns_misalignment() -> None:
    """A 4×6 image with a stripe of 8 in column 3, padded to 8: its logits on the 1×2 grid are
    [2, 0].  camflow mirrors the padded image (stripe in column 4 → cell 1), so the mirror
    flipped back gives [2, 0] again: σ(2), σ(0).  IRN mirrors the 6-wide image (stripe in
    column 2 → cell 0), crops to 2 cells and flips: [0, 2], so the average is [1, 1]."""
    image = torch.zeros(3, 4, 6)
    image[0, :, 3] = 8.0
    aligned = boundary_map(Pooled(ramp=False), image, flip=True, pad_to=8)
    assert torch.allclose(aligned, torch.sigmoid(torch.tensor([[2.0, 0.0]])))
    irn_code = boundary_map(Pooled(ramp=False), image, flip=True, pad_to=8,
                            flip_before_pad=True)
    assert torch.allclose(irn_code, torch.sigmoid(torch.tensor([[1.0, 1.0]])))


def test_padding_follows_pad_to() -> None:
    """With the column ramp, the flipped-back logits depend on the padded width W′ (4 + 8 =
    12 px → 3 cells: 2 / 2 = 1; 32 px → 8 cells: 7 / 2)."""
    x = torch.zeros(3, 4, 4)
    assert boundary_map(Pooled(True), x, True, pad_to=12).item() == pytest.approx(
        1 / (1 + math.exp(-1.0)))
    assert boundary_map(Pooled(True), x, True, pad_to=32).item() == pytest.approx(
        1 / (1 + math.exp(-3.5)))


def test_training_rescale_is_irns_random_scale() -> None:
    """IRN's ``random_scale``: factor lo + u·(hi − lo), PIL bicubic to (round(H·s), round(W·s));
    ``resize_long``: the long side an integer in [lo, hi]."""
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    u = np.random.default_rng(5).random()
    got = random_rescale(image, {"rescale": [0.5, 1.5], "resample": "bicubic"},
                         np.random.default_rng(5))
    s = 0.5 + u * 1.0
    size = (round(40 * s), round(30 * s))
    assert np.array_equal(got, np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC)))
    long = int(np.random.default_rng(6).integers(32, 49))
    got = random_rescale(image, {"resize_long": [32, 48], "resample": "bicubic"},
                         np.random.default_rng(6))
    assert max(got.shape[:2]) == long
    assert np.array_equal(got, np.asarray(
        Image.fromarray(image).resize((long, round(30 * long / 40)), Image.BICUBIC)))
