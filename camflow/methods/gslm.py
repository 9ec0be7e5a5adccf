"""GSLM: General and Specific Learning Modules (Mai et al., "Exploit CAM by itself", Sec. 4).

* Stage 1, the **General Learning Module**, is the CAM classifier (Eq. 1–2).  Its CAMs pass
  through **Coarse Generation** (Eq. 3): g maps a CAM to 1 (≥ θ_fg), 0 (< θ_bg) or −1
  (else), refined by a dense CRF R — computed as IRN's confidence labels
  (:func:`camflow.refine.affinity_labels.irn_labels`, a label cache), from which the
  confidence CAM of class c is N_c = 1 where the label is c, −1 where it is 255, else 0
  (:func:`confidence_maps`).
* Stage n ≥ 2, a **Specific Learning Module**, starts from stage n−1's weights and trains
  on its confidence CAM with L = L_cls + α·L_act (Eq. 6): **Seed Reactivation**
  M′_c = ψ^k(f(x)_c)/k, ψ^k clamping to [0, k] (Eq. 4), and the **activation loss**, the
  smooth L1 between M′ and N over the pixels with N ≥ 0 (Eq. 5).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from camflow.cache import CamCache, LabelCache, open_cache
from camflow.data.base import IGNORE_INDEX, SegmentationDataset
from camflow.data.transforms import joint_augment, torch_nearest
from camflow.io import CamflowInputError
from camflow.methods.base import (
    TrainingMethod,
    method_class,
    method_from_checkpoint,
    register_method,
)
from camflow.models.classifier import CAMClassifier, multilabel_loss
from camflow.runtime import load_checkpoint
from camflow.trainer import Progress, Update


def relu_k(x: torch.Tensor, k: float) -> torch.Tensor:
    """ψ^k (Eq. 4): 0 below 0, k above k, x between."""
    return x.clamp(min=0.0, max=k)


def seed_reactivation(logit_maps: torch.Tensor, k: float) -> torch.Tensor:
    """M′ = ψ^k(f(x)) / k (Eq. 4), in [0, 1]."""
    return relu_k(logit_maps, k) / k


def activation_loss(cam: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
    """L_act (Eq. 5): smooth L1 between ``cam`` and ``confidence`` (same shape) averaged over
    the entries with confidence ≥ 0; entries at −1 give neither loss nor gradient."""
    valid = confidence >= 0
    if not bool(valid.any()):
        return cam.sum() * 0.0
    return F.smooth_l1_loss(cam[valid], confidence[valid].to(cam.dtype))


def confidence_maps(keys: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Confidence CAM N (K×H×W float32) from confidence labels (H×W: 0..K, 255) of an image
    with classes ``keys``: N_c = 1 where the label is c, 0 where it is another class or
    background, −1 where it is 255; every class absent from the image is −1 (ignored)."""
    n = np.full((num_classes, *labels.shape), -1.0, dtype=np.float32)
    for c in np.asarray(keys, dtype=np.int64):
        n[c - 1] = labels == c
        n[c - 1][labels == IGNORE_INDEX] = -1.0
    return n


def slm_loss(model: CAMClassifier, images: torch.Tensor, targets: torch.Tensor,
             confidence: torch.Tensor, cfg: dict[str, Any]) -> torch.Tensor:
    """Eq. 6 for one batch; ``confidence`` is N (B×K×H×W, −1 ignored) at the images' size.
    ``cfg``: ``k``, ``alpha``, and the ablation switches ``seed_reactivation`` (else M′ is the
    max-normalised ReLU CAM of Eq. 2) and ``classification_loss`` (else L = α·L_act)."""
    maps = model.head(model.features(images))                      # f(x): B×K×h×w
    if cfg["seed_reactivation"]:
        cam = seed_reactivation(maps.float(), float(cfg["k"]))
    else:
        relu = F.relu(maps.float())
        cam = relu / (relu.amax(dim=(2, 3), keepdim=True) + 1e-5)
    cam = F.interpolate(cam, confidence.shape[-2:], mode="bilinear", align_corners=False)
    loss = float(cfg["alpha"]) * activation_loss(cam, confidence)
    if cfg["classification_loss"]:
        loss = loss + multilabel_loss(maps.mean(dim=(2, 3)), targets)
    return loss


class ConfidenceDataset(Dataset):
    """Images with their confidence CAM N (K×crop×crop, −1 = ignored) and multi-hot targets.

    ``confidence`` is a label cache (Coarse Generation) or, for the ablation without Coarse
    Generation, a CAM cache whose maps are used as N directly.  The classifier's
    augmentation (:func:`camflow.data.transforms.joint_augment`; N resized torch-nearest,
    padded with −1) is seeded by ``(seed, epoch, index)``.
    """

    def __init__(self, dataset: SegmentationDataset, confidence: LabelCache | CamCache,
                 augment: dict[str, Any], seed: int) -> None:
        self.dataset = dataset
        self.confidence = confidence
        self.ids = confidence.ids
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ids)

    def _maps(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        k = self.dataset.num_classes
        if isinstance(self.confidence, LabelCache):
            keys, labels = self.confidence.read(image_id)
            return keys, confidence_maps(keys, labels, k)
        keys, cams = self.confidence.read(image_id, "full")
        n = np.full((k, *cams.shape[1:]), -1.0, dtype=np.float32)
        n[keys - 1] = cams
        return keys, n

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image_id = self.ids[index]
        image = self.dataset.load_image(image_id)
        keys, n = self._maps(image_id)
        if n.shape[1:] != image.shape[:2]:
            raise CamflowInputError(
                f"image {image_id!r}: confidence CAM in {self.confidence.path} is "
                f"{n.shape[2]}x{n.shape[1]}, the image {image.shape[1]}x{image.shape[0]}")
        x, n = joint_augment(image, self.augment, rng, n, fill=-1.0,
                             resize_maps=torch_nearest)
        target = self.dataset.multi_hot(tuple(int(c) for c in keys))
        return torch.from_numpy(x), torch.from_numpy(n), torch.from_numpy(target)


SLM_SCHEMA: dict[str, Any] = {
    "required": ["k", "alpha"],
    "properties": {
        "k": {"type": "number", "exclusiveMinimum": 0,
              "description": "Seed Reactivation psi^k (Eq. 4)"},
        "alpha": {"type": "number", "minimum": 0, "description": "L = L_cls + alpha L_act"},
        "seed_reactivation": {"type": "boolean", "default": True},
        "classification_loss": {"type": "boolean", "default": True},
    },
}


@register_method("slm")
class SLM(TrainingMethod):
    """One Specific Learning stage (Sec. 4): the CAM network of stage n−1 — whatever method
    trained it (``inputs["previous"]``) — trained with Eq. 6 on the confidence CAM
    ``inputs["confidence"]`` (Coarse Generation of stage n−1's CAMs)."""

    schema = SLM_SCHEMA

    def __init__(self, cfg: dict[str, Any], num_classes: int,
                 inputs: dict[str, Any] | None = None) -> None:
        super().__init__(cfg, num_classes, inputs)
        if "network" in cfg:  # rebuilt from this stage's own checkpoint
            network = cfg["network"]
            base = method_class(network["method"]).from_checkpoint(network["config"],
                                                                   num_classes)
        else:                 # trained from the previous stage's checkpoint
            ckpt = load_checkpoint(self.inputs["previous"])
            base = method_from_checkpoint(ckpt, self.inputs["previous"], torch.device("cpu"))
            network = {"method": ckpt["method"], "config": ckpt["config"]}
        self.network = network
        self.networks = {"classifier": base.classifier}

    @classmethod
    def from_checkpoint(cls, cfg: dict[str, Any], num_classes: int) -> SLM:
        return cls(cfg, num_classes)

    @classmethod
    def backbone_config(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        network = cfg["network"]
        return method_class(network["method"]).backbone_config(network["config"])

    def training_data(self, dataset: SegmentationDataset, split: str) -> ConfidenceDataset:
        self.confidence = open_cache(self.inputs["confidence"])
        return ConfidenceDataset(dataset, self.confidence, self.cfg["augment"],
                                 int(self.cfg["seed"]))

    def step(self, batch: tuple[torch.Tensor, ...], progress: Progress,
             update: Update) -> dict[str, torch.Tensor]:
        images, maps, targets = (t.to(self.device) for t in batch)
        loss = slm_loss(self.classifier, images, targets, maps, self.cfg)
        update("classifier", loss)
        return {"loss": loss.detach()}

    def identity(self) -> dict[str, Any]:
        return {"confidence": self.confidence.provenance,
                "previous": str(self.inputs["previous"])}

    def checkpoint(self) -> dict[str, Any]:
        return {**self.cfg, "network": self.network}
