"""Benchmark the HDF5 CAM cache against per-image float32 .npy files (the common practice).

Measures, for one trained classifier on the configured dataset, from the same float32 CAMs:

* bytes per image of both stores (HDF5: float16 + gzip; .npy: float32 dicts as IRN writes);
* the time to read every image's full-resolution CAMs back (median of repeats);
* seed mIoU at every swept threshold from both stores (float16 must not change the result);
* CAM inference throughput (images/s) with the configured TTA, per batch size.

Run after the demo (it reuses its checkpoint):

    .venv/bin/python benchmarks/cam_cache.py --images 300
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from camflow.cache import CamCache, CamCacheWriter
from camflow.data import build_dataset
from camflow.evaluate import ConfusionMatrix, cam_to_seed, segmentation_metrics
from camflow.io import write_json
from camflow.methods.base import load_method
from camflow.methods.cam import (
    fuse_tta,
    make_cams,
    max_normalize,
    strided_size,
)


def write_both_stores(model, dataset, split: str, ids: list[str], cams_cfg: dict,
                      h5_path: Path, npy_dir: Path, device: torch.device) -> int:
    """Compute float32 TTA CAMs once; write them as IRN-style .npy dicts and as the HDF5
    cache. Returns the bytes of the .npy store."""
    source = model.cam
    total = 0
    with CamCacheWriter(h5_path, dataset.class_names, {"benchmark": True}) as writer, \
            torch.no_grad():
        for image_id in ids:
            image = dataset.load_image(image_id)
            keys = np.asarray(dataset.image_labels(split)[image_id], dtype=np.int64)
            classes = torch.as_tensor(keys - 1)
            h, w = image.shape[:2]
            full, small = fuse_tta(lambda t, c=classes: source(t, c), [image],
                                   cams_cfg["scales"], cams_cfg["flip"],
                                   [((h, w), cams_cfg["grid"]), (strided_size((h, w), 4), 1)],
                                   device)
            full = max_normalize(full[0]).cpu().numpy()
            small = max_normalize(small[0]).cpu().numpy()
            writer.add(image_id, keys, stride4=small, full=full)
            path = npy_dir / f"{image_id}.npy"
            np.save(path, {"keys": keys, "cam": small, "high_res": full})
            total += path.stat().st_size
    return total


def read_h5(cache_path: Path, ids: list[str]) -> float:
    start = time.perf_counter()
    with CamCache(cache_path) as cache:
        for image_id in ids:
            cache.read(image_id, "full")
    return time.perf_counter() - start


def read_npy(store: Path, ids: list[str]) -> float:
    start = time.perf_counter()
    for image_id in ids:
        np.load(store / f"{image_id}.npy", allow_pickle=True).item()["high_res"]
    return time.perf_counter() - start


def miou_curve(load, dataset, split: str, ids: list[str], thresholds: list[float]) -> list[float]:
    n = dataset.num_classes + 1
    confs = [ConfusionMatrix(n) for _ in thresholds]
    for image_id in ids:
        keys, cams = load(image_id)
        gt = dataset.load_mask(image_id, split)
        for conf, t in zip(confs, thresholds, strict=True):
            conf.update(cam_to_seed(keys, cams, t), gt)
    names = dataset.class_names
    return [segmentation_metrics(c.matrix, names)["miou"] for c in confs]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--classifier", default="resnet_small")
    parser.add_argument("--images", type=int, default=300, help="images to measure")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--out", default="results/benchmarks/cam_cache.json")
    args = parser.parse_args(argv)

    config = yaml.safe_load(Path(args.config).read_text())
    name = config["dataset"]
    ds_cfg = config["datasets"][name]
    split = ds_cfg["eval_split"]
    run_dir = Path("results") / name / args.classifier
    dataset = build_dataset(name, ds_cfg["root"], cache_dir=f"results/{name}/labels")
    ids = dataset.ids(split)[: args.images]
    thresholds = config["evaluation"]["thresholds"]
    result: dict = {"dataset": name, "classifier": args.classifier, "images": len(ids)}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_method(run_dir / "classifier.pt", device)
    cams_cfg = config["cams"]

    with tempfile.TemporaryDirectory() as tmp:
        store, cache_path = Path(tmp) / "npy", Path(tmp) / "cams.h5"
        store.mkdir()
        npy_bytes = write_both_stores(model, dataset, split, ids, cams_cfg, cache_path, store,
                                      device)
        h5_bytes = os.path.getsize(cache_path)
        cache = CamCache(cache_path)
        h5_times = [read_h5(cache_path, ids) for _ in range(args.repeats)]
        npy_times = [read_npy(store, ids) for _ in range(args.repeats)]
        npy_curve = miou_curve(
            lambda i: (lambda d: (d["keys"], d["high_res"]))(
                np.load(store / f"{i}.npy", allow_pickle=True).item()),
            dataset, split, ids, thresholds)
        h5_curve = miou_curve(lambda i: cache.read(i, "full"), dataset, split, ids, thresholds)
        cache.close()
    result["bytes_per_image"] = {"hdf5": h5_bytes / len(ids), "npy": npy_bytes / len(ids)}
    result["read_ms_per_image"] = {"hdf5": 1e3 * statistics.median(h5_times) / len(ids),
                                   "npy": 1e3 * statistics.median(npy_times) / len(ids)}
    result["miou"] = {"thresholds": thresholds, "hdf5": h5_curve, "npy": npy_curve,
                      "max_abs_diff": max(abs(a - b) for a, b in zip(h5_curve, npy_curve,
                                                                     strict=True))}

    throughput = {}
    with tempfile.TemporaryDirectory() as tmp:
        for bs in args.batch_sizes:
            start = time.perf_counter()
            make_cams(model.cam, _Subset(dataset, split, ids), split,
                      Path(tmp) / f"b{bs}.h5",
                      scales=cams_cfg["scales"], flip=cams_cfg["flip"], batch_size=bs,
                      grid=cams_cfg["grid"], device=device, progress=False)
            throughput[str(bs)] = len(ids) / (time.perf_counter() - start)
    result["cam_images_per_s"] = {"device": str(device), "scales": cams_cfg["scales"],
                                  "flip": cams_cfg["flip"], "by_batch_size": throughput}
    write_json(args.out, result)
    b, r = result["bytes_per_image"], result["read_ms_per_image"]
    print(f"images: {len(ids)}  ({name}, {args.classifier})")
    print(f"bytes/image   HDF5 {b['hdf5']:10.0f}   npy {b['npy']:10.0f}   "
          f"ratio npy/HDF5 {b['npy'] / b['hdf5']:.2f}")
    print(f"read ms/image HDF5 {r['hdf5']:10.3f}   npy {r['npy']:10.3f}   "
          f"ratio npy/HDF5 {r['npy'] / r['hdf5']:.2f}")
    print(f"seed mIoU max |HDF5 - npy| over {len(thresholds)} thresholds: "
          f"{result['miou']['max_abs_diff']:.2e}  (best HDF5 {max(h5_curve):.4f}, "
          f"npy {max(npy_curve):.4f})")
    for bs, ips in throughput.items():
        print(f"CAM inference batch {bs:>3}: {ips:7.1f} images/s on {device}")
    print(f"wrote {args.out}")


class _Subset:
    """The first N ids of a split, for timing inference on a fixed number of images."""

    def __init__(self, dataset, split: str, ids: list[str]) -> None:
        self._dataset, self._split, self._ids = dataset, split, ids
        self.class_names = dataset.class_names
        self.name = dataset.name

    def ids(self, split: str) -> list[str]:
        return list(self._ids)

    def image_labels(self, split: str) -> dict[str, tuple[int, ...]]:
        return self._dataset.image_labels(split)

    def load_image(self, image_id: str) -> np.ndarray:
        return self._dataset.load_image(image_id)


if __name__ == "__main__":
    main()
