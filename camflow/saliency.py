"""Saliency maps as priors' partners: the semantic map a saliency map makes with a set of
priors, scored the way P-NOC's Table 6 scores saliency (David et al., Sec. 6.2 and 7.2).

"Concatenating the pseudo-saliency maps of an input image with its CAM" (Sec. 6.2) is, in the
authors' code (``scripts/evaluate.py`` with ``--sal_threshold``), a background channel equal
to 1 where the saliency is below the threshold and 0 elsewhere, stacked in front of the class
maps, then the argmax: background where the image is not salient, the strongest prior's
class where it is. :func:`saliency_semantic_map` is that map; :func:`gt_prior_map` is the same
with the ground truth as the priors (Table 6's "GT" rows): a pixel is right when it is salient
and annotated with a class, or not salient and annotated background.

Where saliency maps come from is a seam (:data:`SALIENCY_METHODS`, ``saliency.<name>.method``):
every method writes the same saliency cache (``results/{dataset}/saliency/{name}/{split}/
saliency.h5``). ``c2am`` (C²AM / C²AM-H, ``camflow/methods/c2am.py``) learns the maps;
``refined`` (:class:`RefinedSaliency`, the paper's "R." column) trains a binary segmenter on
another saliency's thresholded, CRF-refined maps (:func:`pseudo_saliency_masks`) — it stands
in for PoolNet; ``folder`` (:class:`FolderSaliency`) reads PNG maps from an external detector.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from camflow.cache import CamCache, SaliencyCache, SaliencyCacheWriter
from camflow.data.base import IGNORE_INDEX, SegmentationDataset
from camflow.evaluate import (
    ConfusionMatrix,
    channel_lut,
    evaluation_record,
    segmentation_metrics,
)
from camflow.io import (
    CamflowInputError,
    atomic_dir,
    read_saliency_png,
    some_ids,
    write_label_png,
)
from camflow.refine.crf import crf_labels
from camflow.registry import Registry
from camflow.runtime import parallel_map, progress_bar

log = logging.getLogger(__name__)

SALIENCY_CLASSES = ("background", "salient")


def saliency_semantic_map(saliency: np.ndarray, keys: np.ndarray, cams: np.ndarray,
                          threshold: float) -> np.ndarray:
    """uint8 H×W class map: 0 where ``saliency`` < ``threshold``, else the class (of
    ``keys``) of the strongest map of ``cams`` (n_keys×H×W), 0 where every map is 0."""
    keys = np.asarray(keys, dtype=np.int64)
    background = (saliency < threshold).astype(np.float32)[None]
    stack = np.concatenate([background, np.asarray(cams, dtype=np.float32)])
    return channel_lut(keys)[np.argmax(stack, axis=0)].astype(np.uint8)


def gt_prior_map(saliency: np.ndarray, gt: np.ndarray, threshold: float) -> np.ndarray:
    """The semantic map of ``saliency`` with the ground truth ``gt`` (H×W, 255 ignored) as
    the priors: salient pixels take their annotated class; a salient pixel annotated
    background takes the image's largest annotated class (a false positive of that class);
    pixels that are not salient are background. An image without an annotated class is all
    background."""
    salient = saliency >= threshold
    classes, counts = np.unique(gt[(gt != 0) & (gt != IGNORE_INDEX)], return_counts=True)
    out = np.zeros(gt.shape, dtype=np.uint8)
    if classes.size == 0:
        return out
    out[salient] = classes[np.argmax(counts)]
    annotated = salient & (gt != 0) & (gt != IGNORE_INDEX)
    out[annotated] = gt[annotated]
    return out


class SaliencyFolder:
    """Saliency maps from an external source: a folder of ``<image id>.png`` greyscale maps
    (0–255), as users of EPS and similar methods have them from off-the-shelf detectors.

    :meth:`check` names every image of a split without a map before any work starts;
    :meth:`read` names the file and the image when a map is unreadable or its size is not
    the image's.
    """

    def __init__(self, root: str | Path, dataset: SegmentationDataset) -> None:
        self.root = Path(root)
        self.dataset = dataset

    def path(self, image_id: str) -> Path:
        return self.root / f"{image_id}.png"

    def check(self, ids: list[str]) -> None:
        if not self.root.is_dir():
            raise CamflowInputError(f"saliency folder {self.root} does not exist")
        missing = [i for i in ids if not self.path(i).is_file()]
        if missing:
            raise CamflowInputError(f"saliency folder {self.root}: no map for {len(missing)} "
                                    f"of {len(ids)} images: {some_ids(missing)}")

    def read(self, image_id: str) -> np.ndarray:
        """float32 H×W in [0, 1], the size of the image."""
        sal = read_saliency_png(self.path(image_id), image_id)
        h, w = self.dataset.load_image(image_id).shape[:2]
        if sal.shape != (h, w):
            raise CamflowInputError(
                f"saliency map of {image_id!r} ({self.path(image_id)}) is "
                f"{sal.shape[1]}x{sal.shape[0]}, the image {w}x{h}")
        return sal


def evaluate_saliency(saliency: SaliencyCache, priors: CamCache | None,
                      dataset: SegmentationDataset, split: str,
                      thresholds: list[float] | float, progress: bool = True) -> dict[str, Any]:
    """Table 6's score of a saliency cache on ``split``: the mIoU of
    :func:`saliency_semantic_map` with ``priors`` (a CAM cache), or of :func:`gt_prior_map`
    with the ground truth as the priors (``priors`` None), at the best of the saliency
    ``thresholds`` (the authors' ``scripts/evaluate.py`` sweeps them too). An evaluation
    record of kind ``saliency`` whose ``sweep`` holds the mIoU at every threshold."""
    thresholds = [float(thresholds)] if isinstance(thresholds, int | float) else [
        float(t) for t in thresholds]
    if not thresholds:
        raise CamflowInputError("saliency evaluation: no threshold to sweep")
    ids = dataset.ids(split)
    saliency.require(ids, f"{dataset.name}/{split}")
    if priors is not None:
        priors.require(ids, f"{dataset.name}/{split}")
    confs = [ConfusionMatrix(dataset.num_classes + 1) for _ in thresholds]
    for image_id in progress_bar(progress, iterable=ids, desc=f"saliency {split}"):
        gt = dataset.load_mask(image_id, split)
        sal = saliency.saliency(image_id)
        if sal.shape != gt.shape:
            raise CamflowInputError(
                f"{saliency.label} {saliency.path}: image {image_id!r} is "
                f"{sal.shape[1]}x{sal.shape[0]}, its mask {gt.shape[1]}x{gt.shape[0]}")
        if priors is not None:
            keys, cams = priors.read(image_id, "full")
        for conf, t in zip(confs, thresholds, strict=True):
            pred = (gt_prior_map(sal, gt, t) if priors is None
                    else saliency_semantic_map(sal, keys, cams, t))
            conf.update(pred, gt)
    all_metrics = [segmentation_metrics(c.matrix, dataset.class_names) for c in confs]
    best = int(np.argmax([m["miou"] for m in all_metrics]))
    provenance = {"saliency": str(saliency.path), "priors": str(priors.path) if priors
                  else "ground truth", "thresholds": thresholds}
    sweep = {"thresholds": thresholds, "miou": [m["miou"] for m in all_metrics]}
    return evaluation_record("saliency", split, len(ids), all_metrics[best], provenance,
                             threshold=thresholds[best], sweep=sweep)


# ---------------------------------------------------------------------------------------------
# Where saliency maps come from (the seam)


class SaliencyMethod:
    """A way to obtain the saliency cache of a split (module doc). ``cfg`` is the validated
    ``saliency.<name>`` block; input paths are relative to ``results/{dataset}``
    (``prefix``) and reach the stage as ``inputs``."""

    name: ClassVar[str]
    learned: ClassVar[bool] = False
    schema: ClassVar[dict[str, Any]] = {}

    @classmethod
    def training_inputs(cls, cfg: dict[str, Any], prefix: str, train_split: str,
                        name: str) -> dict[str, str]:
        """Files ``train`` reads (learned methods)."""
        return {}

    @classmethod
    def inference_inputs(cls, cfg: dict[str, Any], prefix: str, train_split: str,
                         name: str) -> dict[str, str]:
        """Files ``infer`` reads besides the trained model."""
        return {}

    @classmethod
    def train(cls, cfg: dict[str, Any], dataset: SegmentationDataset, split: str,
              inputs: dict[str, str], out_path: str, device: torch.device, workers: int,
              amp: bool) -> None:
        raise CamflowInputError(f"saliency method {cls.name!r} is not trained")

    @classmethod
    def infer(cls, cfg: dict[str, Any], dataset: SegmentationDataset, split: str,
              inputs: dict[str, str], model: str | None, out_path: str,
              device: torch.device, workers: int) -> None:
        raise NotImplementedError


SALIENCY_METHODS: Registry[type[SaliencyMethod]] = Registry(
    "saliency method", ("camflow.methods",))
register_saliency = SALIENCY_METHODS.register  # class decorator: @register_saliency("name")


def saliency_method(name: str, key: str = "method") -> type[SaliencyMethod]:
    """The registered method ``name`` (``folder`` and ``refined`` are this module's)."""
    return SALIENCY_METHODS.get(name, key)


@register_saliency("folder")
class FolderSaliency(SaliencyMethod):
    """Saliency maps from an external detector: ``folder`` holds ``<image id>.png``
    greyscale maps (:class:`SaliencyFolder`), copied into the saliency cache so every later
    stage reads one format. A folder's content is not tracked: rerun ``make_saliency`` (e.g.
    ``--forcerun``) after changing it."""

    schema: ClassVar[dict[str, Any]] = {
        "required": ["folder"],
        "properties": {"folder": {"type": "string",
                                  "description": "a folder of <image id>.png saliency maps"}},
    }

    @classmethod
    def infer(cls, cfg: dict[str, Any], dataset: SegmentationDataset, split: str,
              inputs: dict[str, str], model: str | None, out_path: str,
              device: torch.device, workers: int) -> None:
        folder = SaliencyFolder(cfg["folder"], dataset)
        ids = dataset.ids(split)
        folder.check(ids)
        with SaliencyCacheWriter(out_path, {"method": "folder", "folder": cfg["folder"],
                                            "split": split}) as writer:
            for image_id in progress_bar(True, iterable=ids, desc=f"saliency {split}"):
                writer.add(image_id, folder.read(image_id))


@dataclasses.dataclass(frozen=True)
class _MaskJob:
    cache: SaliencyCache
    dataset: SegmentationDataset
    threshold: float
    crf: dict[str, float] | None | bool
    out_dir: Path

    def __call__(self, image_id: str) -> float:
        sal = self.cache.saliency(image_id)
        image = self.dataset.load_image(image_id)
        if sal.shape != image.shape[:2]:
            raise CamflowInputError(
                f"{self.cache.label} {self.cache.path}: image {image_id!r} is "
                f"{image.shape[1]}x{image.shape[0]}, its map {sal.shape[1]}x{sal.shape[0]}")
        mask = (sal >= self.threshold).astype(np.int64)
        if self.crf is not False:
            mask = crf_labels(image, mask, 2, **(self.crf or {}))
        write_label_png(self.out_dir / f"{image_id}.png", mask.astype(np.uint8))
        return float(mask.mean())


def pseudo_saliency_masks(cache: SaliencyCache, dataset: SegmentationDataset, split: str,
                          threshold: float, crf: dict[str, float] | None | bool,
                          out_dir: str | Path, workers: int = 1) -> Path:
    """The pseudo-saliency masks a saliency refiner trains on: 1 where the map is at least
    ``threshold``, else 0, refined by IRN's label CRF with two labels (``crf``: its
    overrides; ``False``: none) — the authors' ``scripts/ccam/inference_crf.py`` (threshold
    0.2, CRF 10 iterations, gt_prob 0.7) before PoolNet. One palette PNG per image."""
    ids = dataset.ids(split)
    cache.require(ids, f"{dataset.name}/{split}")
    with atomic_dir(out_dir) as tmp:
        job = _MaskJob(cache, dataset, threshold, crf, tmp)
        salient = list(parallel_map(job, ids, workers, True, f"saliency masks {split}"))
    log.info("wrote %s: %d masks, %.1f%% of pixels salient", out_dir, len(ids),
             100 * float(np.mean(salient)) if salient else 0.0)
    return Path(out_dir)


class _BinaryView:
    """A dataset seen as two classes (background, salient), its images unchanged: what the
    saliency refiner's segmenter trains on."""

    class_names = SALIENCY_CLASSES

    def __init__(self, dataset: SegmentationDataset) -> None:
        self._dataset = dataset

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dataset, name)


@register_saliency("refined")
class RefinedSaliency(SaliencyMethod):
    """The paper's "R." column (P-NOC Sec. 7.2): a saliency detector trained on the
    pseudo-saliency masks of another saliency source (``of``) on the train split, whose
    probability of "salient" is the refined map. The authors train PoolNet; camflow trains a
    binary segmenter of ``segmenters`` (``segmenter``, e.g. DeepLab) — ``docs/fidelity.md``.
    """

    learned = True
    schema: ClassVar[dict[str, Any]] = {
        "required": ["of", "segmenter"],
        "properties": {
            "of": {"$ref": "#/$defs/name", "description": "the saliency it refines"},
            "segmenter": {"description": "a segmenters block (the workflow puts it in)",
                          "type": ["string", "object"]},
            "threshold": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.2,
                          "description": "pseudo-saliency masks: salient where map >= it"},
            "crf": {"description": "label CRF of the masks (overrides), or false",
                    "anyOf": [{"const": False}, {"$ref": "#/$defs/crf_params"}],
                    "default": {}},
            "scales": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0},
                       "minItems": 1, "default": [1.0]},
            "flip": {"type": "boolean", "default": False},
        },
    }

    @classmethod
    def training_inputs(cls, cfg: dict[str, Any], prefix: str, train_split: str,
                        name: str) -> dict[str, str]:
        return {"masks": f"{prefix}/saliency/{name}/training_masks"}

    @classmethod
    def train(cls, cfg: dict[str, Any], dataset: SegmentationDataset, split: str,
              inputs: dict[str, str], out_path: str, device: torch.device, workers: int,
              amp: bool) -> None:
        from camflow.segmentation import train_segmentation

        train_segmentation(cfg["segmenter"], _BinaryView(dataset), split,  # type: ignore[arg-type]
                           inputs["masks"], out_path, device, workers=workers, amp=amp)

    @classmethod
    def infer(cls, cfg: dict[str, Any], dataset: SegmentationDataset, split: str,
              inputs: dict[str, str], model: str | None, out_path: str,
              device: torch.device, workers: int) -> None:
        from camflow.segmentation import load_segmenter, predict_probs

        assert model is not None
        net = load_segmenter(model, device)
        ids = dataset.ids(split)
        meta = {"method": "refined", "of": cfg["of"], "model": model, "split": split,
                "scales": cfg["scales"], "flip": cfg["flip"]}
        with SaliencyCacheWriter(out_path, meta) as writer:
            for image_id in progress_bar(True, iterable=ids, desc=f"refined saliency {split}"):
                probs = predict_probs(net, dataset.load_image(image_id), cfg["scales"],
                                      cfg["flip"], device)
                writer.add(image_id, probs[1])
