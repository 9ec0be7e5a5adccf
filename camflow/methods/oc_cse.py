"""OC-CSE (Kweon et al.) and P-OC as P-NOC (David et al.) states them: Sec. 2.4.3 and 3.1,
Eq. 2 and 4–8.

For each image a class r is drawn uniformly from its labels; the image is erased by its own
soft CAM, x ∘ (1 − ψ(A^r)) (Eq. 4–5, ψ = ReLU then divide by the maximum, Eq. 2), with the
gradient flowing through the mask into f; the erased image goes through a frozen *ordinary
classifier* oc — any trained camflow classifier, ``oc`` names it — which must then not find
r any more but still find the other labels:

    L_OC-CSE = ℓ_cls(p, y) + λ_cse·ℓ_cls(p_oc, y ∖ {r})          (Eq. 6)
    L_P-OC   = L_P + λ_cse·ℓ_cls(p_oc, y ∖ {r})                   (Eq. 8)

λ_cse rises linearly from 0.3 to 1 over training (Sec. 6.1).  ψ(A^r) is computed on the
ReLU of the maps upsampled bilinearly to the image, divided by its maximum over the image
(the paper's Eq. 2: one map, its own maximum); OC-CSE's and P-NOC's published code divide
by the maximum over the whole *batch* instead (``core/occse.py``, ``globalnorm=True``,
"OC-CSE's default policy"): ``cse.normalization: batch`` (``docs/fidelity.md``, P-NOC).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from camflow.io import CamflowInputError, stat_fingerprint
from camflow.methods.base import TrainingMethod, load_method, register_method
from camflow.methods.cam import ClassifierMethod
from camflow.methods.puzzle import PUZZLE_SCHEMA, puzzle_terms
from camflow.models.classifier import CAMClassifier, multilabel_loss
from camflow.trainer import Progress, Update, linear_ramp

CSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "default": {},
    "description": "class-specific erasing (P-NOC (David et al.) Eq. 4-6)",
    "properties": {
        "weight": {"type": "number", "minimum": 0, "default": 1.0,
                   "description": "lambda_cse at the end of training (Sec. 6.1: 1)"},
        "weight_init": {"type": "number", "minimum": 0, "default": 0.3,
                        "description": "lambda_cse at the start (Sec. 6.1: 0.3)"},
        "ramp": {"type": "number", "minimum": 0, "maximum": 1, "default": 1.0,
                 "description": "fraction of training over which lambda_cse rises (1: all)"},
        "normalization": {"enum": ["image", "batch"], "default": "image",
                          "description": "psi's maximum: image (Eq. 2) or batch (the code)"},
    },
}
OC_PROPERTY: dict[str, Any] = {
    "type": "string",
    "description": "the ordinary classifier: a classifier name under `classifiers` (trained "
                   "by its own rule; the paper trains it with RandAugment)",
}


def psi(maps: torch.Tensor, normalization: str = "image", eps: float = 1e-5) -> torch.Tensor:
    """ψ (Eq. 2): ReLU(A) divided by its maximum over each B×1 map's pixels (``image``) or
    over the whole batch (``batch``, the published code), in [0, 1]; not detached."""
    relu = F.relu(maps)
    peak = relu.amax() if normalization == "batch" else relu.amax(dim=(-2, -1), keepdim=True)
    return relu / (peak + eps)


def sample_erased_class(targets: torch.Tensor) -> torch.Tensor:
    """r for each image (Sec. 2.4.3): a class drawn uniformly from its labels (targets > 0.5;
    torch's generator, reseeded per step by the trainer)."""
    present = (targets > 0.5).to(torch.float32)
    if bool((present.sum(dim=1) == 0).any()):
        raise CamflowInputError("class-specific erasing: a training image has no label")
    return torch.multinomial(present, 1).squeeze(1)


def erased_class_map(maps: torch.Tensor, r: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A^r (B×1×H×W): each image's map of its class ``r``, upsampled bilinearly to ``size``."""
    chosen = maps[torch.arange(len(r), device=maps.device), r][:, None]
    return F.interpolate(chosen, size, mode="bilinear", align_corners=False)


def soft_erase(images: torch.Tensor, maps: torch.Tensor, r: torch.Tensor,
               normalization: str) -> torch.Tensor:
    """x ∘ (1 − ψ(A^r)) (Eq. 4–5) on the normalised images; the gradient reaches f through
    the mask."""
    mask = psi(erased_class_map(maps, r, tuple(images.shape[-2:])), normalization)
    return images * (1.0 - mask)


def remaining_labels(targets: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """y ∖ {r}: the targets with each image's erased class set to 0."""
    out = targets.clone()
    out[torch.arange(len(r), device=targets.device), r] = 0.0
    return out


def cse_weight(cfg: dict[str, Any], progress: Progress) -> float:
    """λ_cse: ``weight_init`` → ``weight`` linearly over the first ``ramp`` of training
    (Sec. 6.1: 0.3 → 1 over all of it)."""
    return linear_ramp(progress, float(cfg["weight_init"]), float(cfg["weight"]),
                       until=float(cfg["ramp"]))


def cse_term(adversary: CAMClassifier, images: torch.Tensor, targets: torch.Tensor,
             maps: torch.Tensor, cfg: dict[str, Any], smoothing: float,
             progress: Progress) -> tuple[torch.Tensor, torch.Tensor]:
    """λ_cse·ℓ_cls(p_oc, y ∖ {r}) (Eq. 6, 8, 9) with the ``adversary`` (oc or noc) on the
    softly erased images; also returns r."""
    r = sample_erased_class(targets)
    logits = adversary(soft_erase(images, maps, r, cfg["normalization"]))
    loss = multilabel_loss(logits, remaining_labels(targets, r), smoothing)
    return cse_weight(cfg, progress) * loss, r


def load_ordinary_classifier(path: str, num_classes: int, key: str) -> CAMClassifier:
    """The CAM network of the checkpoint ``path`` (any method's), on the CPU in eval mode."""
    oc = load_method(path, torch.device("cpu")).classifier
    if oc.head.out_channels != num_classes:
        raise CamflowInputError(f"config key {key!r}: {path} classifies "
                                f"{oc.head.out_channels} classes, this dataset has {num_classes}")
    return oc


def frozen(net: nn.Module) -> nn.Module:
    """``net`` in eval mode with every parameter's gradient off (a fixed adversary that
    gradients pass through)."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class ErasingMethod(ClassifierMethod):
    """The generator f of OC-CSE, P-OC and P-NOC: ℓ_cls(p, y), the Puzzle terms if
    ``use_puzzle``, and the class-specific erasing term against :meth:`adversary`."""

    use_puzzle = False

    def __init__(self, cfg: dict[str, Any], num_classes: int,
                 inputs: dict[str, Any] | None = None) -> None:
        super().__init__(cfg, num_classes, inputs)
        self.oc = (frozen(load_ordinary_classifier(self.inputs["oc"], num_classes, "oc"))
                   if "oc" in self.inputs else None)

    @classmethod
    def input_classifiers(cls, cfg: dict[str, Any]) -> dict[str, str]:
        return {"oc": cfg["oc"]}

    def identity(self) -> dict[str, Any]:
        """A resume state is for this oc checkpoint (replaced: a fresh start)."""
        return {"oc": stat_fingerprint([Path(self.inputs["oc"]).resolve()])}

    def to(self, device: torch.device) -> TrainingMethod:
        if self.oc is not None:
            self.oc.to(device)
        return super().to(device)

    def adversary(self) -> CAMClassifier:
        """The classifier that judges the erased image: the frozen oc."""
        return self.oc

    def generator_terms(self, images: torch.Tensor, targets: torch.Tensor,
                        progress: Progress) -> tuple[dict[str, torch.Tensor], torch.Tensor,
                                                     torch.Tensor]:
        """f's named loss terms, its maps A and the erased classes r."""
        smoothing = self.label_smoothing
        maps = self.classifier.head(self.classifier.features(images))
        terms = {"cls": multilabel_loss(maps.mean(dim=(2, 3)), targets, smoothing)}
        if self.use_puzzle:
            terms.update(puzzle_terms(self.classifier, images, targets, maps,
                                      self.cfg["puzzle"], smoothing, progress))
        terms["cse"], r = cse_term(self.adversary(), images, targets, maps, self.cfg["cse"],
                                   smoothing, progress)
        return terms, maps, r

    def step(self, batch: tuple[torch.Tensor, ...], progress: Progress,
             update: Update) -> dict[str, torch.Tensor]:
        images, targets = batch[0].to(self.device), batch[1].to(self.device)
        terms, _, _ = self.generator_terms(images, targets, progress)
        loss = sum(terms.values())
        update("classifier", loss)
        return {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}}


@register_method("oc_cse")
class OCCSE(ErasingMethod):
    """OC-CSE (Eq. 6; module doc): ℓ_cls(p, y) + λ_cse·ℓ_cls(p_oc, y ∖ {r})."""

    schema = {"required": ["oc"], "properties": {"oc": OC_PROPERTY, "cse": CSE_SCHEMA}}


@register_method("p_oc")
class POC(ErasingMethod):
    """P-OC (Eq. 8; module doc): Puzzle-CAM's L_P plus OC-CSE's erasing term."""

    schema = {"required": ["oc"], "properties": {"oc": OC_PROPERTY, "cse": CSE_SCHEMA,
                                                 "puzzle": PUZZLE_SCHEMA}}
    use_puzzle = True
