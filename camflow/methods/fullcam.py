"""Training-free, gradient-based CAM sources: Fully-CAM, Grad-CAM and Grad-CAM++ (Song et
al., "Rethinking CAM in Weakly-Supervised Semantic Segmentation").

All three work on any classifier camflow trains: the class score y_c is the logit of class c
(GAP of the CAM head; Fully-CAM (Song et al.) Eq. 1 — or FC after GAP, Eq. 2, which gives the same
gradients up to the head). Each returns a :data:`camflow.methods.cam.ClassCamFn`, so the
multi-scale + flip fusion of Eq. 12 and the cache are shared with the ``cam`` source.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from camflow.io import CamflowInputError
from camflow.methods.base import TrainingMethod
from camflow.methods.cam import ClassCamFn
from camflow.methods.sources import register_source

EPS = 1e-5


def select_layers(model: nn.Module, layers: Any) -> list[str]:
    """Names of the hooked conv layers (Fully-CAM, Song et al., Table 2).

    ``layers`` is ``"all"`` (every ``nn.Conv2d`` of the backbone), ``{"stages": [4, 3]}``
    (the last conv of each listed backbone stage, 1-based: stage 4 is the paper's "stage 5",
    ResNet-50's ``layer4.2.conv3``) or ``{"names": [...]}`` (module names as in
    ``model.named_modules()``).
    """
    convs = [(n, m) for n, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and n.startswith("backbone.")]
    if layers == "all":
        return [n for n, _ in convs]
    if isinstance(layers, dict) and "stages" in layers:
        names = []
        for stage in layers["stages"]:
            prefix = f"backbone.stages.{int(stage) - 1}."
            in_stage = [n for n, _ in convs if n.startswith(prefix)
                        and ".downsample." not in n]
            if not in_stage:
                raise CamflowInputError(f"fullcam.layers: backbone has no stage {stage}")
            names.append(in_stage[-1])
        return names
    if isinstance(layers, dict) and "names" in layers:
        known = dict(model.named_modules())
        for name in layers["names"]:
            if name not in known:
                raise CamflowInputError(f"fullcam.layers: no module named {name!r}")
        return list(layers["names"])
    raise CamflowInputError(f"fullcam.layers: expected 'all', {{stages: [...]}} or "
                            f"{{names: [...]}}, got {layers!r}")


class _Recorder:
    """Forward hooks keeping the output A^n of each named module (Fully-CAM, Sec. III-B)."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        modules = dict(model.named_modules())
        self.names = list(names)
        self.outputs: dict[str, torch.Tensor] = {}
        self.handles = [modules[n].register_forward_hook(self._hook(n)) for n in self.names]

    def _hook(self, name: str):
        def keep(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            self.outputs[name] = output
        return keep

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _scores(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Class scores y^pred (logits), Fully-CAM (Song et al.) Eq. 4."""
    return model(images)


def fullcam_layer_map(feature: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """CAM^{nc} of one layer: Σ_k relu(A^{nk})·relu(g^{nkc}) / max(...) (Eq. 8–9). B×h×w."""
    cam = feature.clamp(min=0) * grad.clamp(min=0)                      # Eq. 8
    peak = cam.amax(dim=(2, 3), keepdim=True)
    return (cam / (peak + EPS)).sum(dim=1)                              # Eq. 9


def fullcam(model: nn.Module, layers: Any, chunk: int = 1) -> ClassCamFn:
    """Fully-CAM (Song et al., Sec. III-B/C): all hooked layers, one backward per class.

    CGM (Eq. 5–7): for each requested class c one backward of Σ_b y_c reaches every hooked
    layer. FLM: a tensor hook turns each layer's gradient into its map (Eq. 8–9), resized to
    the input (Eq. 10) and added to the class's sum as soon as that gradient exists, so no
    two layers' gradients are held at once; the sum is max-normalised (Eq. 11). Images are
    processed ``chunk`` at a time (the flipped copy included) to bound the autograd graph:
    ResNet-50 with every conv hooked at scale 2 of a 512-pixel image is the case to fit.
    """
    names = select_layers(model, layers)

    def maps(images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        parts = [_fullcam_chunk(model, names, images[i:i + chunk], classes)
                 for i in range(0, len(images), chunk)]
        return torch.cat(parts)

    return maps


def _fullcam_chunk(model: nn.Module, names: Sequence[str], images: torch.Tensor,
                   classes: torch.Tensor) -> torch.Tensor:
    recorder = _Recorder(model, names)
    handles = []
    try:
        with torch.enable_grad():
            images = images.detach().requires_grad_(True)
            scores = _scores(model, images)
            size = images.shape[-2:]
            out = torch.zeros(images.shape[0], len(classes), *size, device=images.device)
            current = [0]

            def accumulate(feature: torch.Tensor):
                def hook(grad: torch.Tensor) -> None:
                    layer = fullcam_layer_map(feature.detach().float(), grad.float())
                    out[:, current[0]] += F.interpolate(layer[:, None], size, mode="bilinear",
                                                        align_corners=False)[:, 0]  # Eq. 10
                return hook

            handles = [recorder.outputs[n].register_hook(accumulate(recorder.outputs[n]))
                       for n in names]
            for j, c in enumerate(classes.tolist()):
                current[0] = j
                torch.autograd.grad(scores[:, c].sum(), images, retain_graph=True)
    finally:
        for handle in handles:
            handle.remove()
        recorder.remove()
    peak = out.amax(dim=(2, 3), keepdim=True)
    return out / (peak + EPS)                                               # Eq. 11


def _layer_grads(model: nn.Module, layer: str, images: torch.Tensor, classes: torch.Tensor
                 ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The chosen layer's output A and ∂y_c/∂A for each requested class c."""
    recorder = _Recorder(model, [layer])
    try:
        with torch.enable_grad():
            images = images.detach().requires_grad_(True)
            scores = _scores(model, images)
            feat = recorder.outputs[layer]
            grads = [torch.autograd.grad(scores[:, c].sum(), feat, retain_graph=True)[0]
                     for c in classes.tolist()]
    finally:
        recorder.remove()
    return feat.detach().float(), [g.float() for g in grads]


def gradcam_weights(grad: torch.Tensor) -> torch.Tensor:
    """Grad-CAM channel weights α_k^c = mean_ij ∂y_c/∂A^k_ij (Selvaraju et al. 2017). B×K."""
    return grad.mean(dim=(2, 3))


def gradcampp_weights(feature: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ weights (Chattopadhay et al. 2018) with y = exp(S): B×K.

    α_ij = g² / (2g² + Σ_ab A_ab · g³) (0 where the denominator vanishes) and
    w_k = Σ_ij α_ij · relu(g_ij); the common factor exp(S) cancels in the normalisation.
    """
    g2, g3 = grad.pow(2), grad.pow(3)
    denom = 2 * g2 + feature.sum(dim=(2, 3), keepdim=True) * g3
    alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, 1.0), 0.0)
    return (alpha * grad.clamp(min=0)).sum(dim=(2, 3))


def gradient_cam(model: nn.Module, layer: str, variant: str) -> ClassCamFn:
    """Grad-CAM (``variant='gradcam'``) or Grad-CAM++ (``'gradcampp'``) on one layer:
    relu(Σ_k w_k^c A^k), resized to the input."""
    if layer not in dict(model.named_modules()):
        raise CamflowInputError(f"{variant}.layer: no module named {layer!r}")
    if variant not in ("gradcam", "gradcampp"):
        raise CamflowInputError(f"unknown gradient CAM variant {variant!r}")

    def maps(images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        feat, grads = _layer_grads(model, layer, images, classes)
        cams = []
        for grad in grads:
            w = gradcam_weights(grad) if variant == "gradcam" else gradcampp_weights(feat, grad)
            cams.append(F.relu((w[:, :, None, None] * feat).sum(dim=1)))
        return torch.stack(cams, dim=1)

    return maps


LAYERS = {
    "description": "all | {stages: [1-4, ...]} | {names: [module, ...]}",
    "oneOf": [{"const": "all"},
              {"type": "object", "additionalProperties": False, "required": ["stages"],
               "properties": {"stages": {"type": "array", "minItems": 1, "items": {
                   "type": "integer", "minimum": 1, "maximum": 4}}}},
              {"type": "object", "additionalProperties": False, "required": ["names"],
               "properties": {"names": {"type": "array", "minItems": 1,
                                        "items": {"type": "string"}}}}]}
CHUNK = {"type": "integer", "minimum": 1, "default": 1,
         "description": "images (flips included) per backward graph; 1 bounds memory"}
LAYER = {"required": ["layer"], "properties": {"layer": {"type": "string",
                                                         "description": "a module name"}}}


@register_source("fullcam", {"required": ["layers"],
                             "properties": {"layers": LAYERS, "chunk": CHUNK}})
def fullcam_source(trained: TrainingMethod, spec: dict[str, Any]) -> ClassCamFn:
    """``sources.<name>``: ``method: fullcam`` with ``layers`` (and ``chunk``)."""
    return fullcam(trained.classifier, spec["layers"], chunk=int(spec["chunk"]))


@register_source("gradcam", LAYER)
def gradcam_source(trained: TrainingMethod, spec: dict[str, Any]) -> ClassCamFn:
    """``sources.<name>``: ``method: gradcam`` on module ``layer``."""
    return gradient_cam(trained.classifier, spec["layer"], "gradcam")


@register_source("gradcampp", LAYER)
def gradcampp_source(trained: TrainingMethod, spec: dict[str, Any]) -> ClassCamFn:
    """``sources.<name>``: ``method: gradcampp`` on module ``layer``."""
    return gradient_cam(trained.classifier, spec["layer"], "gradcampp")
