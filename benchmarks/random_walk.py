"""Benchmark camflow's sparse random walk against IRN's dense one, as IRN publishes it.

For each grid side (the stride-4 grid of a square image 4× larger) both walks propagate the
same 3-class scores with IRN's settings (radius 5, β = 10, 2⁸ steps) from the same boundary
map, including the pair affinities 1 − max boundary on the path (:func:`boundary_affinity`,
IRN Eq. 3):

* ``sparse``: :func:`camflow.refine.random_walk.random_walk` (CSR D⁻¹A times the scores,
  2⁸ times);
* ``dense``: IRN's ``misc/indexing.py`` ``propagate_to_edge`` procedure, written here from
  its description — the affinities scattered into a dense (h + r)·(w + 2r) square matrix of
  the *padded* grid (a sparse COO tensor made dense, identity on the diagonal), cropped to
  the image's N × N, raised to β, column-normalised, squared 8 times, then one product with
  the scores. Its memory is therefore IRN's, padded matrix included.

Timings use the pipeline's thread count (one thread per random-walk worker process,
``camflow/refine/pseudo_masks.py``), alternate the two walks after a warm-up of each, and
keep every run (median and spread). Peak memory is measured in a fresh process per walk
and size, above the baseline after imports and inputs. The dense walk runs up to
``--dense-max``; above it, its memory is given as the size of its padded matrix (a lower
bound). The outputs are compared (max absolute difference).

    .venv/bin/python benchmarks/random_walk.py --sizes 32 64 96 --dense-max 64
"""

from __future__ import annotations

import argparse

import torch
from harness import alternate, peak_memory, use_threads, write_result

from camflow.refine.pairs import neighbour_offsets
from camflow.refine.random_walk import boundary_affinity, random_walk

RADIUS, BETA, SQUARINGS = 5, 10.0, 8
THREADS = 1  # camflow/refine/pseudo_masks.py: one thread per worker process


def inputs(side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A boundary map with sparse strong edges and 3 class score maps, fixed seed."""
    gen = torch.Generator().manual_seed(0)
    boundary = torch.rand(side, side, generator=gen) ** 4
    cams = torch.rand(3, side, side, generator=gen)
    return boundary, cams


def sparse_walk(boundary: torch.Tensor, cams: torch.Tensor) -> torch.Tensor:
    return random_walk(cams, boundary_affinity(boundary, RADIUS), RADIUS, BETA, SQUARINGS)


def dense_walk(boundary: torch.Tensor, cams: torch.Tensor) -> torch.Tensor:
    """IRN's dense walk (module doc): padded dense affinity, cropped, T = A^β D⁻¹, T^(2^8)."""
    h, w = boundary.shape
    r = RADIUS
    hp, wp = h + r, w + 2 * r  # IRN pads right/left by r and the bottom by r
    aff = boundary_affinity(boundary, r)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    src_p = ys * wp + (xs + r)  # flat index of each image pixel on the padded grid
    rows, cols, vals = [], [], []
    for o, (dy, dx) in enumerate(neighbour_offsets(r)):
        ty, tx = ys + dy, xs + dx
        inside = (ty < h) & (tx >= 0) & (tx < w)
        rows.append(src_p[inside])
        cols.append((ty * wp + (tx + r))[inside])
        vals.append(aff[o][inside])
    n_p = hp * wp
    i, j, v = torch.cat(rows), torch.cat(cols), torch.cat(vals)
    diag = torch.arange(n_p)
    dense = torch.sparse_coo_tensor(torch.stack([torch.cat([i, diag, j]),
                                                 torch.cat([j, diag, i])]),
                                    torch.cat([v, torch.ones(n_p), v]), (n_p, n_p),
                                    check_invariants=False).to_dense()
    dense = dense.view(hp, wp, hp, wp)[:-r, r:-r, :-r, r:-r].reshape(h * w, h * w)
    scaled = dense ** BETA
    trans = scaled / scaled.sum(dim=0, keepdim=True)
    for _ in range(SQUARINGS):
        trans = trans @ trans
    return (cams.reshape(3, h * w) @ trans).reshape(3, h, w)


WALKS = {"sparse": sparse_walk, "dense": dense_walk}


def walk_setup(method: str, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs for :func:`walk`, built before the fresh process's memory baseline."""
    return inputs(side)


def walk(state: tuple[torch.Tensor, torch.Tensor], method: str, side: int) -> None:
    """One walk in a fresh process (:func:`harness.peak_memory`)."""
    WALKS[method](*state)


def measure(side: int, dense: bool, repeats: int) -> dict:
    boundary, cams = inputs(side)
    methods = ["sparse", "dense"] if dense else ["sparse"]
    with use_threads(THREADS):
        timings = alternate({m: (lambda m=m: WALKS[m](boundary, cams)) for m in methods},
                            repeats=repeats)
        outputs = {m: WALKS[m](boundary, cams) for m in methods}
    n = side * side
    row: dict = {"side": side, "image_side": 4 * side, "pixels": n}
    for m in methods:
        row[m] = {**timings[m].as_dict(),
                  "memory": peak_memory(__file__, "walk", {"method": m, "side": side},
                                        threads=THREADS)}
    if dense:
        row["dense_over_sparse_time"] = timings["dense"].median / timings["sparse"].median
        row["max_abs_diff"] = float((outputs["dense"] - outputs["sparse"]).abs().max())
    else:
        n_p = (side + RADIUS) * (side + 2 * RADIUS)
        row["dense_padded_matrix_mib"] = 4 * n_p * n_p / 2**20
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 96],
                        help="grid sides (the stride-4 grid of a 4x larger image)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dense-max", type=int, default=64,
                        help="largest grid side the dense walk is run on (96: ~6 min a run)")
    args = parser.parse_args(argv)
    rows = []
    print("| image | grid N | sparse s | sparse MiB | dense s | dense MiB | dense/sparse | diff |")
    print("|---|---|---|---|---|---|---|---|")
    for side in args.sizes:
        row = measure(side, side <= args.dense_max, args.repeats)
        rows.append(row)
        s = row["sparse"]
        if "dense" in row:
            d = row["dense"]
            dense = (f"{d['median_s']:.2f} | {d['memory']['above_baseline_mib']:.0f} | "
                     f"{row['dense_over_sparse_time']:.1f}x | {row['max_abs_diff']:.1e}")
        else:
            dense = f"not run | ≥ {row['dense_padded_matrix_mib']:,.0f} | - | -"
        print(f"| {4 * side}² | {row['pixels']:,} | {s['median_s']:.3f} | "
              f"{s['memory']['above_baseline_mib']:.0f} | {dense} |", flush=True)
    path = write_result("random_walk", {"threads": THREADS, "radius": RADIUS, "beta": BETA,
                                        "squarings": SQUARINGS, "repeats": args.repeats,
                                        "sizes": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
