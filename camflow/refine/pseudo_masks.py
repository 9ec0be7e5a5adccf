"""Pseudo masks: any refiner (:mod:`camflow.refine.refiners`) over a CAM cache.

For every image of a split the refiner turns the image's CAMs into a label map, written as a
VOC palette PNG ``<masks_dir>/<image id>.png``, and class scores, written to a CAM cache
(``scores.h5``, the format of :mod:`camflow.cache`), so a refined result is itself a CAM
source.  Score semantics: IRN — the walked CAMs divided by their maximum (mask = argmax of
[``bg_threshold``, maps]); AffinityNet — each class's share of the walked scores
(background's share = 1 − their sum); ``crf`` — the CRF's marginals.  Images are processed
in parallel worker processes.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from camflow.cache import CamCache, CamCacheWriter
from camflow.data.base import SegmentationDataset
from camflow.evaluate import channel_lut
from camflow.io import CamflowInputError, atomic_dir, write_label_png
from camflow.methods.cam import strided_size
from camflow.refine.refiners import Refiner, refiner_class
from camflow.runtime import parallel_map

log = logging.getLogger(__name__)

@dataclasses.dataclass
class _RefineJob:
    """Refine one image by id; the refiner (and its network) is built once per worker."""

    method: str
    model_path: str | None
    cache: CamCache
    dataset: SegmentationDataset
    params: dict[str, Any]
    device: str = "cpu"
    _refiner: Refiner | None = None

    def refiner(self) -> Refiner:
        if self._refiner is None:
            if self.device == "cpu":
                torch.set_num_threads(1)  # one image per process: no oversubscription
            self._refiner = refiner_class(self.method)(self.params, self.model_path,
                                                       torch.device(self.device))
        return self._refiner

    @torch.no_grad()
    def __call__(self, image_id: str) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
        refiner = self.refiner()
        image = self.dataset.load_image(image_id)
        keys, cams = self.cache.read(image_id, refiner.resolution)
        expected = refiner.cam_size(image.shape[:2])
        if cams.shape[1:] != expected:
            raise CamflowInputError(
                f"image {image_id!r}: {refiner.resolution} CAM in {self.cache.path} is "
                f"{cams.shape[2]}x{cams.shape[1]}, expected {expected[1]}x{expected[0]}")
        channels, scores = refiner.refine(image, keys, cams)
        labels = channel_lut(keys)[channels].astype(np.uint8)
        return image_id, keys, labels, np.asarray(scores, dtype=np.float32)


def make_pseudo_masks(method: str, model_path: str | Path | None, cache: CamCache,
                      dataset: SegmentationDataset, split: str, params: dict[str, Any],
                      masks_dir: str | Path, scores_path: str | Path, device: torch.device,
                      workers: int = 1, progress: bool = True) -> None:
    """Write the pseudo masks of every image of ``split`` (module doc).

    ``method`` names a registered refiner, ``params`` its inference settings and
    ``model_path`` its trained network (None for a refiner that is not learned).  The mask
    folder is filled under a temporary name and renamed into place when every image is done.
    """
    refiner_class(method, "refiners.<name>.method")
    ids = dataset.ids(split)
    cache.require(ids, f"{dataset.name}/{split}")
    model = None if model_path is None else str(model_path)
    job = _RefineJob(method, model, cache, dataset, params, str(device))
    procs = workers if device.type == "cpu" else 1
    provenance = {"refiner": method, **params, "model": str(model_path), "cams": str(cache.path)}
    with atomic_dir(masks_dir) as tmp_dir, \
            CamCacheWriter(scores_path, dataset.class_names, provenance) as writer:
        for image_id, keys, labels, scores in parallel_map(job, ids, procs, progress,
                                                           f"{method} masks {split}"):
            write_label_png(tmp_dir / f"{image_id}.png", labels)
            full = torch.from_numpy(scores)
            s4 = F.interpolate(full[None], strided_size(labels.shape, 4), mode="bilinear",
                               align_corners=False)[0] if len(keys) else full[:, ::4, ::4]
            writer.add(image_id, keys, s4.numpy(), scores)
    log.info("wrote %d pseudo masks to %s and scores to %s", len(ids), masks_dir, scores_path)
