"""What keying the image-level labels cache by content costs (issue: stale label caches).

On a VOC-sized split (10,582 masks of 375×500, as ``train_aug``) in a temporary folder, times
the check a warm cache now makes — :func:`camflow.io.stat_fingerprint` of every mask,
one ``stat`` each — against recomputing the labels from the masks (read + decode + classes),
which is what the check saves.  The two alternate after a warm-up (``harness.alternate``);
prints and writes (``results/benchmarks/labels_cache.json``) the medians, spreads and ratio.
The masks are read from the page cache (written just before, read once in the warm-up).

    .venv/bin/python benchmarks/labels_cache.py --images 10582
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from harness import alternate, write_result
from PIL import Image

from camflow.data.base import labels_from_mask
from camflow.io import read_label_png, stat_fingerprint


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

        timings = alternate({
            "fingerprint": lambda: stat_fingerprint(paths),
            "recompute": lambda: [labels_from_mask(read_label_png(p, p.stem), 20) for p in paths],
        }, repeats=args.repeats)
    check, recompute = timings["fingerprint"], timings["recompute"]
    result = {"images": args.images, "fingerprint": check.as_dict(),
              "recompute": recompute.as_dict(),
              "recompute_over_fingerprint": recompute.median / check.median}
    path = write_result("labels_cache", result)
    print(json.dumps({"images": args.images, "fingerprint_s": round(check.median, 4),
                      "recompute_s": round(recompute.median, 3),
                      "recompute_over_fingerprint": round(recompute.median / check.median, 1)}))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
