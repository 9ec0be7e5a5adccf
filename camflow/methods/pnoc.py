"""P-NOC: adversarial training of the CAM generator f against a *not-so-ordinary* classifier
noc (P-NOC (David et al.) Sec. 3.2, Eq. 9–10, Algorithm 1).

f is trained by P-OC (Eq. 8) with the trainable noc in place of the frozen oc (Eq. 9: the
soft erasure, gradients into f, noc fixed).  Every ``k_noc`` steps f is fixed and noc is
trained to recognise *all* of y on the image hard-erased by f's map of r:

    x̂ = x ∘ [1 − ψ(A^r) > δ_noc]        L_noc = λ_noc·ℓ_cls(p_noc, y)      (Eq. 10)

(Algorithm 1, lines 9–13; the mask carries no gradient), so noc learns the secondary regions
of r that f left.  noc starts from the ordinary classifier's weights (``oc``); λ_noc rises
linearly over training (Sec. 6.1, no values given: ``noc.weight_init`` 0 → ``noc.weight`` 1,
the published code's ``OW_INIT``/``OW``); δ_noc = 0.2.

The published code (``scripts/cam/train_pnoc.py``, ``core/occse.hard_mask_images``) keeps
the pixels with ψ(A^r) ≤ δ_noc (ψ over the image) instead of the paper's 1 − ψ(A^r) > δ_noc
(ψ < 1 − δ_noc): ``noc.mask: code`` (``docs/fidelity.md``, P-NOC).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from camflow.methods.base import register_method
from camflow.methods.oc_cse import (
    CSE_SCHEMA,
    OC_PROPERTY,
    ErasingMethod,
    erased_class_map,
    frozen,
    psi,
)
from camflow.methods.puzzle import PUZZLE_SCHEMA
from camflow.models.classifier import CAMClassifier, multilabel_loss
from camflow.trainer import OptimizerSpec, Progress, Update, linear_ramp

NOC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "default": {},
    "description": "the not-so-ordinary classifier (P-NOC (David et al.) Eq. 10, Alg. 1)",
    "properties": {
        "every": {"type": "integer", "minimum": 1, "default": 1,
                  "description": "k_noc: noc is trained after every k_noc-th step of f "
                                 "(Alg. 1; the code: 1)"},
        "threshold": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1,
                      "default": 0.2, "description": "delta_noc (Sec. 6.1: 0.2)"},
        "mask": {"enum": ["paper", "code"], "default": "paper",
                 "description": "paper: keep 1 - psi > delta; code: keep psi <= delta"},
        "weight": {"type": "number", "minimum": 0, "default": 1.0,
                   "description": "lambda_noc at the end of training (the code: 1)"},
        "weight_init": {"type": "number", "minimum": 0, "default": 0.0,
                        "description": "lambda_noc at the start (the code: 0)"},
        "lr_mult": {"type": "number", "exclusiveMinimum": 0, "default": 1.0,
                    "description": "noc's learning rate over f's (the code: 1)"},
    },
}


def hard_erase(images: torch.Tensor, maps: torch.Tensor, r: torch.Tensor, threshold: float,
               mask: str) -> torch.Tensor:
    """x̂ = x ∘ [1 − ψ(A^r) > δ_noc] (Alg. 1 line 11; ``mask="code"``: [ψ(A^r) ≤ δ_noc]),
    ψ over each image (Eq. 2), computed from detached maps: no gradient reaches f."""
    p = psi(erased_class_map(maps.detach(), r, tuple(images.shape[-2:])))
    keep = (1.0 - p > threshold) if mask == "paper" else (p <= threshold)
    return images * keep.to(images.dtype)


def noc_weight(cfg: dict[str, Any], progress: Progress) -> float:
    """λ_noc: ``weight_init`` → ``weight`` linearly over training (Sec. 6.1)."""
    return linear_ramp(progress, float(cfg["weight_init"]), float(cfg["weight"]))


@register_method("p_noc")
class PNOC(ErasingMethod):
    """P-NOC (module doc): f by P-OC against noc, noc every ``noc.every`` steps."""

    schema = {"required": ["oc"], "properties": {"oc": OC_PROPERTY, "cse": CSE_SCHEMA,
                                                 "puzzle": PUZZLE_SCHEMA, "noc": NOC_SCHEMA}}
    use_puzzle = True

    def __init__(self, cfg: dict[str, Any], num_classes: int,
                 inputs: dict[str, Any] | None = None) -> None:
        super().__init__(cfg, num_classes, inputs)
        if self.oc is not None:  # training: noc starts as a trainable copy of oc
            self.networks["noc"] = copy.deepcopy(self.oc)
            self.oc = None
            self._fix_noc(False)

    @property
    def noc(self) -> CAMClassifier:
        return self.networks["noc"]

    def adversary(self) -> CAMClassifier:
        """noc, fixed during f's step (eval mode; its parameters take no gradient)."""
        return self.noc

    def optimizers(self) -> dict[str, OptimizerSpec]:
        specs = super().optimizers()
        opt = self.cfg["optimizer"]
        groups = self.noc.param_groups(float(opt["lr"]) * float(self.cfg["noc"]["lr_mult"]),
                                       float(opt["head_lr_mult"]), float(opt["weight_decay"]))
        return {**specs, "noc": OptimizerSpec(groups, opt)}

    def _fix_noc(self, fixed: bool) -> None:
        """Fix noc (eval mode, no parameter gradient) or free it for its own step (the
        stages before oc's ``trainable_from_stage`` stay frozen)."""
        if fixed:
            frozen(self.noc)
            return
        self.noc.train()
        for p in self.noc.parameters():
            p.requires_grad_(True)
        for stage in self.noc.backbone.stages[: self.noc.trainable_from_stage - 1]:
            for p in stage.parameters():
                p.requires_grad_(False)

    def step(self, batch: tuple[torch.Tensor, ...], progress: Progress,
             update: Update) -> dict[str, torch.Tensor]:
        images, targets = batch[0].to(self.device), batch[1].to(self.device)
        cfg = self.cfg["noc"]
        self._fix_noc(True)                                     # Alg. 1 lines 5-8
        terms, maps, r = self.generator_terms(images, targets, progress)
        loss = sum(terms.values())
        update("classifier", loss)
        out = {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}}
        if (progress.step + 1) % int(cfg["every"]) == 0:        # Alg. 1 lines 9-13
            self._fix_noc(False)
            erased = hard_erase(images, maps, r, float(cfg["threshold"]), cfg["mask"])
            noc_loss = noc_weight(cfg, progress) * multilabel_loss(
                self.noc(erased), targets, self.label_smoothing)
            update("noc", noc_loss)
            out["noc"] = noc_loss.detach()
            self._fix_noc(True)
        return out
