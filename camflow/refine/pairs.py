"""Pixel pairs within a radius: the geometry shared by IRN, AffinityNet and the random walk.

A pair is a pixel i and i + d for an offset d = (dy, dx) of the half-plane set of
:func:`neighbour_offsets` (dy > 0, or dy = 0 and dx > 0, with dy² + dx² < r²: each unordered
pair once, as in PSA's ``get_indices_of_pairs`` and IRN's ``PathIndex``).  Training uses the
*interior region* of a map, the source pixels whose every partner lies inside it
(:func:`region_pairs`); IRN's random walk uses every pixel, pairs leaving the map having
affinity 0 (:func:`grid_pairs`), PSA's only the pairs that start in the interior region
(:func:`psa_pair_sources`).  The path of a pair, whose largest boundary value
sets IRN's affinity, is IRN's band of pixels (:func:`path_offsets`).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from camflow.data.base import IGNORE_INDEX
from camflow.io import CamflowInputError


@functools.cache
def neighbour_offsets(radius: int) -> tuple[tuple[int, int], ...]:
    """Half-plane offsets (dy, dx) with 0 < dy² + dx² < radius² (34 for radius 5)."""
    if radius < 2:
        raise CamflowInputError(f"pair radius must be at least 2, got {radius}")
    out = [(0, dx) for dx in range(1, radius)]
    out += [(dy, dx) for dy in range(1, radius) for dx in range(-radius + 1, radius)
            if dy * dy + dx * dx < radius * radius]
    return tuple(out)


@functools.cache
def path_offsets(dy: int, dx: int) -> tuple[tuple[int, int], ...]:
    """IRN's path between the two pixels of the pair (0, 0)–(dy, dx) (IRN Eq. 3; code
    ``misc/indexing.py``, ``PathIndex.get_search_paths_dst``): every grid point of the
    bounding box of the two pixels whose distance to the line through them is below 1 — a band
    about two pixels wide, not one pixel per step (offset (1, −4): 10 points, not 5)."""
    length_sq = dy * dy + dx * dx
    return tuple((y, x)
                 for y in range(min(0, dy), max(0, dy) + 1)
                 for x in range(min(0, dx), max(0, dx) + 1)
                 if (dy * x - dx * y) ** 2 < length_sq)


def _region(h: int, w: int, radius: int) -> tuple[int, int]:
    """Height and width of the interior region (source rows [0, rh), columns [r-1, r-1+rw))."""
    rh, rw = h - (radius - 1), w - 2 * (radius - 1)
    if rh <= 0 or rw <= 0:
        raise CamflowInputError(
            f"a {h}x{w} map is too small for pairs of radius {radius} "
            f"(needs at least {radius} rows and {2 * radius - 1} columns)")
    return rh, rw


def shifted(x: torch.Tensor, radius: int, dy: int, dx: int) -> torch.Tensor:
    """The interior region of ``x`` (…×h×w) moved by (dy, dx): the partners at offset d."""
    rh, rw = _region(x.shape[-2], x.shape[-1], radius)
    left = radius - 1 + dx
    return x[..., dy:dy + rh, left:left + rw]


def region_pairs(x: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(source, partners)``: the interior region of ``x`` (…×rh×rw) and its partners at every
    offset (…×n_offsets×rh×rw)."""
    source = shifted(x, radius, 0, 0)
    partners = torch.stack([shifted(x, radius, dy, dx) for dy, dx in neighbour_offsets(radius)],
                           dim=-3)
    return source, partners


def path_max(boundary: torch.Tensor, radius: int) -> torch.Tensor:
    """Max of ``boundary`` (…×h×w) on the path (:func:`path_offsets`) of each pair of the
    interior region: …×n_offsets×rh×rw.  IRN's affinity is 1 minus this (Ahn et al. 2019,
    Eq. 3)."""
    return torch.stack([
        torch.stack([shifted(boundary, radius, py, px) for py, px in path_offsets(dy, dx)])
        .amax(dim=0)
        for dy, dx in neighbour_offsets(radius)], dim=-3)


def pair_labels(labels: torch.Tensor, radius: int) -> dict[str, torch.Tensor]:
    """Affinity labels of the pairs of a label map (…×h×w, 255 = ignore), as float masks
    …×n_offsets×rh×rw: ``bg_pos`` (both background), ``fg_pos`` (both the same foreground
    class), ``neg`` (different classes); a pair with an ignored pixel is in none (PSA Sec. 3.2,
    IRN Sec. 3.2)."""
    source, partners = region_pairs(labels, radius)
    source = source.unsqueeze(-3)
    valid = (source != IGNORE_INDEX) & (partners != IGNORE_INDEX)
    equal = (source == partners) & valid
    return {"bg_pos": (equal & (source == 0)).float(),
            "fg_pos": (equal & (source > 0)).float(),
            "neg": (valid & ~equal).float()}


def grid_pairs(x: torch.Tensor, radius: int, pad_value: float) -> tuple[torch.Tensor,
                                                                          torch.Tensor]:
    """Like :func:`region_pairs` but for every pixel of ``x`` (…×h×w): the map is padded with
    ``pad_value`` (below, left and right) so that partners outside it read ``pad_value``."""
    r = radius - 1
    padded = F.pad(x, (r, r, 0, r), value=pad_value)
    return region_pairs(padded, radius)


def grid_path_max(boundary: torch.Tensor, radius: int) -> torch.Tensor:
    """:func:`path_max` for every pixel of ``boundary`` (h×w): n_offsets×h×w, 1 for pairs
    leaving the map (IRN pads the boundary map with 1)."""
    r = radius - 1
    return path_max(F.pad(boundary, (r, r, 0, r), value=1.0), radius)


def flat_pair_indices(h: int, w: int, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every pixel i and offset d of the h×w grid: flat indices ``i`` and ``i + d`` and
    whether the partner is inside the grid; arrays of shape n_offsets×h×w."""
    ys, xs = np.mgrid[0:h, 0:w]
    src, dst, inside = [], [], []
    for dy, dx in neighbour_offsets(radius):
        ty, tx = ys + dy, xs + dx
        inside.append((ty < h) & (tx >= 0) & (tx < w))
        src.append(ys * w + xs)
        dst.append(np.clip(ty, 0, h - 1) * w + np.clip(tx, 0, w - 1))
    return np.stack(src), np.stack(dst), np.stack(inside)


def psa_pair_sources(h: int, w: int, radius: int) -> torch.Tensor:
    """The pixels PSA's pairs start from, as a bool h×w mask (code: ``tool/pyutils.py``
    ``get_indices_of_pairs``, which ``network/resnet38_aff.py`` ``Net.forward`` uses for the
    affinity matrix of ``infer_aff.py``): the interior region of :func:`region_pairs`, rows
    [0, h − r + 1) and columns [r − 1, w − r + 1) — no pair starts in the last r − 1 rows or
    the first or last r − 1 columns.  Every partner of these lies inside the map; a pixel
    outside the region only has the pairs that reach it from inside (a corner of the last row
    has none).  A map with fewer than r rows or 2r − 1 columns has no source."""
    mask = torch.zeros(h, w, dtype=torch.bool)
    r = radius - 1
    mask[:max(h - r, 0), r:max(w - r, r)] = True
    return mask
