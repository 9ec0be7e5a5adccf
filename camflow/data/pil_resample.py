"""PIL's bicubic resize of uint8 images, bit for bit, as integer tensor operations.

IRN rescales every test scale with PIL's bicubic filter (``misc/imutils.py``
``pil_rescale``, :func:`camflow.data.transforms.pil_rescale`).  On a GPU, doing that in the
DataLoader's workers makes the main process receive, pin and send 7.5 times the pixels of
the image itself (scales 1, 0.5, 1.5 and 2), which held ``make_cams`` to 52–65 % of the
bare forward on an H100 (``benchmarks/cam_inference.py``).  No library resizes like PIL on
a GPU: torch's ``interpolate(..., mode="bicubic", antialias=True)`` follows PIL's filter but
in floating point, without PIL's fixed-point weights and its rounding to uint8 between the
two passes, so pixels differ by one grey level.  Hence this module, which repeats PIL's
arithmetic (Pillow's ``Resample.c``, stable since Pillow 4):

1. per output coordinate ``x`` of an axis of ``n_in`` → ``n_out`` pixels (``scale =
   n_in / n_out``, ``filterscale = max(scale, 1)``, support ``2·filterscale``), the input
   taps ``xmin .. xmax - 1`` around ``center = (x + 0.5)·scale`` (``xmin = trunc(center -
   support + 0.5)`` clipped to ≥ 0, ``xmax = trunc(center + support + 0.5)`` clipped to
   ``n_in``), each weighted by the bicubic kernel (a = -0.5) at ``(tap - center + 0.5) /
   filterscale``, the weights divided by their sum accumulated in tap order — all in
   double precision, in PIL's order of operations;
2. the weights as fixed-point integers with 22 fractional bits (rounded half away from
   zero);
3. one pass per axis, the second on the first's uint8 result; each output value is
   ``clip(floor((2²¹ + Σ pixel·weight) / 2²²), 0, 255)``.  An axis whose size does not
   change is not resampled (PIL skips that pass).  Pillow before 13 always resamples the
   width first; Pillow 13 (python-pillow/Pillow#9549) resamples the height first where
   it shrinks by more than twice the pixels the width loses (``h - h' > 2·(w - w')``,
   ``h' < h``; found by comparing both orders with Pillow 13.0.0 on 1,484 random
   sizes, all of them agreeing).  Which of the two the installed Pillow does is probed
   once (:func:`pillow_pass_order`), and :func:`matches_pillow` checks the whole
   resize against it, so that a Pillow that resizes otherwise is noticed rather than
   silently differed from.

The sums stay below 2³¹, so int32 arithmetic computes them exactly on any device, and the
result equals ``PIL.Image.resize(..., BICUBIC)`` exactly
(``tests/test_pil_resample.py``; on an H100 with Pillow 12.3, 96 of 96 VOC-sized images).
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import numpy as np
import torch
from PIL import Image

#: fractional bits of PIL's fixed-point weights for 8-bit images (32 - 8 - 2)
PRECISION_BITS = 22
BICUBIC_SUPPORT = 2.0
BICUBIC_A = -0.5


def _bicubic(x: np.ndarray) -> np.ndarray:
    """PIL's bicubic kernel (a = -0.5), evaluated in PIL's order of operations."""
    x = np.abs(x)
    inner = ((BICUBIC_A + 2.0) * x - (BICUBIC_A + 3.0)) * x * x + 1
    outer = (((x - 5) * x + 8) * x - 4) * BICUBIC_A
    return np.where(x < 1.0, inner, np.where(x < 2.0, outer, 0.0))


@functools.lru_cache(maxsize=256)
def bicubic_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """The taps of one axis resized from ``n_in`` to ``n_out`` pixels (steps 1–2 of the
    module doc): ``(index, weight)``, both (n_out, k) — input indices (unused taps point at
    0 with weight 0) and int32 fixed-point weights."""
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = BICUBIC_SUPPORT * filterscale
    k = math.ceil(support) * 2 + 1
    center = (np.arange(n_out) + 0.5) * scale
    xmin = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    xmax = np.minimum(np.trunc(center + support + 0.5), n_in).astype(np.int64) - xmin
    taps = np.arange(k)
    used = taps[None, :] < xmax[:, None]
    weights = np.where(used, _bicubic((taps[None, :] + xmin[:, None] - center[:, None] + 0.5)
                                      * (1.0 / filterscale)), 0.0)
    total = np.zeros(n_out)
    for t in range(k):  # in tap order, as PIL sums
        total = total + weights[:, t]
    weights = np.divide(weights, total[:, None], out=weights, where=total[:, None] != 0.0)
    fixed = weights * (1 << PRECISION_BITS)
    fixed = np.trunc(np.where(fixed < 0, fixed - 0.5, fixed + 0.5)).astype(np.int32)
    index = np.where(used, xmin[:, None] + taps[None, :], 0)
    return index, fixed


@functools.lru_cache(maxsize=256)
def _device_taps(n_in: int, n_out: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """:func:`bicubic_taps` on ``device``, copied there once: a copy from pageable memory
    waits for the device's queued work, which would stall ``make_cams``'s GPU loop."""
    return tuple(torch.from_numpy(a).to(device) for a in bicubic_taps(n_in, n_out))


def _resample_axis(images: torch.Tensor, axis: int, n_out: int) -> torch.Tensor:
    """One pass of step 3 along ``axis`` of a uint8 tensor, in int32 (exact: every product
    and partial sum is below 2³¹).  As a gather of the taps rather than a float64 product
    with a dense weight matrix, which is exact too but cost an H100 a sixth of
    ``make_cams``'s rate at 500×375 (130 against 155 images/s with the network)."""
    index, weight = _device_taps(images.shape[axis], n_out, images.device)
    pixels = images.movedim(axis, -1).to(torch.int32)
    sums = (pixels[..., index] * weight).sum(-1, dtype=torch.int32)  # (..., n_out)
    out = ((sums + (1 << (PRECISION_BITS - 1))) >> PRECISION_BITS).clamp_(0, 255)
    return out.to(torch.uint8).movedim(-1, axis)


PassOrder = Literal["width first", "height first where it shrinks most"]


def _height_first(order: PassOrder, in_size: tuple[int, int], size: tuple[int, int]) -> bool:
    """Whether ``order`` resamples the height first for ``in_size`` → ``size`` (module doc)."""
    (h, w), (oh, ow) = in_size, size
    return order != "width first" and oh < h and h - oh > 2 * (w - ow)


def _resize(images: torch.Tensor, size: tuple[int, int], order: PassOrder) -> torch.Tensor:
    h_axis, w_axis = images.dim() - 3, images.dim() - 2
    passes = [(w_axis, size[1]), (h_axis, size[0])]
    if _height_first(order, (images.shape[h_axis], images.shape[w_axis]), size):
        passes.reverse()
    for axis, n_out in passes:
        if images.shape[axis] != n_out:
            images = _resample_axis(images, axis, n_out)
    return images


#: (H, W) → (h, w) sizes at which the two pass orders give different pixels for the probe
#: image of :func:`pillow_pass_order` (each resamples the height first under Pillow 13)
_ORDER_PROBES = (((100, 100), (50, 80)), ((64, 48), (16, 40)))


def _probe(in_size: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*in_size, 3), dtype=np.uint8)


def _by_pillow(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` resized to ``size`` (h, w) by the installed Pillow (bicubic)."""
    return np.asarray(Image.fromarray(image).resize(size[::-1], Image.BICUBIC))


@functools.cache
def pillow_pass_order() -> PassOrder | None:
    """The pass order of the installed Pillow (module doc), probed on random images; None
    if its bicubic resize equals neither."""
    orders: tuple[PassOrder, ...] = ("width first", "height first where it shrinks most")
    for order in orders:
        if all(np.array_equal(_by_pillow(_probe(a), b),
                              _resize(torch.from_numpy(_probe(a)), b, order).numpy())
               for a, b in _ORDER_PROBES):
            return order
    return None


@functools.cache
def matches_pillow() -> bool:
    """Whether :func:`resize_bicubic` equals the installed Pillow at IRN's scales (0.5,
    1.5, 2) of two VOC-like sizes and at the pass-order probes."""
    sizes = [((75, 100), (38, 50)), ((75, 100), (112, 150)), ((100, 75), (200, 150)),
             ((37, 50), (18, 25)), *_ORDER_PROBES]
    return pillow_pass_order() is not None and all(
        np.array_equal(_by_pillow(_probe(a, 1), b),
                       resize_bicubic(torch.from_numpy(_probe(a, 1)), b).numpy())
        for a, b in sizes)


def resize_bicubic(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 ``images`` (…×H×W×C) resized to ``size`` (h, w) exactly as the installed
    Pillow's ``Image.resize((w, h), BICUBIC)`` resizes each image (module doc; its pass
    order: :func:`pillow_pass_order`), on their device."""
    if images.dtype != torch.uint8:
        raise TypeError(f"resize_bicubic takes uint8 images, got {images.dtype}")
    order = pillow_pass_order()
    if order is None:
        raise RuntimeError("the installed Pillow's bicubic resize matches neither known pass "
                           "order (camflow.data.pil_resample); rescale with PIL instead")
    return _resize(images, size, order)
