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
from torch.utils.data import DataLoader

from camflow.cache import CamCacheWriter
from camflow.data.base import SegmentationDataset
from camflow.data.transforms import (
    ClassificationDataset,
    InferenceDataset,
    normalize,
    pil_rescale,
)
from camflow.methods.base import TrainingMethod, register_method
from camflow.models.classifier import build_classifier, multilabel_loss
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


def fuse_tta(cam_fn: CamFn, images: Sequence[np.ndarray], scales: Sequence[float], flip: bool,
             outputs: Sequence[tuple[tuple[int, int], int]],
             device: torch.device | None = None) -> list[torch.Tensor]:
    """Sum of CAMs over scales (and flips), as IRN's ``step/make_cam.py``.

    ``images`` are B uint8 H×W×3 images of one size.  At each scale they are rescaled with
    PIL bicubic to (round(H·s), round(W·s)) and then normalised (IRN's
    ``VOC12ClassificationDatasetMSF``); ``cam_fn`` maps the batch to B×K×h×w non-negative
    maps; a flipped image's map is flipped back and added.  Each output ``(size, grid)`` is
    every scale's map resized bilinearly to ``size`` rounded up to a multiple of ``grid`` and
    cropped to ``size`` (IRN: grid 16 for the full-resolution map, ``get_strided_up_size``;
    grid 1 for the stride-4 map), then summed over scales.  Returns one B×K×h×w tensor per
    output.
    """
    fused: list[torch.Tensor] = [torch.zeros(0) for _ in outputs]
    for scale in scales:
        x = torch.from_numpy(np.stack([normalize(pil_rescale(img, scale, "bicubic"))
                                       for img in images])).to(device)
        if flip:
            cams = cam_fn(torch.cat([x, x.flip(-1)]))
            cams = cams[: len(x)] + cams[len(x):].flip(-1)
        else:
            cams = cam_fn(x)
        for i, ((h, w), grid) in enumerate(outputs):
            up = F.interpolate(cams, (-(-h // grid) * grid, -(-w // grid) * grid),
                               mode="bilinear", align_corners=False)[..., :h, :w]
            fused[i] = up if fused[i].numel() == 0 else fused[i] + up
    return fused


def max_normalize(cams: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Divide each class map by its own maximum (+eps), GSLM (Mai et al.) Eq. 2."""
    return cams / (cams.amax(dim=(-2, -1), keepdim=True) + eps)


def _as_is(item: tuple) -> tuple:
    """Keep a loaded item as numpy (the default collate would turn it into tensors)."""
    return item


def _same_size_batches(loader: Iterator, batch_size: int) -> Iterator[list[tuple]]:
    """Group consecutive images of equal size into batches of at most ``batch_size``."""
    batch: list[tuple] = []
    for item in loader:
        if batch and (len(batch) == batch_size or item[1].shape != batch[0][1].shape):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def make_cams(source: ClassCamFn, dataset: SegmentationDataset, split: str,
              out_path: str | Path, scales: Sequence[float], flip: bool, batch_size: int,
              grid: int, device: torch.device, workers: int = 0, amp: bool = True,
              progress: bool = True, provenance: dict[str, Any] | None = None,
              dtype: str = "float16") -> Path:
    """Compute TTA CAMs of ``source`` for every image of ``split``; write the cache ``out_path``.

    A batch's maps are computed for the union of its images' classes, then each image keeps
    its own classes. Gradient-based sources enable gradients themselves (``no_grad`` here).
    ``grid``: the full-resolution map's rounding (:func:`fuse_tta`; IRN 16); ``dtype``: the
    cache's precision (:class:`~camflow.cache.CamCacheWriter`).
    """
    data = InferenceDataset(dataset, split)
    loader = DataLoader(data, batch_size=None, shuffle=False, num_workers=workers,
                        collate_fn=_as_is)
    use_amp = amp and device.type == "cuda"
    meta = {"split": split, "scales": list(scales), "flip": flip, "grid": grid,
            **(provenance or {})}
    with CamCacheWriter(out_path, dataset.class_names, meta, dtype) as writer, \
            torch.no_grad():
        bar = progress_bar(progress, total=len(data), desc=f"CAMs {split}")
        for batch in _same_size_batches(iter(loader), batch_size):
            h, w = batch[0][1].shape[:2]
            union = sorted({c for item in batch for c in item[2]})
            classes = torch.as_tensor([c - 1 for c in union], dtype=torch.long, device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                full, stride4 = fuse_tta(functools.partial(source, classes=classes),
                                         [item[1] for item in batch], scales, flip,
                                         [((h, w), grid), (strided_size((h, w), 4), 1)],
                                         device)
            full, stride4 = full.float(), stride4.float()
            for i, (image_id, _, labels) in enumerate(batch):
                keys = np.asarray(labels, dtype=np.int64)
                idx = torch.as_tensor([union.index(c) for c in labels], dtype=torch.long,
                                      device=device)
                writer.add(image_id, keys,
                           stride4=max_normalize(stride4[i, idx]).cpu().numpy(),
                           full=max_normalize(full[i, idx]).cpu().numpy())
            bar.update(len(batch))
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
