"""GSLM: General and Specific Learning Modules (Mai et al., seed 000, Sec. 4).

* Stage 1, the **General Learning Module**, is the CAM classifier (Eq. 1–2).  Its CAMs pass
  through **Coarse Generation** (Eq. 3): g maps a CAM to 1 (≥ θ_fg), 0 (< θ_bg) or −1
  (else), refined by a dense CRF R — computed as IRN's confidence labels
  (:func:`camflow.refine.affinity_labels.irn_labels`, a label cache), from which the
  confidence CAM of class c is N_c = 1 where the label is c, −1 where it is 255, else 0
  (:func:`confidence_targets`).
* Stage n ≥ 2, a **Specific Learning Module**, starts from stage n−1's weights and trains
  on its confidence CAM with L = L_cls + α·L_act (Eq. 6): **Seed Reactivation**
  M′_c = ψ^k(f(x)_c)/k, ψ^k clamping to [0, k] (Eq. 4), and the **activation loss**, the
  smooth L1 between M′ and N over the pixels with N ≥ 0 (Eq. 5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from camflow.cache import LabelCache
from camflow.data.base import IGNORE_INDEX, SegmentationDataset
from camflow.data.transforms import AffinityLabelDataset
from camflow.models.classifier import CAMClassifier, multilabel_loss
from camflow.runtime import load_checkpoint, seed_everything
from camflow.training import fit_epochs, load_classifier


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


def confidence_targets(labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Confidence CAM N (B×K×H×W) from confidence labels (B×H×W: 0..K, 255) and the images'
    multi-hot targets (B×K): N_c = 1 where the label is c, 0 where it is another class or
    background, −1 where it is 255 and for every class absent from the image."""
    k = targets.shape[1]
    classes = torch.arange(1, k + 1, device=labels.device).view(1, k, 1, 1)
    n = (labels.unsqueeze(1) == classes).float()
    n[(labels == IGNORE_INDEX).unsqueeze(1).expand_as(n)] = -1.0
    n[(targets == 0)[:, :, None, None].expand_as(n)] = -1.0
    return n


def slm_loss(model: CAMClassifier, images: torch.Tensor, targets: torch.Tensor,
             labels: torch.Tensor, cfg: dict[str, Any]) -> torch.Tensor:
    """Eq. 6 for one batch.  ``cfg``: ``k``, ``alpha``, and the ablation switches
    ``seed_reactivation`` (else M′ is the max-normalised ReLU CAM of Eq. 2) and
    ``classification_loss`` (else L = α·L_act)."""
    maps = model.head(model.features(images))                      # f(x): B×K×h×w
    if cfg["seed_reactivation"]:
        cam = seed_reactivation(maps.float(), float(cfg["k"]))
    else:
        relu = F.relu(maps.float())
        cam = relu / (relu.amax(dim=(2, 3), keepdim=True) + 1e-5)
    cam = F.interpolate(cam, labels.shape[-2:], mode="bilinear", align_corners=False)
    loss = float(cfg["alpha"]) * activation_loss(cam, confidence_targets(labels, targets))
    if cfg["classification_loss"]:
        loss = loss + multilabel_loss(maps.mean(dim=(2, 3)), targets)
    return loss


class ConfidenceDataset(AffinityLabelDataset):
    """Images, full-resolution confidence labels (augmented together) and multi-hot targets."""

    def __init__(self, dataset: SegmentationDataset, labels: LabelCache,
                 augment: dict[str, Any], seed: int) -> None:
        super().__init__(dataset, labels, augment, seed, label_stride=1)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image, labels = super().__getitem__(index)
        keys, _ = self.labels.read(self.ids[index])
        target = self.dataset.multi_hot(tuple(int(c) for c in np.asarray(keys)))
        return image, labels, torch.from_numpy(target)


def train_slm(cfg: dict[str, Any], dataset: SegmentationDataset, confidence: LabelCache,
              previous: str | Path, out_path: str | Path, device: torch.device,
              workers: int = 0, amp: bool = True, progress: bool = True,
              stop_after_epochs: int | None = None) -> Path:
    """One Specific Learning stage: the classifier at ``previous`` (stage n−1) trained with
    Eq. 6 on the confidence CAM ``confidence`` (Coarse Generation of stage n−1's CAMs)."""
    seed_everything(int(cfg["seed"]))
    model = load_classifier(previous, device)
    ckpt_cfg = load_checkpoint(previous)["config"]
    data = ConfidenceDataset(dataset, confidence, cfg["augment"], int(cfg["seed"]))
    opt = cfg["optimizer"]
    groups = model.param_groups(float(opt["lr"]), float(opt["head_lr_mult"]),
                                float(opt["weight_decay"]))

    def step(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        images, labels, targets = (t.to(device) for t in batch)
        return slm_loss(model, images, targets, labels, cfg)

    return fit_epochs(model, groups, data, cfg, step, out_path, device,
                      {"cfg": cfg, "confidence": confidence.provenance,
                       "previous": str(previous), "n": len(data)},
                      {"config": ckpt_cfg, "class_names": list(dataset.class_names),
                       "slm": cfg, "previous": str(previous)},
                      workers=workers, amp=amp, progress=progress,
                      stop_after_epochs=stop_after_epochs)
