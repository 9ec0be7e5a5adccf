"""Benchmark CAM inference: camflow's ``make_cams`` against IRN's ``step/make_cam.py``.

Both run the same ResNet-50 (IRN strides (2, 2, 2, 1), fixed random weights and batch-norm
statistics: speed does not depend on training) on the same random uint8 images, scales
1.0, 0.5, 1.5, 2.0 × flip, with the pipeline's threads (``runtime.workers``: the
``make_cams`` job's ``threads:``):

* ``camflow``: :func:`camflow.methods.cam.make_cams` with the ``cam`` source
  (:func:`camflow.methods.sources.build_source`) and ``config.yaml``'s ``cams`` settings
  (``batch_size``, ``grid``, ``dtype``), the DataLoader workers the job has, writing its
  HDF5 cache — what a user waits for.
* ``irn``: IRN's procedure, written here from its published algorithm: per image and scale
  a PIL-bicubic rescale, ImageNet normalisation in float64 stored as float32, HWC → CHW with
  ``np.transpose`` and the image stacked with its flip by ``np.stack`` and collated as IRN's
  DataLoader does (so the tensor has IRN's strides), one forward of the pair, ReLU of the CAM
  conv, the flip flipped back and added; each scale upsampled bilinearly to the stride-4 size
  and to the full size rounded up to 16 then cropped, summed; the image's classes kept and
  divided by their max + 1e-5.  The network is the same, unfolded, in its default layout.
* ``bare``: camflow's network (as its ``cam`` source runs it) on the same pixels, every
  scale × flip, already normalised: no pre- or post-processing (with the heap that
  ``make_cams`` keeps, so the ceiling is not lowered by page faults camflow avoids).
* ``matmul``: float32 2048² GEMMs, alternated with the others so the CPU's matmul rate is
  measured under the same load as the rest.

On the CPU, camflow, IRN and the bare forward each keep a Python process of their own for
the whole alternation (:class:`harness.Isolated`; the GEMMs run in this one).  In one shared
process IRN's speed depended on what ran before it: glibc unmaps IRN's large buffers after
each use, 0.5–0.75 M page faults per 500×375 image in a process of its own, none after
camflow's ``make_cams`` had grown the heap, 3.6 against 2.7 s per image.  Within one process
IRN's speed is steady, but from one process to the next it need not be: at 320² its
processes of one session faulted anywhere from 0 to 190 k pages per image (0.63–0.70
images/s), eight of a later session 150–226 k (0.53–0.58 images/s) — how glibc serves its
large buffers in that process.  So camflow and IRN each run in
:data:`PROCESSES` processes, alternated with the rest, and their runs are pooled; each
process's median is reported too.  A run is 4 images: a ``make_cams`` call pays ~0.17 s to
start (DataLoader workers, the cache file, growing the heap: 1.63 s for one 320² image
against 1.46 s per image in a call of six), which a job over a data set pays once.

Per size it reports images/s (median, spread, runs) of each, camflow / IRN, camflow's
fraction of the bare forward, the largest absolute difference between camflow's maps
(float32 cache) and IRN's (both max-normalised to [0, 1]), the convolutions' FLOPs per
image and camflow's achieved fraction of this CPU's float32 matmul rate, and the peak
memory of one image of each in a fresh process (``results/benchmarks/cam_inference.json``).
On CUDA a second section (``cam_inference_cuda.json``) compares camflow (bfloat16 autocast,
``batch_size: auto``, a GPU job's DataLoader workers) with the bare forward and with IRN's
one-image float32 path, on 256 images per run (IRN: 32) so that the DataLoader's start-up,
paid once per job, weighs little; without CUDA it is not measured.

    .venv/bin/python benchmarks/cam_inference.py            # about 15 minutes on 2 cores
    python3 benchmarks/cam_inference.py --sections cuda     # a GPU machine: about 2 minutes
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from harness import Isolated, Timing, alternate, peak_memory, use_threads, write_result
from PIL import Image
from torch.utils.data import default_collate
from torch.utils.flop_counter import FlopCounterMode

from camflow.cache import CamCache
from camflow.methods.cam import CAM, batch_size_for, make_cams, network_input, rescaled
from camflow.methods.sources import build_source
from camflow.models.backbones import batch_norms
from camflow.models.inference import retained_heap

CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"
SCALES = (1.0, 0.5, 1.5, 2.0)
#: name → (H, W): a square image and VOC's most common landscape size (500 wide, 375 high)
SIZES = {"320x320": (320, 320), "500x375": (375, 500)}
NUM_CLASSES = 20
LABELS = (3, 8, 15)  # every image's foreground classes (1-based, as the cache keys)
RESNET50 = {"backbone": {"arch": "resnet50", "strides": [2, 2, 2, 1], "weights": "none"},
            "freeze_bn_stats": True, "trainable_from_stage": 3}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def config() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


def gpu_job_workers() -> int:
    """The DataLoader workers of a GPU job as the paper overlays set them."""
    overlay = yaml.safe_load((CONFIG.parent / "config" / "voc12.yaml").read_text())
    return int(overlay["runtime"]["workers"])


def trained_network(device: torch.device) -> CAM:
    """The CAM method with a ResNet-50 whose batch norms have non-trivial statistics and
    affine parameters (a fresh one's are the identity up to ε)."""
    torch.manual_seed(0)
    trained = CAM(RESNET50, NUM_CLASSES)
    with torch.no_grad():
        for bn in batch_norms(trained.classifier):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.0)
            bn.bias.uniform_(-0.1, 0.1)
    trained.classifier.eval()
    return trained.to(device)


def random_images(size: tuple[int, int], n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]


class MemoryImages:
    """The dataset interface ``make_cams`` reads (``ids``, ``image_labels``, ``load_image``,
    ``class_names``) over images held in memory: no decoding is timed on either side."""

    def __init__(self, images: list[np.ndarray]) -> None:
        self.images = {f"img{i:04d}": image for i, image in enumerate(images)}
        self.class_names = ("background", *(f"c{k}" for k in range(1, NUM_CLASSES + 1)))

    def ids(self, split: str) -> list[str]:
        return list(self.images)

    def image_labels(self, split: str) -> dict[str, tuple[int, ...]]:
        return {image_id: LABELS for image_id in self.images}

    def load_image(self, image_id: str) -> np.ndarray:
        return self.images[image_id]


# --- IRN's procedure (step/make_cam.py with voc12/dataloader.py's MSF dataset) --------------

def irn_pairs(image: np.ndarray) -> list[torch.Tensor]:
    """Per scale, the image and its flip as IRN's DataLoader hands them to the network."""
    h, w = image.shape[:2]
    pairs = []
    for s in SCALES:
        size = (int(np.round(h * s)), int(np.round(w * s)))
        scaled = image if size == (h, w) else np.asarray(
            Image.fromarray(image).resize(size[::-1], Image.BICUBIC))
        norm = np.empty_like(scaled, np.float32)
        for c in range(3):
            norm[..., c] = (scaled[..., c] / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        chw = np.transpose(norm, (2, 0, 1))
        pairs.append(default_collate([np.stack([chw, np.flip(chw, -1)], axis=0)])[0])
    return pairs


def irn_cams(net: torch.nn.Module, image: np.ndarray, labels: tuple[int, ...],
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """IRN's stride-4 and full-resolution maps of ``labels`` (1-based), max-normalised."""
    h, w = image.shape[:2]
    outputs = []
    for pair in irn_pairs(image):
        x = F.relu(net.head(net.features(pair.to(device, non_blocking=True))))
        outputs.append(x[0] + x[1].flip(-1))
    strided = (math.ceil(h / 4), math.ceil(w / 4))
    up = (math.ceil(h / 16) * 16, math.ceil(w / 16) * 16)
    stride4 = torch.stack([F.interpolate(o[None], strided, mode="bilinear",
                                         align_corners=False)[0] for o in outputs]).sum(0)
    full = torch.stack([F.interpolate(o[:, None], up, mode="bilinear", align_corners=False)
                        for o in outputs]).sum(0)[:, 0, :h, :w]
    valid = torch.as_tensor([c - 1 for c in labels], device=device)
    stride4, full = stride4[valid], full[valid]
    stride4 = stride4 / (F.adaptive_max_pool2d(stride4, (1, 1)) + 1e-5)
    full = full / (F.adaptive_max_pool2d(full, (1, 1)) + 1e-5)
    return stride4.cpu(), full.cpu()


def run_irn(net: torch.nn.Module, images: list[np.ndarray], device: torch.device) -> list:
    with torch.no_grad():
        return [irn_cams(net, image, LABELS, device) for image in images]


# --- camflow ---------------------------------------------------------------------------------

def run_camflow(source: Callable, images: list[np.ndarray], out: Path, cams: dict[str, Any],
                device: torch.device, workers: int, dtype: str | None = None) -> Path:
    return make_cams(source, MemoryImages(images), "bench", out, scales=list(SCALES),
                     flip=True, batch_size=cams["batch_size"], grid=int(cams["grid"]),
                     device=device, workers=workers, amp=True, progress=False,
                     dtype=dtype or cams["dtype"])


def bare_inputs(images: list[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    """Every scale × flip of ``images`` as camflow's network takes them (channels_last)."""
    per_image = [rescaled(image, SCALES) for image in images]
    inputs = []
    for scale in zip(*per_image, strict=True):
        x = network_input(torch.stack(scale), device)
        inputs.append(torch.cat([x, x.flip(-1)]))
    return inputs


def run_bare(source: Callable, inputs: list[torch.Tensor], classes: torch.Tensor,
             device: torch.device, amp: bool) -> None:
    """The network alone on prepared inputs, with the heap make_cams keeps (retained_heap),
    so the ceiling is not lowered by page faults camflow does not pay."""
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp), \
            retained_heap():
        for x in inputs:
            source(x, classes)
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_bare_batches(source: Callable, batches: list[list[torch.Tensor]],
                     classes: torch.Tensor, device: torch.device, amp: bool) -> None:
    for inputs in batches:
        run_bare(source, inputs, classes, device, amp)


def max_difference(cache: Path, irn: list, n: int) -> dict[str, float]:
    worst = {"full": 0.0, "stride4": 0.0}
    with CamCache(cache) as cams:
        for i in range(n):
            for kind, ref in zip(("stride4", "full"), irn[i], strict=True):
                keys, got = cams.read(f"img{i:04d}", kind)
                assert keys.tolist() == list(LABELS)
                worst[kind] = max(worst[kind], float(np.abs(got - ref.numpy()).max()))
    return worst


def difference_to_irn(source: Callable, trained: CAM, images: list[np.ndarray],
                      cams: dict[str, Any], device: torch.device, workers: int,
                      tmp: str) -> dict[str, float]:
    """camflow's maps (a float32 cache) against IRN's procedure on the same images."""
    exact = run_camflow(source, images, Path(tmp) / "exact.h5", cams, device, workers,
                        dtype="float32")
    return max_difference(exact, run_irn(trained.classifier, images, device), len(images))


def rates(timing: Any, n: int) -> dict[str, Any]:
    per = timing.per(n)
    return {"img_per_s": per["median"], "spread_img_per_s": per["max"] - per["min"],
            "runs_img_per_s": sorted(n / t for t in timing.runs),
            "system_s_per_image": statistics.median(timing.system_s) / n,
            "minor_faults_per_image": statistics.median(timing.minor_faults) / n,
            **timing.as_dict()}


def conv_flops(source: Callable, inputs: list[torch.Tensor], classes: torch.Tensor,
               n: int) -> float:
    """FLOPs of one image's forward passes (every scale × flip), as torch counts them."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        for x in inputs:
            source(x, classes)
    return counter.get_total_flops() / n


GEMM_N, GEMM_TIMES = 2048, 8
#: images of IRN's one-image float32 path per run on CUDA (it is ~10× slower than camflow)
IRN_CUDA_IMAGES = 32
#: processes of camflow and of IRN each (their runs pooled): how fast IRN runs depends on how
#: the allocator serves it in its process (module doc), which one process samples once
PROCESSES = 2


def matmul(a: torch.Tensor, b: torch.Tensor) -> None:
    """GEMM_TIMES float32 GEMMs: one case of the alternation, this CPU's matmul rate."""
    for _ in range(GEMM_TIMES):
        a @ b


# --- each implementation in a process of its own (harness.Isolated, harness.peak_memory) ---

def camflow_setup(size: str, n_images: int, workers: int) -> tuple:
    device = torch.device("cpu")
    return build_source(trained_network(device), {"method": "cam"}), \
        random_images(SIZES[size], n_images)


def camflow(state: tuple, size: str, n_images: int, workers: int) -> None:
    source, images = state
    with tempfile.TemporaryDirectory() as tmp:
        run_camflow(source, images, Path(tmp) / "cams.h5", config()["cams"],
                    torch.device("cpu"), workers=workers)


def irn_setup(size: str, n_images: int) -> tuple:
    return trained_network(torch.device("cpu")).classifier, \
        random_images(SIZES[size], n_images)


def irn(state: tuple, size: str, n_images: int) -> None:
    net, images = state
    run_irn(net, images, torch.device("cpu"))


def bare_setup(size: str, n_images: int) -> tuple:
    """camflow's network and every scale × flip of the images, batched as ``make_cams``
    batches them on this device (``cams.batch_size``)."""
    device = torch.device("cpu")
    source = build_source(trained_network(device), {"method": "cam"})
    images = random_images(SIZES[size], n_images)
    batch = batch_size_for(config()["cams"]["batch_size"], SIZES[size], device)
    return source, [bare_inputs(images[i:i + batch], device)
                    for i in range(0, n_images, batch)]


def bare(state: tuple, size: str, n_images: int) -> None:
    source, batches = state
    classes = torch.as_tensor([c - 1 for c in LABELS])
    run_bare_batches(source, batches, classes, torch.device("cpu"), amp=False)


# --- the sections ---------------------------------------------------------------------------

def cpu_section(n_images: int, repeats: int, threads: int, memory: bool) -> dict[str, Any]:
    device = torch.device("cpu")
    cams = config()["cams"]
    trained = trained_network(device)
    source = build_source(trained, {"method": "cam"})
    classes = torch.as_tensor([c - 1 for c in LABELS])
    gemm_a, gemm_b = torch.randn(GEMM_N, GEMM_N), torch.randn(GEMM_N, GEMM_N)
    result: dict[str, Any] = {}
    script = Path(__file__)
    for name, size in SIZES.items():
        images = random_images(size, n_images)
        inputs = bare_inputs(images, device)
        with tempfile.TemporaryDirectory() as tmp, use_threads(threads), ExitStack() as own:
            diff = difference_to_irn(source, trained, images, cams, device, threads, tmp)
            kwargs = {"size": name, "n_images": n_images}
            cases: dict[str, Callable[[], object]] = {}
            for impl, impl_kwargs in (("camflow", {**kwargs, "workers": threads}),
                                      ("irn", kwargs)):
                for k in range(PROCESSES):
                    cases[f"{impl}#{k}"] = own.enter_context(
                        Isolated(script, impl, impl_kwargs, threads))
            cases["bare"] = own.enter_context(Isolated(script, "bare", kwargs, threads))
            cases["matmul"] = partial(matmul, gemm_a, gemm_b)
            timings = alternate(cases, repeats=repeats)
        gemm = GEMM_TIMES * 2 * GEMM_N**3 / timings.pop("matmul").median / 1e9
        flops = conv_flops(source, inputs, classes, n_images)
        entry: dict[str, Any] = {}
        for impl in ("camflow", "irn"):
            own_runs = [timings.pop(f"{impl}#{k}") for k in range(PROCESSES)]
            entry[impl] = {**rates(Timing.pooled(own_runs), n_images),
                           "per_process_img_per_s": [t.per(n_images)["median"]
                                                     for t in own_runs]}
        entry["bare"] = rates(timings.pop("bare"), n_images)
        camflow_rate, irn_rate, bare_rate = (entry[k]["img_per_s"]
                                             for k in ("camflow", "irn", "bare"))
        entry.update({
            "images": n_images, "size_hw": list(size),
            "camflow_over_irn": camflow_rate / irn_rate,
            "camflow_fraction_of_bare": camflow_rate / bare_rate,
            "max_abs_difference": diff,
            "gflop_per_image": flops / 1e9,
            "matmul_gflops": gemm,
            "camflow_gflops": flops * camflow_rate / 1e9,
            "camflow_fraction_of_matmul": flops * camflow_rate / 1e9 / gemm,
            "irn_fraction_of_matmul": flops * irn_rate / 1e9 / gemm,
        })
        if memory:
            one = {"size": name, "n_images": 1}
            entry["peak_memory_one_image"] = {
                "camflow": peak_memory(script, "camflow", {**one, "workers": 0}, threads),
                "irn": peak_memory(script, "irn", one, threads)}
        result[name] = entry
        print(f"{name}: camflow {camflow_rate:.3f} img/s, IRN {irn_rate:.3f} img/s "
              f"({camflow_rate / irn_rate:.2f}x), bare {bare_rate:.3f} img/s "
              f"({camflow_rate / bare_rate:.0%}), max |diff| {max(diff.values()):.2e}", flush=True)
    return result


def cuda_section(n_images: int, repeats: int, workers: int) -> dict[str, Any]:
    """camflow on CUDA (bfloat16 autocast, ``batch_size: auto``) against the bare forward
    (same autocast, channels_last, the same batches) and IRN's one-image float32 path."""
    device = torch.device("cuda")
    cams = {**config()["cams"], "batch_size": "auto"}
    trained = trained_network(device)
    source = build_source(trained, {"method": "cam"})
    classes = torch.as_tensor([c - 1 for c in LABELS], device=device)
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "workers": workers}
    for name, size in SIZES.items():
        images = random_images(size, n_images)
        batch = batch_size_for("auto", size, device)
        inputs = [bare_inputs(images[i:i + batch], device)
                  for i in range(0, n_images, batch)]
        few = images[:IRN_CUDA_IMAGES]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "cams.h5"
            diff = difference_to_irn(source, trained, few, cams, device, workers, tmp)
            timings = alternate({
                "camflow": partial(run_camflow, source, images, out, cams, device, workers),
                "irn": partial(run_irn, trained.classifier, few, device),
                "bare": partial(run_bare_batches, source, inputs, classes, device, amp=True),
            }, repeats=repeats)
        entry = {impl: rates(t, len(few) if impl == "irn" else n_images)
                 for impl, t in timings.items()}
        camflow_rate, irn_rate, bare_rate = (entry[k]["img_per_s"]
                                             for k in ("camflow", "irn", "bare"))
        entry.update({"images": n_images, "irn_images": len(few), "batch_size": batch,
                      "camflow_fraction_of_bare": camflow_rate / bare_rate,
                      "camflow_over_irn_fp32": camflow_rate / irn_rate,
                      "targets": {"fraction_of_bare": 0.7, "over_irn_fp32": 2.0},
                      "max_abs_difference_bf16_vs_irn_fp32": diff})
        result[name] = entry
        print(f"cuda {name}: camflow {camflow_rate:.1f} img/s, IRN fp32 {irn_rate:.1f} img/s, "
              f"bare {bare_rate:.1f} img/s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4, help="images per size and run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cuda-images", type=int, default=256,
                        help="images per size and run on CUDA (IRN: the first "
                             f"{IRN_CUDA_IMAGES}); a job's DataLoader start-up weighs little")
    parser.add_argument("--cuda-workers", type=int, default=gpu_job_workers(),
                        help="DataLoader workers on CUDA (default: a GPU job's, "
                             "config/voc12.yaml's runtime.workers)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak memory")
    parser.add_argument("--name", default="cam_inference", help="results file name")
    parser.add_argument("--sections", nargs="+", choices=("cpu", "cuda"),
                        default=["cpu", "cuda"],
                        help="what to measure (a lent GPU machine: --sections cuda)")
    args = parser.parse_args()
    threads = max(1, int(config()["runtime"]["workers"]))
    common = {"threads": threads, "scales": list(SCALES), "flip": True, "cams": config()["cams"]}
    if "cpu" in args.sections:
        cpu = cpu_section(args.images, args.repeats, threads, not args.no_memory)
        print(write_result(args.name, {**common, "isolated": True, "cpu": cpu}))
    if "cuda" in args.sections:
        if torch.cuda.is_available():
            cuda = cuda_section(args.cuda_images, args.repeats, args.cuda_workers)
            print(write_result(f"{args.name}_cuda", {**common, "cuda": cuda}))
        else:  # results/benchmarks/cam_inference_cuda.json, if any, stays: another machine's
            print("no CUDA device on this machine: the GPU section was not measured")


if __name__ == "__main__":
    main()
