"""Backbones exposing four stages, so CAM heads, gradient stops and layer hooks share one shape.

Every backbone has ``stages`` (an ``nn.ModuleList`` of four blocks: stem+layer1, layer2,
layer3, layer4 for ResNets), ``out_channels`` and ``stage_channels`` (the channels of each
stage's output). Strides follow IRN's convention ``(conv1, layer2, layer3, layer4)``; the
max-pool after conv1 always halves, so IRN's ``(2, 2, 2, 1)`` gives output stride 16
(``docs/fidelity.md``, conventions: CAM classifier).

ResNets also take an optional ``dilation`` (three booleans for layer2, layer3, layer4): a
dilated layer keeps stride 1 and dilates its 3×3 convolutions instead (torchvision's
``replace_stride_with_dilation``), the atrous backbone of DeepLab (Chen et al. 2017, Section
3.1): strides ``(2, 2, 1, 1)`` with dilation ``(false, true, true)`` give output stride 8.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from camflow.io import CamflowInputError

if TYPE_CHECKING:
    from torchvision import models

log = logging.getLogger(__name__)

# torchvision (builder, ImageNet weights enum) by name; torchvision is imported when a network
# is built, not when the workflow is parsed (it costs seconds per snakemake call)
TORCHVISION_RESNETS = {"resnet50": ("resnet50", "ResNet50_Weights"),
                       "resnet101": ("resnet101", "ResNet101_Weights")}
#: timm's ResNeSt (Zhang et al.), P-NOC's backbones (David et al., Sec. 6.1), by camflow name
TIMM_RESNESTS = {"resnest101": "resnest101e", "resnest269": "resnest269e"}
#: IRN-style strides → timm's ``output_stride`` (timm dilates the later stages instead)
_TIMM_OUTPUT_STRIDE = {(2, 2, 2, 2): 32, (2, 2, 2, 1): 16, (2, 2, 1, 1): 8}
ARCHS = ("resnet50", "resnet101", "vgg16", "resnet_small", *TIMM_RESNESTS)


class Backbone(nn.Module):
    """Four sequential stages; ``forward`` returns the output of every stage."""

    def __init__(self, stages: list[nn.Module], stage_channels: list[int]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.stage_channels = list(stage_channels)
        self.out_channels = self.stage_channels[-1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def batch_norms(module: nn.Module) -> list[nn.Module]:
    """Every BatchNorm layer of ``module`` (to keep them in inference mode while training)."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _imagenet_state(weights: Any, arch: str) -> dict[str, torch.Tensor]:
    """Fetch torchvision's ImageNet weights, failing fast and clearly without network."""
    try:
        return weights.get_state_dict(progress=True)
    except Exception as exc:  # urllib raises several types; all mean "no weights here"
        raise CamflowInputError(
            f"backbone {arch!r}: could not obtain ImageNet weights ({exc}). "
            "`weights: imagenet` needs network access once (torchvision caches the file under "
            "~/.cache/torch); otherwise set `weights: none` or a local checkpoint path"
        ) from exc


def _load_local_state(path: str, arch: str) -> dict[str, torch.Tensor]:
    file = Path(path)
    if not file.is_file():
        raise CamflowInputError(
            f"backbone {arch!r}: weights file {file} does not exist "
            "(config key backbone.weights: use imagenet, none or a checkpoint path)"
        )
    state = torch.load(file, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return state


def _set_resnet_strides(net: models.ResNet, strides: list[int]) -> None:
    """Apply IRN-style strides (conv1, layer2, layer3, layer4) to a torchvision ResNet.

    A layer built dilated (``replace_stride_with_dilation``) must keep stride 1; the caller
    checks that with :func:`_check_dilation`.
    """
    from torchvision.models.resnet import Bottleneck

    conv1, s2, s3, s4 = strides
    net.conv1.stride = (conv1, conv1)
    for layer, stride in ((net.layer2, s2), (net.layer3, s3), (net.layer4, s4)):
        block = layer[0]
        if isinstance(block, Bottleneck):
            block.conv2.stride = (stride, stride)
        else:
            block.conv1.stride = (stride, stride)
        if block.downsample is not None:
            block.downsample[0].stride = (stride, stride)


def _check_dilation(arch: str, strides: list[int], dilation: list[bool]) -> None:
    """A dilated layer replaces its stride by dilation, so its configured stride must be 1."""
    for i, (dilated, stride) in enumerate(zip(dilation, strides[1:], strict=True)):
        if dilated and stride != 1:
            raise CamflowInputError(
                f"backbone {arch!r}: backbone.dilation[{i}] is true (layer{i + 2} dilated) but "
                f"backbone.strides[{i + 1}] is {stride}; a dilated layer must have stride 1")


def _resnet(arch: str, strides: list[int], weights: str, dilation: list[bool]) -> Backbone:
    from torchvision import models

    build, imagenet = TORCHVISION_RESNETS[arch]
    net = getattr(models, build)(weights=None, replace_stride_with_dilation=dilation)
    if weights == "imagenet":
        net.load_state_dict(_imagenet_state(getattr(models, imagenet).IMAGENET1K_V1, arch))
    elif weights != "none":
        missing, _ = net.load_state_dict(_load_local_state(weights, arch), strict=False)
        if missing:
            raise CamflowInputError(f"backbone {arch!r}: {weights} lacks weights {missing[:5]}")
    _set_resnet_strides(net, strides)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
    return Backbone([stem, net.layer2, net.layer3, net.layer4],
                    stage_channels=[256, 512, 1024, 2048])


def _timm_resnest(arch: str, strides: list[int], weights: str) -> Backbone:
    """ResNeSt-101/269 from ``timm`` (its deep stem, split-attention blocks and ImageNet
    weights), cut into camflow's four stages.  timm reaches output stride 16 or 8 by dilating
    layer4 (and layer3) rather than by dropping their stride, so ``strides`` may be
    (2, 2, 2, 2), (2, 2, 2, 1) or (2, 2, 1, 1) — the same output strides as IRN's."""
    import timm

    stride = _TIMM_OUTPUT_STRIDE.get(tuple(strides))
    if stride is None:
        raise CamflowInputError(
            f"backbone {arch!r}: backbone.strides {strides} is not one timm builds; use "
            f"{', '.join(str(list(s)) for s in _TIMM_OUTPUT_STRIDE)}")
    name = TIMM_RESNESTS[arch]
    try:
        net = timm.create_model(name, pretrained=weights == "imagenet", output_stride=stride)
    except Exception as exc:  # hub and network errors of many types: no weights here
        raise CamflowInputError(
            f"backbone {arch!r}: could not obtain timm's ImageNet weights of {name} ({exc}); "
            "`weights: imagenet` needs network access once (cached under "
            "~/.cache/huggingface); otherwise set `weights: none` or a checkpoint path") from exc
    if weights not in ("imagenet", "none"):
        missing, _ = net.load_state_dict(_load_local_state(weights, arch), strict=False)
        if missing:
            raise CamflowInputError(f"backbone {arch!r}: {weights} lacks weights {missing[:5]}")
    stem = nn.Sequential(net.conv1, net.bn1, net.act1, net.maxpool, net.layer1)
    return Backbone([stem, net.layer2, net.layer3, net.layer4],
                    stage_channels=[256, 512, 1024, 2048])


def _vgg16(weights: str) -> Backbone:
    """VGG-16 (with BN) cut into four stages; pool5 dropped, output stride 16."""
    from torchvision import models

    net = models.vgg16_bn(weights=None)
    if weights == "imagenet":
        net.load_state_dict(
            _imagenet_state(models.VGG16_BN_Weights.IMAGENET1K_V1, "vgg16"))
    elif weights != "none":
        net.load_state_dict(_load_local_state(weights, "vgg16"), strict=False)
    layers = list(net.features.children())
    pools = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
    # stages end after pool2, pool3, pool4 and conv5_3 (+BN+ReLU); pool5 is removed.
    cuts = [0, pools[1] + 1, pools[2] + 1, pools[3] + 1, pools[4]]
    stages = [nn.Sequential(*layers[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    return Backbone(stages, stage_channels=[128, 256, 512, 512])


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


def _resnet_small(strides: list[int], widths: list[int], blocks: list[int],
                  weights: str, dilation: list[bool]) -> Backbone:
    """A small ResNet of basic blocks for CPU runs; same stage/stride layout as ResNet-50.

    Dilation follows torchvision's rule: a dilated layer doubles the rate, its first block
    keeping the previous one.
    """
    conv1, s2, s3, s4 = strides
    stem = [nn.Conv2d(3, widths[0], 7, conv1, 3, bias=False), nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    stages: list[nn.Module] = []
    cin, rate = widths[0], 1
    layers = zip(widths, blocks, (1, s2, s3, s4), (False, *dilation), strict=True)
    for i, (width, n, stride, dilated) in enumerate(layers):
        previous = rate
        if dilated:
            rate *= 2
        layer = [_BasicBlock(cin if j == 0 else width, width, stride if j == 0 else 1,
                             previous if j == 0 else rate)
                 for j in range(n)]
        stages.append(nn.Sequential(*(stem if i == 0 else []), *layer))
        cin = width
    backbone = Backbone(stages, stage_channels=widths)
    if weights == "imagenet":
        raise CamflowInputError(
            "backbone 'resnet_small' has no ImageNet weights (config key backbone.weights); "
            "use none or a checkpoint path")
    if weights != "none":
        backbone.load_state_dict(_load_local_state(weights, "resnet_small"))
    return backbone


def _dilation(cfg: dict[str, Any], arch: str, strides: list[int]) -> list[bool]:
    """The optional ``dilation`` key: three booleans (layer2, layer3, layer4), ResNets only."""
    raw = cfg.get("dilation")
    if raw is None:
        return [False, False, False]
    if not (isinstance(raw, list | tuple) and len(raw) == 3
            and all(isinstance(d, bool) for d in raw)):
        raise CamflowInputError(
            f"backbone {arch!r}: backbone.dilation must be three booleans (layer2, layer3, "
            f"layer4), got {raw!r}")
    dilation = list(raw)
    if any(dilation) and arch not in (*TORCHVISION_RESNETS, "resnet_small"):
        raise CamflowInputError(
            f"backbone {arch!r}: backbone.dilation is only supported for ResNets")
    _check_dilation(arch, strides, dilation)
    return dilation


def build_backbone(cfg: dict[str, Any]) -> Backbone:
    """Build a backbone from its config block (``arch``, ``strides``, ``weights``, optional
    ``dilation``, ...)."""
    arch = cfg["arch"]
    weights = str(cfg.get("weights", "none"))
    strides = list(cfg.get("strides", [2, 2, 2, 1]))
    if arch in TORCHVISION_RESNETS:
        return _resnet(arch, strides, weights, _dilation(cfg, arch, strides))
    if arch == "vgg16":
        _dilation(cfg, arch, strides)
        return _vgg16(weights)
    if arch in TIMM_RESNESTS:
        _dilation(cfg, arch, strides)
        return _timm_resnest(arch, strides, weights)
    if arch == "resnet_small":
        return _resnet_small(strides, list(cfg["widths"]), list(cfg["blocks"]), weights,
                             _dilation(cfg, arch, strides))
    raise CamflowInputError(f"unknown backbone arch {arch!r} (config key backbone.arch); "
                            f"known: {', '.join(ARCHS)}")
