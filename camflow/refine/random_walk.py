"""Random walk over learned inter-pixel affinities, without a dense HW × HW matrix.

PSA (Ahn & Kwak 2018, Sec. 3.3) and IRN (Ahn et al. 2019, Sec. 4) propagate class scores
``x`` (K × N, N = h·w pixels) with a transition matrix built from pair affinities a_ij
(pairs within a radius; a_ii = 1)::

    A = [a_ij^β],   T = A D⁻¹ (D = diag of column sums),   x_rw = x · T^(2^t)

where both papers compute T^(2^t) by squaring a dense N × N matrix t times.  Because A is
symmetric, (x · T^(2^t))ᵀ = (D⁻¹A)^(2^t) · xᵀ: the same result comes from 2^t products of the
*sparse* row-normalised matrix D⁻¹A with the K score vectors.  Memory is O(N × neighbours)
(:func:`transition_matrix`), so a 1000 × 1000 image at stride 4 (N = 62,500, 69 neighbours)
peaks under 0.5 GB in all (``benchmarks/random_walk.py``) where one dense matrix needs 15.6 GB.

:func:`irn_propagate` and :func:`psa_propagate` are the two papers' post-processing around
the walk (``docs/fidelity.md``, conventions: "IR labels and IRN" and "PSA / AffinityNet").
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from camflow.io import CamflowInputError
from camflow.refine.pairs import flat_pair_indices, grid_path_max, psa_pair_sources


def transition_matrix(affinity: torch.Tensor, radius: int, beta: float,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sparse (CSR) row-normalised D⁻¹A of N = h·w pixels from pair affinities.

    ``affinity`` is n_offsets×h×w: a(i, i + d) for the half-plane offsets of
    :func:`~camflow.refine.pairs.neighbour_offsets` (pairs leaving the grid are dropped).
    A = a^β on both (i, j) and (j, i), 1 on the diagonal (PSA Eq. 10, IRN Sec. 4).
    """
    n_off, h, w = affinity.shape
    src, dst, inside = flat_pair_indices(h, w, radius)
    if src.shape[0] != n_off:
        raise CamflowInputError(f"affinity has {n_off} offsets; radius {radius} has {src.shape[0]}")
    keep = torch.from_numpy(inside.reshape(-1))
    values = affinity.reshape(-1).to(dtype)[keep].clamp(min=0) ** beta
    i = torch.from_numpy(src.reshape(-1))[keep]
    j = torch.from_numpy(dst.reshape(-1))[keep]
    n = h * w
    diag = torch.arange(n)
    rows = torch.cat([i, j, diag])
    cols = torch.cat([j, i, diag])
    vals = torch.cat([values, values, torch.ones(n, dtype=dtype)])
    degree = torch.zeros(n, dtype=dtype).index_add_(0, rows, vals)
    vals = vals / degree[rows]
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n, n), check_invariants=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        return coo.coalesce().to_sparse_csr()


def random_walk(x: torch.Tensor, affinity: torch.Tensor, radius: int, beta: float,
                n_squarings: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``x · T^(2^n_squarings)`` for scores ``x`` (K×h×w), as 2^n sparse products (module doc).

    Returns K×h×w in ``x``'s dtype.
    """
    k, h, w = x.shape
    if affinity.shape[1:] != (h, w):
        raise CamflowInputError(f"affinity grid {tuple(affinity.shape[1:])} differs from the "
                                f"scores' {(h, w)}")
    m = transition_matrix(affinity.cpu(), radius, beta, dtype)
    y = x.reshape(k, h * w).t().to(dtype).cpu().contiguous()
    for _ in range(2 ** n_squarings):
        y = m @ y
    return y.t().reshape(k, h, w).to(x.dtype)


def boundary_affinity(boundary: torch.Tensor, radius: int) -> torch.Tensor:
    """IRN's pair affinity 1 − max boundary on the line between the pixels (Sec. 3.3, Eq. 3),
    n_offsets×h×w for a boundary map h×w (pairs leaving the map: 0)."""
    return 1.0 - grid_path_max(boundary, radius)


def irn_propagate(cams: torch.Tensor, boundary: torch.Tensor, size: tuple[int, int],
                  radius: int = 5, beta: float = 10, n_squarings: int = 8,
                  bg_threshold: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """IRN's semantic pseudo labels from stride-4 CAMs (K×h×w) and the boundary map (h×w).

    The CAMs times (1 − boundary) are propagated (IRN Sec. 4), upsampled ×4 (bilinear) and
    cropped to ``size``, divided by their global maximum, and a constant background score
    ``bg_threshold`` is stacked in front.  Returns ``(scores K×H×W in [0, 1], channel map H×W)``
    with channel 0 background and i the i-th CAM.
    """
    h, w = size
    if cams.shape[0] == 0:
        return cams.new_zeros((0, h, w)), torch.zeros((h, w), dtype=torch.long)
    rw = random_walk(cams * (1 - boundary), boundary_affinity(boundary, radius), radius, beta,
                     n_squarings)
    up = F.interpolate(rw[None], scale_factor=4, mode="bilinear", align_corners=False)[0]
    up = up[:, :h, :w]
    up = up / up.max().clamp(min=1e-5)
    bg = torch.full((1, h, w), bg_threshold, dtype=up.dtype)
    return up, torch.cat([bg, up]).argmax(dim=0)


def psa_propagate(cams: torch.Tensor, affinity: torch.Tensor, radius: int = 5, beta: float = 8,
                  n_squarings: int = 8, alpha: float = 16,
                  stride: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """PSA's semantic pseudo labels from full-resolution CAMs (K×H×W) and AffinityNet's pair
    affinities on the stride-8 grid of the zero-padded image (n_offsets×⌈H/8⌉×⌈W/8⌉).

    Background score (1 − max CAM)^α is stacked in front (PSA Sec. 3.3, α = 16), the stack is
    average-pooled to the affinity grid, propagated, upsampled (bilinear) and cropped; the
    label is the argmax (PSA code: ``infer_aff.py``).  The walk's matrix is PSA's
    (``network/resnet38_aff.py``, ``Net.forward(to_dense=True)``): only the pairs that start
    at :func:`~camflow.refine.pairs.psa_pair_sources` (``get_indices_of_pairs``), each
    entered at (i, j) and (j, i), and 1 on the diagonal; the affinities of every other
    (pixel, offset) are not used.  The walk runs in float64 for float64 CAMs, else float32.
    Returns ``(scores (K+1)×H×W normalised to sum 1 per pixel, channel map H×W)`` with
    channel 0 background.
    """
    k, h, w = cams.shape
    bg = (1 - cams.max(dim=0, keepdim=True).values) ** alpha if k else cams.new_ones((1, h, w))
    stack = torch.cat([bg, cams])
    gh, gw = affinity.shape[1:]
    padded = F.pad(stack, (0, gw * stride - w, 0, gh * stride - h))
    if padded.shape[1:] != (gh * stride, gw * stride):
        raise CamflowInputError(f"affinity grid {gh}x{gw} does not cover a {h}x{w} image at "
                                f"stride {stride}")
    pooled = F.avg_pool2d(padded[None], stride)[0]
    affinity = affinity * psa_pair_sources(gh, gw, radius).to(affinity.device)
    rw = random_walk(pooled, affinity, radius, beta, n_squarings,
                     torch.promote_types(pooled.dtype, torch.float32))
    up = F.interpolate(rw[None], size=(gh * stride, gw * stride), mode="bilinear",
                       align_corners=False)[0, :, :h, :w]
    scores = up / up.sum(dim=0, keepdim=True).clamp(min=1e-12)
    return scores, scores.argmax(dim=0)
