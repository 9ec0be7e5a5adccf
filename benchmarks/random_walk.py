"""Benchmark the sparse random walk against the dense HW × HW formulation of PSA / IRN.

For each grid size (the stride-4 grid of a square image) both implementations propagate the
same 3-class scores with IRN's settings (radius 5, β = 10, 8 squarings) in a fresh
subprocess, which reports the median wall time of ``--repeats`` runs and the growth of its
peak resident memory (``ru_maxrss``) over the baseline after imports.  The dense walk is run
only where its N × N matrices fit comfortably (``--dense-max``); above that its memory is the
size of one float32 N × N matrix (the walk needs at least two).  The two outputs are compared
(max absolute difference).

    .venv/bin/python benchmarks/random_walk.py --sizes 32 64 96 250
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, statistics, sys, time
import torch
from camflow.refine.random_walk import boundary_affinity, random_walk
from camflow.refine.pairs import neighbour_offsets

method, side, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
radius, beta, n_sq = 5, 10.0, 8
torch.manual_seed(0)
boundary = torch.rand(side, side) ** 4
cams = torch.rand(3, side, side)
aff = boundary_affinity(boundary, radius)


def dense():
    n = side * side
    a = torch.eye(n)
    for o, (dy, dx) in enumerate(neighbour_offsets(radius)):
        ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
        ty, tx = ys + dy, xs + dx
        ok = (ty < side) & (tx >= 0) & (tx < side)
        i = (ys * side + xs)[ok]
        j = (ty * side + tx)[ok]
        a[i, j] = aff[o][ok]
        a[j, i] = aff[o][ok]
    t = a ** beta
    t = t / t.sum(dim=0, keepdim=True)
    for _ in range(n_sq):
        t = t @ t
    return (cams.reshape(3, n) @ t).reshape(3, side, side)


def sparse():
    return random_walk(cams, aff, radius, beta, n_sq)


fn = dense if method == "dense" else sparse
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - start)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
torch.save(out, sys.argv[4])
print(json.dumps({"seconds": statistics.median(times), "peak_mb": (peak - base) / 1024}))
"""


def run(method: str, side: int, repeats: int, out: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, method, str(side), str(repeats), out],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 96, 250],
                        help="grid sides (stride-4 grid of a 4x larger image)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dense-max", type=int, default=96,
                        help="largest grid side for which the dense walk is run")
    args = parser.parse_args()
    import tempfile

    import torch

    print("| image | grid | pixels N | sparse s | sparse MB | dense s | dense MB | "
          "dense/sparse time | max diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.sizes:
            n = side * side
            s = run("sparse", side, args.repeats, f"{tmp}/s.pt")
            if side <= args.dense_max:
                d = run("dense", side, max(1, args.repeats // 3), f"{tmp}/d.pt")
                diff = (torch.load(f"{tmp}/s.pt") - torch.load(f"{tmp}/d.pt")).abs().max()
                dense = (f"{d['seconds']:.2f} | {d['peak_mb']:.0f} | "
                         f"{d['seconds'] / s['seconds']:.1f}x | {diff:.1e}")
            else:
                dense = f"not run | ≥ {2 * 4 * n * n / 2**20:,.0f} (two N×N) | - | -"
            print(f"| {4 * side}² | {side}² | {n:,} | {s['seconds']:.2f} | "
                  f"{s['peak_mb']:.0f} | {dense} |", flush=True)


if __name__ == "__main__":
    main()
