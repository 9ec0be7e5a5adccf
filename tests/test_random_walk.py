"""The sparse random walk equals a dense reference; pair geometry; the memory bound."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from camflow.refine.pairs import neighbour_offsets, pair_labels, path_offsets
from camflow.refine.random_walk import (
    boundary_affinity,
    irn_propagate,
    psa_propagate,
    random_walk,
)


def dense_walk(x: np.ndarray, aff: dict[tuple[int, int, int, int], float], beta: float,
               n_squarings: int) -> np.ndarray:
    """Reference: PSA/IRN's dense formulation, T = A^β / column sums, squared n times."""
    k, h, w = x.shape
    n = h * w
    a = np.eye(n)
    for (y0, x0, y1, x1), value in aff.items():
        a[y0 * w + x0, y1 * w + x1] = a[y1 * w + x1, y0 * w + x0] = value
    t = a ** beta
    t = t / t.sum(axis=0, keepdims=True)
    for _ in range(n_squarings):
        t = t @ t
    return (x.reshape(k, n) @ t).reshape(k, h, w)


def pairs_within(h: int, w: int, radius: int):
    for y0 in range(h):
        for x0 in range(w):
            for y1 in range(h):
                for x1 in range(w):
                    d2 = (y1 - y0) ** 2 + (x1 - x0) ** 2
                    if 0 < d2 < radius ** 2 and (y1 * w + x1) > (y0 * w + x0):
                        yield y0, x0, y1, x1


def test_offsets_are_the_half_disc() -> None:
    offs = neighbour_offsets(5)
    assert len(offs) == 34 and len(set(offs)) == 34
    assert all(0 < dy * dy + dx * dx < 25 for dy, dx in offs)
    assert all(dy > 0 or (dy == 0 and dx > 0) for dy, dx in offs)
    assert len(neighbour_offsets(10)) == 152


def test_path_is_irns_band() -> None:
    """IRN's PathIndex: the points of the pair's bounding box at distance < 1 from the line,
    worked out by hand from (dy·x − dx·y)² < dy² + dx²."""
    assert set(path_offsets(0, 3)) == {(0, 0), (0, 1), (0, 2), (0, 3)}
    # (1, -4): |x + 4y| < √17 keeps both full rows of the 2×5 box: 10 points (a line has 5)
    assert set(path_offsets(1, -4)) == {(y, x) for y in (0, 1) for x in range(-4, 1)}
    # (2, -4): |x + 2y| ≤ 2 → 3 + 5 + 3 points
    assert set(path_offsets(2, -4)) == {(0, -2), (0, -1), (0, 0),
                                        (1, -4), (1, -3), (1, -2), (1, -1), (1, 0),
                                        (2, -4), (2, -3), (2, -2)}
    # (3, 1): |3x − y| ≤ 3 everywhere in the 4×2 box
    assert set(path_offsets(3, 1)) == {(y, x) for y in range(4) for x in (0, 1)}


@pytest.mark.parametrize("radius,beta,n_sq", [(3, 10, 3), (5, 8, 8), (4, 1, 5)])
def test_sparse_walk_equals_dense_reference(radius: int, beta: float, n_sq: int) -> None:
    rng = np.random.default_rng(radius)
    k, h, w = 3, 7, 9
    x = rng.random((k, h, w))
    feats = rng.random((h, w))
    # an affinity per unordered pair, given to the sparse walk through the offset layout
    aff = {}
    for y0, x0, y1, x1 in pairs_within(h, w, radius):
        aff[(y0, x0, y1, x1)] = float(np.exp(-abs(feats[y0, x0] - feats[y1, x1])))
    layout = np.zeros((len(neighbour_offsets(radius)), h, w))
    for o, (dy, dx) in enumerate(neighbour_offsets(radius)):
        for y0 in range(h):
            for x0 in range(w):
                y1, x1 = y0 + dy, x0 + dx
                if 0 <= y1 < h and 0 <= x1 < w:
                    layout[o, y0, x0] = aff[(y0, x0, y1, x1)]
                else:
                    layout[o, y0, x0] = 0.7  # must be ignored: the partner is outside
    expected = dense_walk(x, aff, beta, n_sq)
    got = random_walk(torch.from_numpy(x).float(), torch.from_numpy(layout).float(), radius,
                      beta, n_sq)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, rtol=0)
    got64 = random_walk(torch.from_numpy(x), torch.from_numpy(layout), radius, beta, n_sq,
                        dtype=torch.float64)
    np.testing.assert_allclose(got64.numpy(), expected, atol=1e-10, rtol=0)


def test_boundary_affinity_is_one_minus_the_max_on_the_line() -> None:
    b = torch.zeros(6, 8)
    b[:, 4] = 0.9                              # a vertical wall at column 4
    aff = boundary_affinity(b, 3)
    offs = neighbour_offsets(3)
    right = offs.index((0, 2))                 # (2, 2) → (2, 4) touches the wall
    assert aff[right, 2, 2] == pytest.approx(0.1)
    assert aff[right, 2, 0] == pytest.approx(1.0)   # (2, 0) → (2, 2): clear
    assert aff[right, 2, 6] == 0.0             # partner (2, 8) is outside the map
    down = offs.index((1, 0))
    assert aff[down, 5, 0] == 0.0              # partner below the last row


def test_diagonal_boundary_does_not_let_a_pair_slip_through() -> None:
    """A staircase boundary (pixels (y, 3 − y)) separates (1, 1) from (2, 2): a one-pixel
    line (1, 1) → (2, 2) passes between its pixels, IRN's band does not."""
    b = torch.zeros(6, 6)
    for y in range(4):
        b[y, 3 - y] = 1.0
    aff = boundary_affinity(b, 3)
    diag = neighbour_offsets(3).index((1, 1))
    assert aff[diag, 1, 1] == 0.0
    assert aff[diag, 4, 0] == 1.0              # (4, 0) → (5, 1): no boundary near


def test_pair_labels_hand_made() -> None:
    labels = torch.tensor([[0, 0, 1, 1, 255],
                           [0, 0, 1, 2, 2],
                           [0, 0, 1, 2, 2]])
    p = pair_labels(labels, 2)                 # offsets (0, 1), (1, -1), (1, 0), (1, 1)
    offs = neighbour_offsets(2)
    assert offs == ((0, 1), (1, -1), (1, 0), (1, 1))
    # interior region: rows 0..1, columns 1..3 (sources), partners inside the map
    right = offs.index((0, 1))
    assert p["bg_pos"][right].tolist() == [[0, 0, 0], [0, 0, 0]]
    assert p["fg_pos"][right].tolist() == [[0, 1, 0], [0, 0, 1]]
    assert p["neg"][right].tolist() == [[1, 0, 0], [1, 1, 0]]   # (0,3)-(0,4) is ignored
    down = offs.index((1, 0))
    assert p["bg_pos"][down].tolist() == [[1, 0, 0], [1, 0, 0]]
    assert p["neg"][down].tolist() == [[0, 0, 1], [0, 0, 0]]


def test_irn_propagation_spreads_inside_boundaries() -> None:
    """A CAM peak on one side of a closed boundary fills its side and not the other."""
    h, w = 12, 12
    boundary = torch.zeros(h, w)
    boundary[:, 6] = 1.0
    cams = torch.zeros(1, h, w)
    cams[0, 5, 2] = 1.0
    scores, channels = irn_propagate(cams, boundary, (4 * h, 4 * w), radius=5, beta=10,
                                     n_squarings=6, bg_threshold=0.25)
    assert scores.shape == (1, 48, 48) and scores.max() == pytest.approx(1.0)
    assert (channels[:, :20] == 1).float().mean() > 0.9
    assert (channels[:, 28:] == 0).all()


def test_psa_propagation_shapes_and_background() -> None:
    h, w = 20, 27                              # not multiples of 8: padded grid 3×4
    cams = torch.zeros(2, h, w)
    cams[0, :10, :10] = 1.0
    cams[1, 12:, 15:] = 0.8
    affinity = torch.ones(len(neighbour_offsets(3)), 3, 4) * 0.2
    scores, channels = psa_propagate(cams, affinity, radius=3, beta=8, n_squarings=2)
    assert scores.shape == (3, h, w)
    torch.testing.assert_close(scores.sum(0), torch.ones(h, w))
    assert channels[2, 2] == 1 and channels[18, 24] == 2


MEMORY_SCRIPT = """
import resource, sys, torch
from camflow.refine.random_walk import boundary_affinity, random_walk
torch.manual_seed(0)
h = w = 250                                     # a 1000 x 1000 image at stride 4
boundary = torch.rand(h, w) * 0.5
cams = torch.rand(3, h, w)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = random_walk(cams, boundary_affinity(boundary, 5), 5, 10.0, {n_sq})
assert out.shape == (3, h, w) and torch.isfinite(out).all()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(base, peak)
"""


@pytest.mark.slow
def test_memory_bound_on_a_1000px_image() -> None:
    """1000 × 1000 at stride 4 (62,500 pixels, radius 5): the walk stays under 2 GB (the dense
    matrix alone would be 15.6 GB)."""
    proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT.format(n_sq=3)],
                          capture_output=True, text=True, check=True)
    base_kb, peak_kb = map(int, proc.stdout.split())
    assert peak_kb < 2 * 1024 * 1024, f"peak RSS {peak_kb / 1024:.0f} MB"
    assert peak_kb - base_kb < 1024 * 1024
