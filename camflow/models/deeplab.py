"""DeepLab segmentation networks on a four-stage :class:`~camflow.models.backbones.Backbone`.

* :class:`DeepLabV2` (Chen et al. 2017, "DeepLab: semantic image segmentation with deep
  convolutional nets, atrous convolution, and fully connected CRFs", Section 3.2 and Fig. 4,
  ASPP-L): the last stage feeds parallel 3×3 convolutions with dilation rates (6, 12, 18, 24),
  each straight to class logits; the branch outputs are summed.  With ResNet-101, strides
  (2, 2, 1, 1) and dilated layer3/layer4 the output stride is 8 (Section 3.1).
* :class:`DeepLabV3Plus` (Chen et al. 2018, "Encoder-decoder with atrous separable
  convolution", Section 3.1 and Fig. 2): ASPP of 256 channels (1×1, three dilated 3×3 and
  image pooling, each with BatchNorm + ReLU) at output stride 16, concatenated and projected
  by a 1×1 conv; the decoder upsamples ×4, concatenates a 48-channel 1×1 projection of the
  stride-4 low-level features (stage 1), refines with two 3×3 convs and predicts the logits.

Both return logits at the input resolution (bilinear upsampling, the paper's final step), as
used by P-NOC (David et al.) Sec. 6.3 (segmentation on pseudo masks).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from camflow.io import CamflowInputError
from camflow.models.backbones import Backbone, batch_norms, build_backbone

ARCHS = ("deeplabv2", "deeplabv3plus")


def _upsample(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class _Segmenter(nn.Module):
    """A backbone and a newly initialised ``head``; BatchNorm of the backbone optionally frozen.

    ``freeze_bn_stats`` keeps the backbone's BatchNorm layers in inference mode and does not
    train their affine parameters — DeepLab-v2's ResNet-101 (BN with global statistics and
    fixed scale/shift, as fine-tuned with batch 10).  The head's own BatchNorm layers (V3+)
    always train.
    """

    head: nn.Module

    def __init__(self, backbone: Backbone, freeze_bn_stats: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.freeze_bn_stats = freeze_bn_stats
        if freeze_bn_stats:
            for m in batch_norms(self.backbone):
                for p in m.parameters():
                    p.requires_grad_(False)

    def train(self, mode: bool = True) -> _Segmenter:
        super().train(mode)
        if mode and self.freeze_bn_stats:
            for m in batch_norms(self.backbone):
                m.eval()
        return self

    def param_groups(self, lr: float, head_lr_mult: float, weight_decay: float) -> list[dict]:
        """SGD groups: trained backbone parameters at ``lr``, the new head at ``lr×mult``
        (DeepLab-v2 Section 4: the new classifier layers learn 10× faster)."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        return [
            {"params": backbone, "lr": lr, "initial_lr": lr, "weight_decay": weight_decay},
            {"params": [p for p in self.head.parameters() if p.requires_grad],
             "lr": lr * head_lr_mult, "initial_lr": lr * head_lr_mult,
             "weight_decay": weight_decay},
        ]


class ASPPV2(nn.Module):
    """DeepLab-v2 ASPP-L: parallel dilated 3×3 convs to class logits, summed (Fig. 4)."""

    def __init__(self, in_channels: int, num_classes: int, rates: list[int]) -> None:
        super().__init__()
        if not rates:
            raise CamflowInputError("config key aspp_rates must list at least one rate")
        self.rates = [int(r) for r in rates]
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r, bias=True)
            for r in self.rates)
        for conv in self.branches:  # DeepLab's Caffe fc8: Gaussian std 0.01, zero bias
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class DeepLabV2(_Segmenter):
    """Backbone → ASPP-L → bilinear upsampling to the input size (DeepLab-v2, Section 3)."""

    def __init__(self, backbone: Backbone, num_classes: int, rates: list[int],
                 freeze_bn_stats: bool) -> None:
        super().__init__(backbone, freeze_bn_stats)
        self.head = ASPPV2(backbone.out_channels, num_classes, rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits B×C×H×W at the input resolution."""
        return _upsample(self.head(self.backbone(x)[-1]), x.shape[-2:])


def _conv_bn_relu(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ASPPV3(nn.Module):
    """DeepLab-v3 ASPP: 1×1, dilated 3×3 branches and image pooling, concatenated and
    projected to ``channels`` by a 1×1 conv (DeepLab-v3 Section 3.3; V3+ Fig. 2)."""

    def __init__(self, in_channels: int, rates: list[int], channels: int = 256,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.rates = [int(r) for r in rates]
        self.branches = nn.ModuleList(
            [_conv_bn_relu(in_channels, channels, 1)]
            + [_conv_bn_relu(in_channels, channels, 3, r) for r in self.rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), _conv_bn_relu(in_channels, channels, 1))
        self.project = nn.Sequential(
            _conv_bn_relu(channels * (len(self.rates) + 2), channels, 1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        outs.append(self.pool(x).expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(outs, dim=1))


class DeepLabV3PlusHead(nn.Module):
    """ASPP encoder head + decoder of DeepLab-v3+ (Section 3.1, Fig. 2)."""

    def __init__(self, low_channels: int, high_channels: int, num_classes: int,
                 rates: list[int], aspp_channels: int = 256, low_proj: int = 48) -> None:
        super().__init__()
        self.aspp = ASPPV3(high_channels, rates, aspp_channels)
        self.low = _conv_bn_relu(low_channels, low_proj, 1)
        self.refine = nn.Sequential(_conv_bn_relu(aspp_channels + low_proj, aspp_channels, 3),
                                    _conv_bn_relu(aspp_channels, aspp_channels, 3))
        self.classifier = nn.Conv2d(aspp_channels, num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        x = _upsample(self.aspp(high), low.shape[-2:])
        x = torch.cat([x, self.low(low)], dim=1)
        return self.classifier(self.refine(x))


class DeepLabV3Plus(_Segmenter):
    """Backbone (stage 1 = stride-4 low-level features) → ASPP → decoder → upsampling."""

    def __init__(self, backbone: Backbone, num_classes: int, rates: list[int],
                 freeze_bn_stats: bool) -> None:
        super().__init__(backbone, freeze_bn_stats)
        self.head = DeepLabV3PlusHead(backbone.stage_channels[0], backbone.out_channels,
                                      num_classes, rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits B×C×H×W at the input resolution."""
        features = self.backbone(x)
        return _upsample(self.head(features[0], features[-1]), x.shape[-2:])


def build_segmenter(cfg: dict[str, Any], num_classes: int) -> _Segmenter:
    """Build a segmenter from a ``segmenters.<name>`` block; ``num_classes`` includes
    background.  Keys read: ``arch``, ``backbone``, ``aspp_rates``, ``freeze_bn_stats``."""
    arch = cfg.get("arch")
    for key in ("backbone", "aspp_rates", "freeze_bn_stats"):
        if key not in cfg:
            raise CamflowInputError(f"segmenter config lacks key {key!r}")
    rates = cfg["aspp_rates"]
    if not (isinstance(rates, list | tuple) and rates
            and all(isinstance(r, int) and r >= 1 for r in rates)):
        raise CamflowInputError(
            f"config key aspp_rates must be a non-empty list of positive integers, got {rates!r}")
    if arch == "deeplabv2":
        cls: type[DeepLabV2] | type[DeepLabV3Plus] = DeepLabV2
    elif arch == "deeplabv3plus":
        cls = DeepLabV3Plus
    else:
        raise CamflowInputError(f"unknown segmenter arch {arch!r} (config key arch); "
                                f"known: {', '.join(ARCHS)}")
    return cls(build_backbone(cfg["backbone"]), num_classes, list(rates),
               freeze_bn_stats=bool(cfg["freeze_bn_stats"]))
