"""The CAM classifier: backbone → 1×1 conv head (no bias) → global average pooling.

Follows IRN's CAM network (``docs/fidelity.md``, conventions: CAM classifier) and GSLM
Section 3: scores ŷ = σ(GAP(f(x))) trained with the multi-label BCE of Eq. 1, and the CAM
of class c is ReLU(f(x)_c) (Eq. 2 before max-normalisation).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from camflow.models.backbones import Backbone, batch_norms, build_backbone


class CAMClassifier(nn.Module):
    """Backbone + bias-free 1×1 classification head.

    Args:
        backbone: four-stage backbone.
        num_classes: number of foreground classes K.
        freeze_bn_stats: keep BatchNorm in inference mode (running statistics frozen) even
            in ``train()`` — IRN's setting for an ImageNet backbone.
        trainable_from_stage: index (1-based) of the first trained stage; gradients stop
            before it. IRN trains layer3, layer4 and the head only: value 3.
    """

    def __init__(self, backbone: Backbone, num_classes: int, freeze_bn_stats: bool,
                 trainable_from_stage: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Conv2d(backbone.out_channels, num_classes, 1, bias=False)
        self.freeze_bn_stats = freeze_bn_stats
        self.trainable_from_stage = trainable_from_stage
        for stage in self.backbone.stages[: trainable_from_stage - 1]:
            for p in stage.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> CAMClassifier:
        super().train(mode)
        if mode and self.freeze_bn_stats:
            for m in batch_norms(self):
                m.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last-stage features; in training, gradients stop before ``trainable_from_stage``.

        In eval mode the graph is left whole, so gradient-based CAM sources (Grad-CAM,
        Fully-CAM) can reach every layer.
        """
        for i, stage in enumerate(self.backbone.stages, start=1):
            x = stage(x)
            if self.training and i == self.trainable_from_stage - 1:
                x = x.detach()
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (logits) = GAP of the head's output (GSLM (Mai et al.) Sec. 3)."""
        return self.head(self.features(x)).mean(dim=(2, 3))

    def cam(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised CAM ReLU(f(x)) of every class, shape B×K×h×w."""
        return F.relu(self.head(self.features(x)))

    def param_groups(self, lr: float, head_lr_mult: float, weight_decay: float) -> list[dict]:
        """SGD groups: trained backbone parameters at ``lr``, the new head at ``lr×mult``."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        return [
            {"params": backbone, "lr": lr, "initial_lr": lr, "weight_decay": weight_decay},
            {"params": list(self.head.parameters()), "lr": lr * head_lr_mult,
             "initial_lr": lr * head_lr_mult, "weight_decay": weight_decay},
        ]


def build_classifier(cfg: dict[str, Any], num_classes: int) -> CAMClassifier:
    """Build a classifier from a ``classifiers.<name>`` config block."""
    model = CAMClassifier(
        build_backbone(cfg["backbone"]),
        num_classes,
        freeze_bn_stats=bool(cfg["freeze_bn_stats"]),
        trainable_from_stage=int(cfg["trainable_from_stage"]),
    )
    model.arch = cfg["backbone"]["arch"]
    return model


def smooth_labels(targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Label smoothing (Müller et al.; P-NOC (David et al.) Sec. 3.1) of multi-hot targets
    for a per-class binary loss: y·(1 − ε) + ε/2, so 1 → 1 − ε/2 and 0 → ε/2 (the P-NOC
    code's ``label_smoothing``)."""
    return targets if not smoothing else targets * (1.0 - smoothing) + 0.5 * smoothing


def multilabel_loss(logits: torch.Tensor, targets: torch.Tensor,
                    smoothing: float = 0.0) -> torch.Tensor:
    """Multi-label soft-margin / BCE loss, GSLM (Mai et al.) Eq. 1 and P-NOC's ℓ_cls (mean
    over classes and images), on targets smoothed by ``smoothing`` (:func:`smooth_labels`)."""
    return F.multilabel_soft_margin_loss(logits, smooth_labels(targets, smoothing))
