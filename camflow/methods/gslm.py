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

``slm.variant`` chooses between the paper (``paper``, the default) and
the authors' published code (``code``: github.com/Wheat2018/GSLM, ``run_sample.py``
defaults), which departs from Eq. 4–5 (:func:`code_activation_loss`) and reads its
confidence labels with PIL nearest; both variants share the inference map (:meth:`SLM.cam`).
The code's Coarse Generation CRF (Gaussian compat 10) is the ``affinity_labels.gslm_code``
profile.  ``docs/fidelity.md`` (GSLM) lists every difference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from camflow.cache import CamCache, LabelCache, open_cache
from camflow.data.base import IGNORE_INDEX, SegmentationDataset
from camflow.data.transforms import joint_augment, pil_nearest, torch_nearest
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


def max_normalized_relu(logit_maps: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """ReLU(f(x)) divided by its own maximum over the pixels (+``eps``) per image and class,
    not detached: Eq. 2's normalisation, used without Seed Reactivation (Table 5) and by the
    published code's SLM (``step/train_fuse_cam.py`` ``seg_criterion`` on the ``cam`` output
    of ``net/extractor/resnet50_cam.py``, ``get_cam`` = ReLU)."""
    relu = F.relu(logit_maps)
    return relu / (relu.amax(dim=(-2, -1), keepdim=True) + eps)


def activation_loss(cam: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
    """L_act (Eq. 5): smooth L1 between ``cam`` and ``confidence`` (same shape) averaged over
    the entries with confidence ≥ 0; entries at −1 give neither loss nor gradient."""
    valid = confidence >= 0
    if not bool(valid.any()):
        return cam.sum() * 0.0
    return F.smooth_l1_loss(cam[valid], confidence[valid].to(cam.dtype))


def code_activation_loss(cam: torch.Tensor, confidence: torch.Tensor, present: torch.Tensor,
                         scale: float) -> torch.Tensor:
    """The published code's activation loss (``step/train_fuse_cam.py``, ``seg_criterion``)
    for ``cam`` M′ (B×K×h×w), ``confidence`` N (B×K×h×w, −1 ignored, at M′'s size) and the
    image-level labels ``present`` (B×K bool):

        Σ_b Σ_{c present in b} mean_{p: N_bcp ≥ 0} smoothL1_β=1(scale·M′_bcp, scale·N_bcp)

    i.e. a **sum** over images and present classes of per-(image, class) means, on values
    multiplied by ``scale`` (the code's literal 6.0; camflow passes ``k``).  The code's mask
    is ``label != 255`` shared by every class of the image, which is N_c ≥ 0 for each present
    class; an (image, class) without a valid pixel adds nothing (the code skips the image)."""
    valid = (confidence >= 0) & present[:, :, None, None]
    per_pixel = F.smooth_l1_loss(scale * cam, scale * confidence.to(cam.dtype), reduction="none")
    per_pixel = torch.where(valid, per_pixel, torch.zeros_like(per_pixel))
    count = valid.sum(dim=(2, 3))
    means = per_pixel.sum(dim=(2, 3)) / count.clamp(min=1).to(cam.dtype)
    return torch.where(count > 0, means, torch.zeros_like(means)).sum()


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
    ``cfg``: ``k``, ``alpha``, the ablation switches ``seed_reactivation`` (else M′ is the
    max-normalised ReLU CAM of Eq. 2) and ``classification_loss`` (else L = α·L_act), and
    ``variant``.

    ``paper``: M′ at the feature stride is upsampled bilinearly to N's size, L_act =
    :func:`activation_loss` (one mean over every valid entry).  ``code`` (``step/
    train_fuse_cam.py``): M′ = :func:`max_normalized_relu` whatever ``seed_reactivation`` says
    (the code has no ψ^k), N is reduced to M′'s size with torch nearest (the code's
    ``F.interpolate(seg, ..., mode='nearest')``), L_act = :func:`code_activation_loss` with
    scale ``k``.  L_cls is the multi-label soft margin of the GAP logits in both."""
    maps = model.head(model.features(images))                      # f(x): B×K×h×w
    wide = maps.to(torch.promote_types(maps.dtype, torch.float32))  # bf16 → fp32, fp64 kept
    if cfg["variant"] == "code":
        cam = max_normalized_relu(wide)
        small = F.interpolate(confidence.to(cam.dtype), cam.shape[-2:], mode="nearest")
        act = code_activation_loss(cam, small, targets > 0, float(cfg["k"]))
    else:
        if cfg["seed_reactivation"]:
            cam = seed_reactivation(wide, float(cfg["k"]))
        else:
            cam = max_normalized_relu(wide)
        cam = F.interpolate(cam, confidence.shape[-2:], mode="bilinear", align_corners=False)
        act = activation_loss(cam, confidence)
    loss = float(cfg["alpha"]) * act
    if cfg["classification_loss"]:
        loss = loss + multilabel_loss(maps.mean(dim=(2, 3)), targets,
                                      float(cfg.get("label_smoothing", 0.0)))
    return loss


class ConfidenceDataset(Dataset):
    """Images with their confidence CAM N (K×crop×crop, −1 = ignored) and multi-hot targets.

    ``confidence`` is a label cache (Coarse Generation) or, for the ablation without Coarse
    Generation, a CAM cache whose maps are used as N directly.  The classifier's
    augmentation (:func:`camflow.data.transforms.joint_augment`; N resized torch-nearest,
    padded with −1) is seeded by ``(seed, epoch, index)``.  ``variant="code"`` resizes the
    confidence *labels* with PIL nearest instead (padded with 255) and builds N after the
    crop, as the code's ``voc12/dataloader.py`` ``VOC12SegmentationDataset`` does; the random
    draws are the same.
    """

    def __init__(self, dataset: SegmentationDataset, confidence: LabelCache | CamCache,
                 augment: dict[str, Any], seed: int, variant: str = "paper") -> None:
        self.dataset = dataset
        self.confidence = confidence
        self.ids = confidence.ids
        self.augment = augment
        self.seed = seed
        self.variant = variant
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ids)

    def _check_size(self, image_id: str, maps: tuple[int, ...], image: tuple[int, ...]) -> None:
        if tuple(maps) != tuple(image):
            raise CamflowInputError(
                f"image {image_id!r}: confidence CAM in {self.confidence.path} is "
                f"{maps[1]}x{maps[0]}, the image {image[1]}x{image[0]}")

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
        if self.variant == "code" and isinstance(self.confidence, LabelCache):
            keys, labels = self.confidence.read(image_id)
            self._check_size(image_id, labels.shape, image.shape[:2])
            x, labels = joint_augment(image, self.augment, rng, labels[None], fill=255.0,
                                      resize_maps=pil_nearest)
            n = confidence_maps(keys, labels[0].astype(np.uint8), self.dataset.num_classes)
        else:
            keys, n = self._maps(image_id)
            self._check_size(image_id, n.shape[1:], image.shape[:2])
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
        "variant": {"enum": ["paper", "code"], "default": "paper",
                    "description": "paper (Eq. 4-5) or code: the published code's activation "
                                   "loss (camflow/methods/gslm.py)"},
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
                                 int(self.cfg["seed"]), self.cfg["variant"])

    def step(self, batch: tuple[torch.Tensor, ...], progress: Progress,
             update: Update) -> dict[str, torch.Tensor]:
        images, maps, targets = (t.to(self.device) for t in batch)
        loss = slm_loss(self.classifier, images, targets, maps, self.cfg)
        update("classifier", loss)
        return {"loss": loss.detach()}

    def cam(self, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """The inference map of an SLM stage, the same for both variants: ReLU(f(x)) (Eq. 2
        before normalisation), fused over scales and flips and max-normalised by
        :func:`camflow.methods.cam.make_cams`.  The paper does not spell SLM inference out;
        the published code's ``step/make_cam.py`` runs the ``args.cam_network`` it trained
        (``step/train_fuse_cam.py`` builds ``args.cam_network``, default
        ``net.extractor.resnet50_cam``: ``get_cam`` = ReLU, ``Extractor.mixin_multi_cams`` =
        bilinear resize, sum, ÷ (max + 1e-5)).  Its ``resnet50_wam`` (ReLU6, mean ÷ 6) is named
        only by ``--fuse_cam_network``, which no step reads."""
        return self.classifier.cam(images)[:, classes]

    def identity(self) -> dict[str, Any]:
        return {"confidence": self.confidence.provenance,
                "previous": str(self.inputs["previous"])}

    def checkpoint(self) -> dict[str, Any]:
        return {**self.cfg, "network": self.network}
