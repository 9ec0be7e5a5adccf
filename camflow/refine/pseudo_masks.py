"""Pseudo masks: random-walk refinement of a CAM cache with a trained IRN or AffinityNet.

For every image of a split the trained network gives pair affinities (IRN: from its boundary
map; AffinityNet: from its features), the CAMs are propagated
(:mod:`camflow.refine.random_walk`) and the label map is written as a VOC palette PNG
``<masks_dir>/<image id>.png``; the refined class scores go to a CAM cache (``scores.h5``,
the format of :mod:`camflow.cache`), so a refined result is itself a CAM source.  Score
semantics: IRN — the walked CAMs divided by their maximum (mask = argmax of
[``bg_threshold``, maps]); AffinityNet — each class's share of the walked scores
(background's share = 1 − their sum).  Images are processed in parallel worker processes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from camflow.cache import CamCache, CamCacheWriter
from camflow.data.base import SegmentationDataset
from camflow.data.transforms import normalize
from camflow.evaluate import channel_lut
from camflow.io import CamflowInputError, write_label_png
from camflow.methods.cam import strided_size
from camflow.refine.random_walk import irn_propagate, psa_propagate
from camflow.runtime import parallel_map

log = logging.getLogger(__name__)

METHODS = ("irn", "affinitynet")


@dataclasses.dataclass
class _RefineJob:
    """Refine one image by id; the network is loaded once per worker process."""

    method: str
    model_path: str
    cache: CamCache
    dataset: SegmentationDataset
    params: dict[str, Any]
    device: str = "cpu"
    _model: Any = None

    def model(self) -> Any:
        if self._model is None:
            if self.device == "cpu":
                torch.set_num_threads(1)  # one image per process: no oversubscription
            from camflow.methods.affinitynet import load_affinitynet
            from camflow.methods.irn import load_irn

            load = load_irn if self.method == "irn" else load_affinitynet
            self._model = load(self.model_path, torch.device(self.device))
        return self._model

    @torch.no_grad()
    def __call__(self, image_id: str) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
        from camflow.methods.affinitynet import pair_affinity
        from camflow.methods.irn import boundary_map

        image = self.dataset.load_image(image_id)
        size = image.shape[:2]
        x = torch.from_numpy(normalize(image)).to(self.device)
        p = self.params
        if self.method == "irn":
            keys, cams = self.cache.read(image_id, "stride4")
            if cams.shape[1:] != strided_size(size, 4):
                raise CamflowInputError(
                    f"image {image_id!r}: stride-4 CAM in {self.cache.path} is "
                    f"{cams.shape[2]}x{cams.shape[1]}, expected {strided_size(size, 4)[::-1]}")
            boundary = boundary_map(self.model(), x, bool(p["flip"])).cpu()
            scores, channels = irn_propagate(torch.from_numpy(cams), boundary, size,
                                             int(p["radius"]), float(p["beta"]),
                                             int(p["n_squarings"]), float(p["bg_threshold"]))
        else:
            keys, cams = self.cache.read(image_id, "full")
            if cams.shape[1:] != size:
                raise CamflowInputError(f"image {image_id!r}: CAM in {self.cache.path} is "
                                        f"{cams.shape[2]}x{cams.shape[1]}, the image "
                                        f"{size[1]}x{size[0]}")
            affinity = pair_affinity(self.model(), x, int(p["radius"])).cpu()
            scores, channels = psa_propagate(torch.from_numpy(cams), affinity, int(p["radius"]),
                                             float(p["beta"]), int(p["n_squarings"]),
                                             float(p["alpha"]))
            scores = scores[1:]
        labels = channel_lut(keys)[channels.numpy()].astype(np.uint8)
        return image_id, keys, labels, scores.numpy()


def make_pseudo_masks(method: str, model_path: str | Path, cache: CamCache,
                      dataset: SegmentationDataset, split: str, params: dict[str, Any],
                      masks_dir: str | Path, scores_path: str | Path, device: torch.device,
                      workers: int = 1, progress: bool = True) -> None:
    """Write the pseudo masks of every image of ``split`` (module doc).

    ``params``: ``radius``, ``beta``, ``n_squarings`` and, for IRN, ``flip`` and
    ``bg_threshold``; for AffinityNet ``alpha``.  The mask folder is filled under a
    temporary name and renamed into place when every image is done.
    """
    if method not in METHODS:
        raise CamflowInputError(f"unknown refiner method {method!r}; known: {METHODS}")
    ids = dataset.ids(split)
    cache.require(ids, f"{dataset.name}/{split}")
    masks_dir = Path(masks_dir)
    masks_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{masks_dir.name}.", dir=masks_dir.parent))
    job = _RefineJob(method, str(model_path), cache, dataset, params, str(device))
    procs = workers if device.type == "cpu" else 1
    provenance = {"refiner": method, **params, "model": str(model_path), "cams": str(cache.path)}
    try:
        with CamCacheWriter(scores_path, dataset.class_names, provenance) as writer:
            for image_id, keys, labels, scores in parallel_map(job, ids, procs, progress,
                                                               f"{method} masks {split}"):
                write_label_png(tmp_dir / f"{image_id}.png", labels)
                full = torch.from_numpy(scores)
                s4 = F.interpolate(full[None], strided_size(labels.shape, 4), mode="bilinear",
                                   align_corners=False)[0] if len(keys) else full[:, ::4, ::4]
                writer.add(image_id, keys, s4.numpy(), scores)
        if masks_dir.exists():
            shutil.rmtree(masks_dir)
        os.replace(tmp_dir, masks_dir)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
    log.info("wrote %d pseudo masks to %s and scores to %s", len(ids), masks_dir, scores_path)
