"""Puzzle-CAM (Jo & Yu) as P-NOC (David et al.) states it: Sec. 2.4.2, Eq. 3.

The image is cut into ``pieces`` tiles (2×2 quadrants by default), each tile is forwarded
through the same network f, and the tiles' maps are merged back into one map A_re on the
full image's grid.  Training minimises

    L_P = ℓ_cls(p, y) + ℓ_cls(p_re, y) + λ_re·‖A − A_re‖₁        (Eq. 3)

with ℓ_cls the multi-label soft-margin loss (optionally label-smoothed), p = σ(GAP(A)),
p_re = σ(GAP(A_re)), ‖·‖₁ the mean absolute error over the maps A = f(x) (before the ReLU,
A = f^c(x) in Sec. 2.4.1), and λ_re rising linearly from ``re_weight_init`` (0) to
``re_weight`` (4) over the first ``re_ramp`` (half) of training (Sec. 6.1).

The published code (``scripts/cam/train_pnoc.py``) averages the absolute error over every
entry but zeroes those of the classes absent from the image; ``re_classes: present`` is that
behaviour, ``all`` (the default) the paper's (``docs/fidelity.md``, P-NOC).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from camflow.io import CamflowInputError
from camflow.methods.base import register_method
from camflow.methods.cam import ClassifierMethod
from camflow.models.classifier import CAMClassifier, multilabel_loss
from camflow.trainer import Progress, Update, linear_ramp

PUZZLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "default": {},
    "description": "Puzzle-CAM (P-NOC (David et al.) Eq. 3)",
    "properties": {
        "pieces": {"enum": [4, 9, 16], "default": 4,
                   "description": "tiles per image (a square number; the paper: 4)"},
        "re_weight": {"type": "number", "minimum": 0, "default": 4.0,
                      "description": "lambda_re at the end of its ramp (Sec. 6.1: 4)"},
        "re_weight_init": {"type": "number", "minimum": 0, "default": 0.0,
                           "description": "lambda_re at the start (Sec. 6.1: 0)"},
        "re_ramp": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5,
                    "description": "fraction of training over which lambda_re rises "
                                   "(Sec. 6.1: the first half)"},
        "re_classes": {"enum": ["all", "present"], "default": "all",
                       "description": "all: the paper's mean over every class map; "
                                      "present: the code's, absent classes zeroed"},
    },
}


def tile(x: torch.Tensor, pieces: int) -> torch.Tensor:
    """Cut B×C×H×W into ``pieces`` = n² equal tiles, stacked tile-major: the result is
    (n²·B)×C×(H/n)×(W/n), tile (row i, column j) of every image at rows
    [(i·n + j)·B, (i·n + j + 1)·B)."""
    n = math.isqrt(pieces)
    b, c, h, w = x.shape
    if n * n != pieces or h % n or w % n:
        raise CamflowInputError(f"Puzzle-CAM: a {h}x{w} input does not split into {pieces} "
                                "equal tiles; make the training crop (augment.crop) a "
                                f"multiple of {n}")
    t = x.reshape(b, c, n, h // n, n, w // n).permute(2, 4, 0, 1, 3, 5)
    return t.reshape(n * n * b, c, h // n, w // n)


def merge(tiles: torch.Tensor, pieces: int) -> torch.Tensor:
    """The inverse of :func:`tile`: (n²·B)×C×h×w tiles back to B×C×(n·h)×(n·w)."""
    n = math.isqrt(pieces)
    nb, c, h, w = tiles.shape
    b = nb // (n * n)
    t = tiles.reshape(n, n, b, c, h, w).permute(2, 3, 0, 4, 1, 5)
    return t.reshape(b, c, n * h, n * w)


def puzzle_maps(classifier: CAMClassifier, images: torch.Tensor,
                pieces: int) -> torch.Tensor:
    """A_re = merge(f(tile(x))) (Sec. 2.4.2): the tiles' maps on the full image's grid.  The
    network's output stride must divide the tile size, so that A_re and A align."""
    return merge(classifier.head(classifier.features(tile(images, pieces))), pieces)


def reconstruction_loss(maps: torch.Tensor, re_maps: torch.Tensor, targets: torch.Tensor,
                        classes: str) -> torch.Tensor:
    """‖A − A_re‖₁ of Eq. 3, the mean absolute error over B×K×h×w; ``classes="present"``
    zeroes the entries of absent classes before the mean (the published code)."""
    if maps.shape != re_maps.shape:
        raise CamflowInputError(
            f"Puzzle-CAM: the merged tile maps are {tuple(re_maps.shape[-2:])}, the image's "
            f"maps {tuple(maps.shape[-2:])}; make the training crop (augment.crop) a "
            "multiple of the tile count's side times the network's output stride")
    error = (maps - re_maps).abs()
    if classes == "present":
        error = error * targets[:, :, None, None]
    return error.mean()


def re_weight(cfg: dict[str, Any], progress: Progress) -> float:
    """λ_re: ``re_weight_init`` → ``re_weight`` linearly over the first ``re_ramp`` of
    training, then constant (Sec. 6.1: 0 → 4 over the first half)."""
    return linear_ramp(progress, float(cfg["re_weight_init"]), float(cfg["re_weight"]),
                       until=float(cfg["re_ramp"]))


def puzzle_terms(classifier: CAMClassifier, images: torch.Tensor, targets: torch.Tensor,
                 maps: torch.Tensor, cfg: dict[str, Any], smoothing: float,
                 progress: Progress) -> dict[str, torch.Tensor]:
    """The two Puzzle terms of Eq. 3 beyond ℓ_cls(p, y), given A = ``maps``:
    ``re_cls`` = ℓ_cls(p_re, y) and ``re`` = λ_re·‖A − A_re‖₁ (already weighted)."""
    re_maps = puzzle_maps(classifier, images, int(cfg["pieces"]))
    return {"re_cls": multilabel_loss(re_maps.mean(dim=(2, 3)), targets, smoothing),
            "re": re_weight(cfg, progress) * reconstruction_loss(maps, re_maps, targets,
                                                                  cfg["re_classes"])}


@register_method("puzzle")
class Puzzle(ClassifierMethod):
    """Puzzle-CAM (P-NOC (David et al.) Eq. 3; module doc)."""

    schema = {"properties": {"puzzle": PUZZLE_SCHEMA}}

    def step(self, batch: tuple[torch.Tensor, ...], progress: Progress,
             update: Update) -> dict[str, torch.Tensor]:
        images, targets = batch[0].to(self.device), batch[1].to(self.device)
        maps = self.classifier.head(self.classifier.features(images))
        terms = {"cls": multilabel_loss(maps.mean(dim=(2, 3)), targets, self.label_smoothing),
                 **puzzle_terms(self.classifier, images, targets, maps, self.cfg["puzzle"],
                                self.label_smoothing, progress)}
        loss = sum(terms.values())
        update("classifier", loss)
        return {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}}
