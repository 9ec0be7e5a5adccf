"""Benchmark Fully-CAM against the CAM head: throughput at equal TTA and peak memory.

* ``throughput``: images/s of the ``cam`` and ``fullcam`` sources of the same network (the
  configured CPU classifier's architecture, fixed random weights: speed does not depend on
  training) on the same random images of the synthetic benchmark's size, with the configured
  test-time augmentation; the two alternate after a warm-up, median and spread of the runs.
* ``memory``: peak memory of one 512×512 image through ResNet-50 with every conv layer
  hooked, four scales and flips — the case Fully-CAM (Song et al.) needs to fit — against the
  plain CAM, each in a fresh process, above the baseline after imports, model and image
  (``harness.peak_memory``; on CUDA ``torch.cuda.max_memory_allocated``).

Both use the pipeline's thread count (``runtime.workers``, the CAM job's ``threads:``).

    .venv/bin/python benchmarks/fullcam.py --images 16
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from harness import alternate, peak_memory, use_threads, write_result

from camflow.methods.cam import CAM, fuse_tta, strided_size
from camflow.methods.sources import build_source

SCALES = [1.0, 0.5, 1.5, 2.0]
RESNET50 = {"backbone": {"arch": "resnet50", "strides": [2, 2, 2, 1], "weights": "none"},
            "freeze_bn_stats": True, "trainable_from_stage": 3}


def network(cfg: dict[str, Any], num_classes: int, device: torch.device) -> CAM:
    torch.manual_seed(0)
    trained = CAM(cfg, num_classes).to(device)
    trained.classifier.eval()
    return trained


def tta(source, image: np.ndarray, classes: torch.Tensor, scales: list[float], flip: bool,
        grid: int, device: torch.device) -> None:
    size = image.shape[:2]
    with torch.no_grad():
        fuse_tta(lambda x: source(x, classes), [image], scales, flip,
                 [(size, grid), (strided_size(size, 4), 1)], device)


def throughput(config: dict, classifier: str, n_images: int, side: int, repeats: int,
               device: torch.device) -> dict:
    cfg = config["classifiers"][classifier]
    trained = network(cfg, 8, device)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(n_images)]
    classes = torch.tensor([0, 1], device=device)
    tta_cfg = config["cams"]
    sources = {name: build_source(trained, {"chunk": 1, **config["sources"][name]})
               for name in ("cam", "fullcam")}

    def run(name: str) -> None:
        for image in images:
            tta(sources[name], image, classes, tta_cfg["scales"], tta_cfg["flip"],
                tta_cfg["grid"], device)

    timings = alternate({name: (lambda n=name: run(n)) for name in sources}, repeats=repeats)
    rates = {name: t.per(n_images) for name, t in timings.items()}
    return {"classifier": classifier, "images": n_images, "side": side,
            "scales": tta_cfg["scales"], "flip": tta_cfg["flip"],
            "timings": {name: t.as_dict() for name, t in timings.items()},
            "images_per_s": rates,
            "ratio_cam_over_fullcam": rates["cam"]["median"] / rates["fullcam"]["median"]}


def hooked_tta_setup(method: str, size: int, device: str) -> tuple:
    """ResNet-50, its source and a random image: built before the memory baseline."""
    dev = torch.device(device)
    trained = network(RESNET50, 20, dev)
    source = build_source(trained, {"method": method, "layers": "all", "chunk": 1})
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    return source, image, dev, sum(isinstance(m, torch.nn.Conv2d)
                                   for m in trained.classifier.backbone.modules())


def hooked_tta(state: tuple, method: str, size: int, device: str) -> dict:
    """One image, four scales + flip, two classes (run in a fresh process)."""
    source, image, dev, n_convs = state
    tta(source, image, torch.tensor([0, 1], device=dev), SCALES, True, 16, dev)
    out = {"hooked_convs": n_convs if method == "fullcam" else 0}
    if dev.type == "cuda":
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--classifier", default="resnet_small")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--side", type=int, default=128, help="image side for the throughput")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=512, help="image side for the memory run")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    config = yaml.safe_load(Path(args.config).read_text())
    threads = max(1, int(config["runtime"]["workers"]))
    with use_threads(threads):
        result = {"device": args.device, "threads": threads,
                  "throughput": throughput(config, args.classifier, args.images, args.side,
                                           args.repeats, torch.device(args.device))}
    result["memory_resnet50"] = {"size": args.size, "sources": {
        method: peak_memory(__file__, "hooked_tta",
                            {"method": method, "size": args.size, "device": args.device},
                            threads=threads)
        for method in ("cam", "fullcam")}}
    path = write_result("fullcam", result)
    t, m = result["throughput"], result["memory_resnet50"]
    print(f"{args.classifier}, {t['images']} images of {t['side']}², scales {t['scales']} "
          f"flip {t['flip']}, {threads} threads:")
    for source, rate in t["images_per_s"].items():
        print(f"  {source:8s} {rate['median']:8.2f} images/s ({rate['min']:.2f}–{rate['max']:.2f})")
    print(f"  cam / fullcam throughput ratio {t['ratio_cam_over_fullcam']:.2f}")
    print(f"ResNet-50, one {args.size}x{args.size} image, scales {SCALES} + flip, 2 classes:")
    for method, r in m["sources"].items():
        print(f"  {method:8s} {r['above_baseline_mib']:9.1f} MiB above baseline "
              f"(baseline {r['baseline_mib']:.0f})  hooked convs {r['returned']['hooked_convs']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
