"""The CAM method and the multi-scale + flip inference that writes every CAM source's cache.

:class:`CAM` is the plain CAM classifier as a training method.  :func:`make_cams` implements
IRN's inference (``docs/fidelity.md``, conventions of the base pipeline: CAM classifier,
inference) and GSLM (Mai et al.) Eq. 2 for any source: per scale (PIL bicubic) the CAM is
ReLU(f(x)); the image and its horizontal flip are summed (the flip flipped back); scales are
resized bilinearly to a common size (the full-resolution one rounded up to IRN's grid, then
cropped) and summed; only the image's ground-truth classes are kept; each
class map is divided by its own maximum (+1e-5). Two sizes are produced: stride 4 (for the
random walk) and full resolution.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from camflow.cache import CamCacheWriter
from camflow.data.base import SegmentationDataset
from camflow.data.pil_resample import matches_pillow, resize_bicubic
from camflow.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClassificationDataset,
    InferenceDataset,
    pil_rescale,
    rescaled_size,
)
from camflow.methods.base import TrainingMethod, register_method
from camflow.models.classifier import build_classifier, multilabel_loss
from camflow.models.inference import retained_heap
from camflow.runtime import progress_bar
from camflow.trainer import Progress, Update

log = logging.getLogger(__name__)

CamFn = Callable[[torch.Tensor], torch.Tensor]
# A CAM source: (normalised B×3×h×w batch, foreground class indices 0..K-1) → B×n×h'×w'
# non-negative maps of those classes.
ClassCamFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def strided_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """Size of the stride-``stride`` grid covering ``size`` (ceil division, as IRN)."""
    return math.ceil(size[0] / stride), math.ceil(size[1] / stride)


#: ``cams.batch_size: auto`` on a CPU: this many pixels per batch at scale 1 (one 500×375
#: image), at most :data:`AUTO_CPU_MAX_BATCH` images: VOC-sized images go one at a time, small
#: ones in batches.  Measured with the heap warm (:func:`~camflow.models.inference.
#: retained_heap`), 4 scales × flip, 2 threads: ResNet-50's forward takes the same time per
#: image in batches of 1 and 3 at 224², 320² and 500×375 (2.3 s at 500×375, 95 % of the
#: matmul rate), while a batch's activations (about 0.5 GiB per 500×375 image at scale 2)
#: are faulted in once per ``make_cams`` call and held: one at a time cut the page faults of
#: a 3-image call by 35 % (500×375) and 55 % (320²), and holds a third of the memory.  The
#: small ResNet at 128² still gains from batching in ``make_cams`` (per-batch work): 1.21×
#: at batch 11, 1.16× at 16, against batch 1.
AUTO_CPU_BATCH_PIXELS = 500 * 375
AUTO_CPU_MAX_BATCH = 16
#: ``auto`` on CUDA: this many pixels per batch at scale 1 (16 images of 512²), at most
#: :data:`AUTO_CUDA_MAX_BATCH` images: enough work per launch to fill the GPU, while the
#: scale-2 activations of a batch stay within a few GiB in bfloat16.
AUTO_CUDA_BATCH_PIXELS = 16 * 512 * 512
AUTO_CUDA_MAX_BATCH = 32

BatchSize = int | str


def batch_size_for(batch_size: BatchSize, size: tuple[int, int], device: torch.device) -> int:
    """Images per forward pass for images of ``size`` (H, W): ``batch_size`` itself, or for
    ``"auto"`` as many as fit the device's pixel budget (:data:`AUTO_CPU_BATCH_PIXELS`,
    :data:`AUTO_CUDA_BATCH_PIXELS`), at least 1."""
    if batch_size != "auto":
        return int(batch_size)
    pixels = size[0] * size[1]
    if device.type == "cuda":
        return max(1, min(AUTO_CUDA_MAX_BATCH, AUTO_CUDA_BATCH_PIXELS // pixels))
    return max(1, min(AUTO_CPU_MAX_BATCH, AUTO_CPU_BATCH_PIXELS // pixels))


def network_input(images: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """A B×H×W×3 uint8 batch as the network's normalised float B×3×H×W input on ``device``.

    The uint8 pixels travel (a quarter of the float bytes; asynchronously from pinned
    memory) and are normalised on ``device`` with the same float32 operations as
    :func:`~camflow.data.transforms.normalize`, so the values are bit for bit its.  The
    result is channels_last-strided, the layout IRN's ``HWC_to_CHW`` transpose happens to
    give its network and the one the convolutions run fastest in
    (:func:`camflow.models.inference.prepare_for_inference`).
    """
    x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
    mean = torch.from_numpy(IMAGENET_MEAN).to(x.device).view(1, 3, 1, 1)
    std = torch.from_numpy(IMAGENET_STD).to(x.device).view(1, 3, 1, 1)
    return (x / 255.0 - mean) / std


def rescaled(image: np.ndarray, scales: Sequence[float]) -> list[torch.Tensor]:
    """``image`` (uint8 H×W×3) at every scale, PIL bicubic to (round(H·s), round(W·s)) (IRN's
    ``VOC12ClassificationDatasetMSF``)."""
    return [torch.from_numpy(np.array(pil_rescale(image, s, "bicubic"))) for s in scales]


def fuse_tta(cam_fn: CamFn, images: Sequence[np.ndarray], scales: Sequence[float], flip: bool,
             outputs: Sequence[tuple[tuple[int, int], int]],
             device: torch.device | None = None) -> list[torch.Tensor]:
    """Sum of CAMs over scales (and flips), as IRN's ``step/make_cam.py``.

    ``images`` are B uint8 H×W×3 images of one size, rescaled by :func:`rescaled` and fused
    by :func:`fuse_scaled`.  Returns one B×K×h×w tensor per output.
    """
    per_image = [rescaled(image, scales) for image in images]
    return fuse_scaled(cam_fn, [torch.stack(batch) for batch in zip(*per_image, strict=True)],
                       flip, outputs, device)


def fuse_scaled(cam_fn: CamFn, scaled: Sequence[torch.Tensor], flip: bool,
                outputs: Sequence[tuple[tuple[int, int], int]],
                device: torch.device | None = None) -> list[torch.Tensor]:
    """Sum of CAMs over scales (and flips) of images already rescaled.

    ``scaled[k]`` holds the B images at scale k (uint8 B×h×w×3, :func:`rescaled`),
    normalised by :func:`network_input`; ``cam_fn`` maps the batch to B×K×h×w non-negative
    maps; a flipped image's map is flipped back and added.  Each output ``(size, grid)`` is
    every scale's map resized bilinearly to ``size`` rounded up to a multiple of ``grid`` and
    cropped to ``size`` (IRN: grid 16 for the full-resolution map, ``get_strided_up_size``;
    grid 1 for the stride-4 map), then summed over scales in at least float32 (maps of a
    bfloat16 autocast are widened first).  Nothing here waits for the device, so on CUDA
    the scales queue back to back.
    """
    fused: list[torch.Tensor] = [torch.zeros(0) for _ in outputs]
    for images in scaled:
        x = network_input(images, device)
        if flip:
            cams = cam_fn(torch.cat([x, x.flip(-1)]))
            cams = cams[: len(x)] + cams[len(x):].flip(-1)
        else:
            cams = cam_fn(x)
        cams = cams.to(torch.promote_types(cams.dtype, torch.float32)).contiguous()
        for i, ((h, w), grid) in enumerate(outputs):
            up = F.interpolate(cams, (-(-h // grid) * grid, -(-w // grid) * grid),
                               mode="bilinear", align_corners=False)[..., :h, :w]
            fused[i] = up if fused[i].numel() == 0 else fused[i] + up
    return fused


def max_normalize(cams: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Divide each class map by its own maximum (+eps), GSLM (Mai et al.) Eq. 2."""
    return cams / (cams.amax(dim=(-2, -1), keepdim=True) + eps)


class MultiScaleImages(Dataset):
    """The inference images with every scale already rescaled, as IRN's
    ``VOC12ClassificationDatasetMSF``: the DataLoader's workers resize the next images while
    the network runs.  Items: (id, (H, W), labels, every scale's uint8 pixels in one flat
    tensor, each scale's (h, w, 3)) — one tensor per image, which ``make_cams``'s loader
    joins with the next images' (:func:`_packed`), so that a worker hands over, the loader
    pins and the device receives one buffer for several images and every scale
    (:func:`unpacked`).  With ``scales`` [1.0] the items carry the image itself
    (``make_cams`` rescaling on the device)."""

    def __init__(self, data: InferenceDataset, scales: Sequence[float]) -> None:
        self.data = data
        self.scales = list(scales)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[str, tuple[int, int], tuple[int, ...],
                                               torch.Tensor, list[tuple[int, ...]]]:
        image_id, image, labels = self.data[index]
        scaled = rescaled(image, self.scales)
        return (image_id, image.shape[:2], labels, torch.cat([x.reshape(-1) for x in scaled]),
                [tuple(x.shape) for x in scaled])


def unpacked(flat: torch.Tensor, shapes: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """The scales of a :class:`MultiScaleImages` item: views of ``flat`` of ``shapes``."""
    sizes = [math.prod(shape) for shape in shapes]
    return [x.view(*shape) for x, shape in zip(flat.split(sizes), shapes, strict=True)]


class _HostMaps:
    """Maps on their way to the host.  On CUDA the copy goes into pinned memory behind the
    queued work and :meth:`arrays` waits for it only when called, so the next batch's
    forward passes are queued before this batch is written (the device does not wait for
    the writer); on a CPU the maps are already there."""

    def __init__(self, maps: Sequence[torch.Tensor]) -> None:
        self.event: torch.cuda.Event | None = None
        if maps[0].is_cuda:
            self.maps = [torch.empty(m.shape, dtype=m.dtype, pin_memory=True).copy_(
                m, non_blocking=True) for m in maps]
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.maps = list(maps)

    def arrays(self) -> list[np.ndarray]:
        if self.event is not None:
            self.event.synchronize()
        return [m.numpy() for m in self.maps]


#: images per DataLoader item in ``make_cams``: a worker hands over (and the loader pins) one
#: buffer for this many images, so the main process's per-transfer work is paid once for them
LOADER_IMAGES = 4


def _packed(items: list[tuple]) -> tuple:
    """:class:`MultiScaleImages` items as one: their ids, sizes, labels and scale shapes in
    lists, their pixels in one flat buffer (:func:`_unpacked_items`)."""
    ids, sizes, labels, pixels, shapes = zip(*items, strict=True)
    return ids, sizes, labels, torch.cat(pixels), shapes


def _unpacked_items(loaded: Iterator[tuple], device: torch.device) -> Iterator[tuple]:
    """The images of :func:`_packed` loader items, one by one: (id, (H, W), labels, each
    scale's uint8 h×w×3 view of the buffer, sent once to ``device``)."""
    for ids, sizes, labels, pixels, shapes in loaded:
        pixels = pixels.to(device, non_blocking=True)
        parts = pixels.split([sum(math.prod(s) for s in image) for image in shapes])
        for item in zip(ids, sizes, labels, parts, shapes, strict=True):
            yield (*item[:3], unpacked(item[3], item[4]))


def _same_size_batches(loader: Iterator, batch_size: Callable[[tuple[int, int]], int]
                       ) -> Iterator[list[tuple]]:
    """Group consecutive images of equal size into batches of at most ``batch_size(size)``."""
    batch: list[tuple] = []
    for item in loader:
        if batch and (len(batch) == batch_size(tuple(batch[0][1]))
                      or tuple(item[1]) != tuple(batch[0][1])):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def make_cams(source: ClassCamFn, dataset: SegmentationDataset, split: str,
              out_path: str | Path, scales: Sequence[float], flip: bool,
              batch_size: BatchSize, grid: int, device: torch.device, workers: int = 0,
              amp: bool = True, progress: bool = True,
              provenance: dict[str, Any] | None = None, dtype: str = "float16",
              device_rescale: bool | None = None) -> Path:
    """Compute TTA CAMs of ``source`` for every image of ``split``; write the cache ``out_path``.

    A batch's maps are computed for the union of its images' classes, then each image keeps
    its own classes. Gradient-based sources enable gradients themselves (``no_grad`` here).
    ``batch_size``: images of one size per forward pass, or ``"auto"``
    (:func:`batch_size_for`).  ``workers`` DataLoader processes load (and, unless
    ``device_rescale``, rescale) the next images (pinned for an asynchronous copy on
    CUDA).  ``grid``: the full-resolution map's rounding (:func:`fuse_scaled`; IRN 16);
    ``dtype``: the cache's precision (:class:`~camflow.cache.CamCacheWriter`).  On CUDA
    with ``amp`` the network runs under bfloat16 autocast; the fusion is float32.  Freed
    activations stay in the heap meanwhile (:func:`~camflow.models.inference.
    retained_heap`).  ``device_rescale``: the loader carries each image once and the
    scales are resized on ``device``, bit for bit as PIL resizes them in the loader
    otherwise (:mod:`camflow.data.pil_resample`); None does so on CUDA where the installed
    Pillow is matched (:func:`~camflow.data.pil_resample.matches_pillow`).

    On CUDA a batch's maps are written while the device computes the next batch
    (:class:`_HostMaps`), in the cache's precision, and the loader hands over one pinned
    buffer for :data:`LOADER_IMAGES` images (:func:`_packed`), each image once: the scales
    are resized on the device.  On an H100 (``benchmarks/cam_inference.py --sections
    cuda``, 8 workers, 256 images, bare forward 318 images/s at 320² and 175 at 500×375),
    resizing on the device against PIL in the loader, alternated in one call: 206 against
    176 images/s at 320², 133 against 124 at 500×375; the loader then delivers 1,000
    images/s.  What is left (the same call): the resizing costs the device 8 % (the
    network with it alone: 275 and 155 images/s); without the writer 235 and 139.  In
    another call a deeper queue for the writer or two batches in flight changed nothing
    (193–204 and 125–132 images/s, all within the runs' spread).  With the resize's taps
    copied to the device once (:mod:`camflow.data.pil_resample`): 199 and 128 images/s,
    63 % and 73 % of the bare forward (``docs/benchmarks.md``).
    """
    if device_rescale is None:
        device_rescale = device.type == "cuda" and matches_pillow()
        if device.type == "cuda" and not device_rescale:
            log.warning("CAMs: the installed Pillow resizes unlike camflow.data.pil_resample; "
                        "the DataLoader rescales the images with PIL instead (slower)")
    data = MultiScaleImages(InferenceDataset(dataset, split),
                            [1.0] if device_rescale else scales)
    loader = DataLoader(data, batch_size=LOADER_IMAGES, shuffle=False, num_workers=workers,
                        collate_fn=_packed, pin_memory=device.type == "cuda")
    use_amp = amp and device.type == "cuda"
    meta = {"split": split, "scales": list(scales), "flip": flip, "grid": grid,
            **(provenance or {})}
    with CamCacheWriter(out_path, dataset.class_names, meta, dtype) as writer, \
            torch.no_grad(), retained_heap():
        bar = progress_bar(progress, total=len(data), desc=f"CAMs {split}")
        batches = _same_size_batches(_unpacked_items(iter(loader), device),
                                     functools.partial(batch_size_for, batch_size,
                                                       device=device))

        def write(batch: list[tuple], union: list[int], maps: _HostMaps) -> None:
            full, stride4 = maps.arrays()
            for i, (image_id, _, labels, *_) in enumerate(batch):
                idx = [union.index(c) for c in labels]
                writer.add(image_id, np.asarray(labels, dtype=np.int64),
                           stride4=stride4[i, idx], full=full[i, idx])
            bar.update(len(batch))

        previous = None
        for batch in batches:
            h, w = batch[0][1]
            union = sorted({c for item in batch for c in item[2]})
            classes = torch.as_tensor([c - 1 for c in union], dtype=torch.long).to(
                device, non_blocking=True)
            if device_rescale:
                images = torch.stack([item[3][0] for item in batch])
                scaled = [resize_bicubic(images, rescaled_size((h, w), s)) for s in scales]
            else:
                scaled = [torch.stack([item[3][k] for item in batch])
                          for k in range(len(scales))]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                full, stride4 = fuse_scaled(
                    functools.partial(source, classes=classes), scaled, flip,
                    [((h, w), grid), (strided_size((h, w), 4), 1)], device)
            # each map is normalised by its own maximum, so the union's maps can be
            # normalised at once and copied back once per batch
            # in the cache's precision already: half the bytes to copy back, and the
            # writer's float16 checks are one pass over the bits (CamCacheWriter.add)
            maps = _HostMaps([max_normalize(m).to(getattr(torch, dtype)) for m in (full, stride4)])
            if previous is not None:  # written while the device computes this batch
                write(*previous)
            previous = (batch, union, maps)
        if previous is not None:
            write(*previous)
        bar.close()
    log.info("wrote %s (%d images)", out_path, len(data))
    return Path(out_path)


class ClassifierMethod(TrainingMethod):
    """A method that trains one CAM classifier on image-level labels with IRN's augmentation
    (random long-side resize, flip, crop): the networks and data of :class:`CAM`, which
    Puzzle-CAM, OC-CSE, P-OC and P-NOC share."""

    def __init__(self, cfg: dict[str, Any], num_classes: int,
                 inputs: dict[str, Any] | None = None) -> None:
        super().__init__(cfg, num_classes, inputs)
        self.networks = {"classifier": build_classifier(cfg, num_classes)}

    def training_data(self, dataset: SegmentationDataset, split: str) -> ClassificationDataset:
        return ClassificationDataset(dataset, split, self.cfg["augment"], int(self.cfg["seed"]))


@register_method("cam")
class CAM(ClassifierMethod):
    """The plain CAM classifier (IRN's CAM network; GSLM (Mai et al.) Sec. 3): the
    backbone + 1×1 head trained on image-level labels with the multi-label soft-margin loss
    of Eq. 1 on the GAP scores, optionally with label smoothing (``label_smoothing``, P-NOC's
    "+LS").  Its inference map is ReLU(f(x)) (Eq. 2)."""

    def step(self, batch: tuple[torch.Tensor, ...], progress: Progress,
             update: Update) -> dict[str, torch.Tensor]:
        images, targets, _ = batch
        loss = multilabel_loss(self.classifier(images.to(self.device)), targets.to(self.device),
                               self.label_smoothing)
        update("classifier", loss)
        return {"loss": loss.detach()}
