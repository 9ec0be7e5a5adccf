"""What keying the image-level labels cache by content costs (issue: stale label caches).

On a VOC-sized split (10,582 masks of 375×500, as ``train_aug``) in a temporary folder, times
the check a warm cache now makes — :func:`camflow.data.voc.stat_fingerprint` of every mask,
one ``stat`` each — against recomputing the labels from the masks (read + decode + classes),
which is what the check saves.  Prints the medians of ``--repeats`` runs and their ratio.

    .venv/bin/python benchmarks/labels_cache.py --images 10582
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from camflow.data.base import labels_from_mask
from camflow.data.voc import stat_fingerprint
from camflow.io import read_label_png


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10582)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.images):
            mask = np.zeros((375, 500), np.uint8)
            mask[100:250, 150:350] = rng.integers(1, 21)
            paths.append(Path(tmp).resolve() / f"{i:06d}.png")
            Image.fromarray(mask, mode="L").save(paths[-1])

        def timed(fn) -> float:
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            return statistics.median(times)

        check = timed(lambda: stat_fingerprint(paths))
        recompute = timed(lambda: [labels_from_mask(read_label_png(p, p.stem), 20)
                                   for p in paths])
    print(json.dumps({"images": args.images, "fingerprint_s": round(check, 4),
                      "recompute_s": round(recompute, 3),
                      "recompute_over_fingerprint": round(recompute / check, 1)}))


if __name__ == "__main__":
    main()
