"""Benchmark Fully-CAM against the CAM head: throughput at equal TTA and peak memory.

Two measurements:

* ``throughput``: images/s of the ``cam`` and ``fullcam`` sources of a trained classifier (the
  demo's by default) on the first N images, with the same test-time augmentation;
* ``memory``: peak memory of one 512×512 image through ResNet-50 with every conv layer hooked,
  four scales and flips — the case Fully-CAM (Song et al.) needs to fit — against the plain
  CAM. Each configuration runs in a fresh process so its peak resident set size (CPU) or
  ``torch.cuda.max_memory_allocated`` (GPU) is its own.

    .venv/bin/python benchmarks/fullcam.py --images 100
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from camflow.data import build_dataset
from camflow.io import write_json
from camflow.methods.base import load_method
from camflow.methods.cam import CAM, fuse_tta, make_cams, strided_size
from camflow.methods.sources import build_source

SCALES = [1.0, 0.5, 1.5, 2.0]


def throughput(config: dict, classifier: str, images: int, device: torch.device) -> dict:
    name = config["dataset"]
    ds_cfg = config["datasets"][name]
    split = ds_cfg["eval_split"]
    dataset = build_dataset(name, ds_cfg["root"], cache_dir=f"results/{name}/labels")
    model = load_method(Path("results") / name / classifier / "classifier.pt", device)
    ids = dataset.ids(split)[:images]

    class Subset:
        class_names = dataset.class_names

        def ids(self, _split: str) -> list[str]:
            return ids

        def image_labels(self, s: str) -> dict:
            return dataset.image_labels(s)

        def load_image(self, image_id: str):
            return dataset.load_image(image_id)

    out = {}
    tta = config["cams"]
    with tempfile.TemporaryDirectory() as tmp:
        for source in ("cam", "fullcam"):
            spec = {"chunk": 1, **tta, **config["sources"][source]}
            start = time.perf_counter()
            make_cams(build_source(model, spec), Subset(), split, Path(tmp) / f"{source}.h5",
                      scales=spec["scales"], flip=spec["flip"], batch_size=spec["batch_size"],
                      grid=spec["grid"], device=device, progress=False)
            out[source] = len(ids) / (time.perf_counter() - start)
    return {"images": len(ids), "scales": tta["scales"], "flip": tta["flip"],
            "images_per_s": out, "ratio_cam_over_fullcam": out["cam"] / out["fullcam"]}


def memory_child(method: str, size: int, device: str) -> None:
    """One configuration in this process; prints its peak memory in MiB as JSON."""
    dev = torch.device(device)
    trained = CAM({"backbone": {"arch": "resnet50", "strides": [2, 2, 2, 1],
                                "weights": "none"},
                   "freeze_bn_stats": True, "trainable_from_stage": 3}, 20).to(dev)
    model = trained.classifier.eval()
    spec = {"method": method, "layers": "all", "chunk": 1}
    source = build_source(trained, spec)
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    classes = torch.tensor([0, 1], device=dev)
    n_layers = sum(isinstance(m, torch.nn.Conv2d) for m in model.backbone.modules())
    start = time.perf_counter()
    with torch.no_grad():
        fuse_tta(lambda x: source(x, classes), [image], SCALES, True,
                 [((size, size), 16), (strided_size((size, size), 4), 1)], dev)
    seconds = time.perf_counter() - start
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"method": method, "size": size, "peak_mib": peak, "seconds": seconds,
                      "hooked_convs": n_layers if method == "fullcam" else 0}))


def memory(size: int, device: str) -> dict:
    results = {}
    for method in ("cam", "fullcam"):
        proc = subprocess.run([sys.executable, __file__, "--memory-child", method,
                               "--size", str(size), "--device", device],
                              capture_output=True, text=True, check=True)
        results[method] = json.loads(proc.stdout.strip().splitlines()[-1])
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--classifier", default="resnet_small")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=512, help="image side for the memory run")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="results/benchmarks/fullcam.json")
    parser.add_argument("--memory-child", choices=["cam", "fullcam"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, args.size, args.device)
        return
    config = yaml.safe_load(Path(args.config).read_text())
    result = {"device": args.device,
              "throughput": throughput(config, args.classifier, args.images,
                                       torch.device(args.device)),
              "memory_resnet50": memory(args.size, args.device)}
    write_json(args.out, result)
    t, m = result["throughput"], result["memory_resnet50"]
    print(f"{args.classifier}, {t['images']} images, scales {t['scales']} flip {t['flip']}:")
    for source, ips in t["images_per_s"].items():
        print(f"  {source:8s} {ips:8.2f} images/s")
    print(f"  cam / fullcam throughput ratio {t['ratio_cam_over_fullcam']:.2f}")
    print(f"ResNet-50, one {args.size}x{args.size} image, scales {SCALES} + flip, 2 classes:")
    for method, r in m.items():
        print(f"  {method:8s} peak {r['peak_mib']:9.1f} MiB  {r['seconds']:6.2f} s  "
              f"hooked convs {r['hooked_convs']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
