"""C²AM and C²AM-H: class-agnostic saliency from contrastive learning, with hints from priors.

C²AM (Xie et al. 2022, as David et al. write it in P-NOC Sec. 2.4.4, Eq. 7) maps a feature
extractor's embedding A_i (C×h×w) of each image through a "disentangling" head φ to the
probability p_i^{hw} that a position belongs to the first partition, pools the foreground
and background embeddings v^f_i = φ(A_i)∘A_i and v^b_i = (1 − φ(A_i))∘A_i over positions,
and over a batch of n images compares them with three cosine-similarity matrices S^f, S^b
(fg–fg, bg–bg) and S^neg (fg–bg)::

    L_C²AM = L_pos-f + L_pos-b + L_neg
    L_pos-x = −1/(n(n−1)) Σ_{i≠j} w^x_ij log s^x_ij,   w^x_ij = exp(−α · rank(s^x_ij))
    L_neg   = −1/n² Σ_{i,j} log(1 − s^neg_ij)

C²AM-H (P-NOC Sec. 4.1, Eq. 11) adds the hint term
λ_h Σ_i Σ_{h,w} 1[A_i^{hw} > δ_fg] ℓ_cls(ŷ_i^{hw}, p_i^{hw}) with hints ŷ = 1 where a CAM
source's prior exceeds δ_fg, which anchors the partition: the foreground is the salient one.

Choices where the paper is silent or disagrees with the authors' code
(``docs/fidelity.md``, "C²AM-H"):

* Eq. 7 prints the positive terms without the minus sign; read literally, minimising them
  would push similar images *apart*, against the text ("approximate the representations of
  the most visually similar patches") and both authors' code (−log s). camflow uses −log s.
* rank(s_ij) is the rank of s_ij among image i's similarities to the other images, the most
  similar first (rank 0), as both codes compute it (per row, the self-pair ranked first and
  shifted out).
* Similarities are clamped to [5e-4, 1 − 5e-4] before the logarithms (both codes; the paper
  needs some guard, since log 0 is undefined).
* ``pair_mean: paper`` averages the positive terms over the n(n−1) pairs i ≠ j; ``code``
  averages over all n² entries, the self-pairs included (their log-similarity is the clamp's
  log(1 − 5e-4) ≈ −5e-4, weighted by e^α), as ``core/ccam.py`` does.
* ``hints.reduction: sum`` sums ℓ_cls over the hinted pixels of the batch (Eq. 11);
  ``mean`` averages it over them (``scripts/ccam/train_hints.py``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from camflow.cache import CamCache, SaliencyCacheWriter
from camflow.data.base import SegmentationDataset
from camflow.data.transforms import joint_augment, torch_nearest
from camflow.io import CamflowInputError
from camflow.methods.cam import fuse_tta, max_normalize
from camflow.models.backbones import Backbone
from camflow.runtime import progress_bar, seed_everything
from camflow.saliency import SaliencyMethod, register_saliency
from camflow.trainer import OptimizerSpec, Progress, Update

SIMILARITY_CLAMP = 5e-4


class C2AMNetwork(nn.Module):
    """Feature extractor f and disentangling head φ of C²AM (P-NOC Sec. 2.4.4).

    A = the last two stages' features (the last upsampled to the previous one's grid if
    their sizes differ), concatenated: "low and high level features" (Sec. 2.4.4; the code
    concatenates stages 3 and 4). φ is a 3×3 convolution to one channel and a batch norm,
    whose sigmoid is p^{hw}, the probability of the first partition (the code's
    ``Disentangler``). ``forward`` returns (v^f, v^b, logits): v^f = Σ_hw p·A / hw and
    v^b = Σ_hw (1 − p)·A / hw (n×C each) and φ's logits (n×h×w).
    """

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone
        channels = sum(self.backbone.stage_channels[-2:])
        self.head = nn.Sequential(nn.Conv2d(channels, 1, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        low, high = self.backbone(x)[-2:]
        if high.shape[-2:] != low.shape[-2:]:
            high = F.interpolate(high, low.shape[-2:], mode="bilinear", align_corners=False)
        feats = torch.cat([high, low], dim=1)
        logits = self.head(feats)[:, 0]
        p = torch.sigmoid(logits).flatten(1)[:, None]            # n×1×hw
        a = feats.flatten(2).transpose(1, 2)                      # n×hw×C
        hw = a.shape[1]
        fg = (p @ a)[:, 0] / hw
        bg = ((1 - p) @ a)[:, 0] / hw
        return fg, bg, logits


def cosine_similarities(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """n×m cosine similarities of the rows of ``a`` (n×C) and ``b`` (m×C), clamped to
    [5e-4, 1 − 5e-4] (module doc)."""
    sim = F.normalize(a, dim=1) @ F.normalize(b, dim=1).t()
    return sim.clamp(SIMILARITY_CLAMP, 1 - SIMILARITY_CLAMP)


def rank_weights(sim: torch.Tensor, alpha: float) -> torch.Tensor:
    """w_ij = exp(−α · rank(s_ij)) (Eq. 7): rank 0 for the image j ≠ i most similar to i,
    1 for the next, …; the self-pair gets weight 0 (it is not a pair of Eq. 7)."""
    n = sim.shape[0]
    off = sim.masked_fill(torch.eye(n, dtype=torch.bool, device=sim.device), float("-inf"))
    order = off.argsort(dim=1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=sim.device).expand(n, n).contiguous())
    weights = torch.exp(-alpha * rank.to(sim.dtype))
    return weights.masked_fill(torch.eye(n, dtype=torch.bool, device=sim.device), 0.0)


def positive_loss(feats: torch.Tensor, alpha: float,
                  pair_mean: Literal["paper", "code"] = "paper") -> torch.Tensor:
    """L_pos of Eq. 7 for pooled embeddings ``feats`` (n×C): rank-weighted −log s_ij."""
    sim = cosine_similarities(feats, feats)
    n = sim.shape[0]
    terms = -rank_weights(sim, alpha) * torch.log(sim)
    if pair_mean == "paper":
        return terms.sum() / (n * (n - 1))
    # core/ccam.py: self-pairs ranked first (rank −1, weight e^α), mean over n² entries
    self_terms = -torch.exp(torch.tensor(alpha, dtype=sim.dtype)) * torch.log(sim.diagonal())
    return (terms.sum() + self_terms.sum()) / (n * n)


def negative_loss(fg: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """L_neg of Eq. 7: −1/n² Σ_ij log(1 − s^neg_ij), s^neg between foreground and background."""
    return -torch.log(1 - cosine_similarities(bg, fg)).mean()


def c2am_loss(fg: torch.Tensor, bg: torch.Tensor, alpha: float,
              pair_mean: Literal["paper", "code"] = "paper") -> dict[str, torch.Tensor]:
    """The three terms of Eq. 7 for a batch's pooled embeddings v^f, v^b (n×C each, n ≥ 2)."""
    if fg.shape[0] < 2:
        raise ValueError(f"C²AM's contrast needs at least 2 images per batch, got {fg.shape[0]}")
    return {"pos_f": positive_loss(fg, alpha, pair_mean),
            "pos_b": positive_loss(bg, alpha, pair_mean),
            "neg": negative_loss(fg, bg)}


def hint_loss(logits: torch.Tensor, prior: torch.Tensor, delta_fg: float,
              delta_bg: float | None = None,
              reduction: Literal["sum", "mean"] = "sum") -> torch.Tensor:
    """The hint term of Eq. 11 (without λ_h): binary cross-entropy between φ's logits (n×h×w)
    and the hints taken from a prior (n×h×w, a CAM source's map in [0, 1]).

    Pixels with prior > ``delta_fg`` are foreground hints (target 1), the only ones Eq. 11
    uses. With ``delta_bg`` set, pixels with prior < ``delta_bg`` are background hints
    (target 0) as well — the variant the authors' code leaves commented out; P-NOC's
    Figure 4 draws them at δ_bg = 0.1. ``reduction``: module doc. No hinted pixel: 0.
    """
    fg = prior > delta_fg
    target = torch.ones_like(logits)
    hinted = fg
    if delta_bg is not None:
        bg = prior < delta_bg
        target = fg.to(logits.dtype)
        hinted = fg | bg
    if not hinted.any():
        return logits.sum() * 0.0
    loss = F.binary_cross_entropy_with_logits(logits[hinted], target[hinted], reduction="sum")
    return loss / hinted.sum() if reduction == "mean" else loss


def foreground_is_first(saliency: torch.Tensor, prior: torch.Tensor, delta_fg: float) -> bool:
    """Whether φ's first partition is the foreground, judged against a prior: the mean
    saliency where the prior exceeds ``delta_fg`` is at least the mean elsewhere.

    C²AM's partition has no anchor (P-NOC Sec. 2.4.4, drawback ii), so a run may learn the
    background as its first partition; its saliency is then 1 − p. ``saliency`` and
    ``prior`` are maps of the same images (…×h×w). Without any pixel on one side of the
    threshold the question has no answer and the partition is kept (True).
    """
    inside = prior > delta_fg
    if not inside.any() or inside.all():
        return True
    return bool(saliency[inside].mean() >= saliency[~inside].mean())


def strongest_map(priors: CamCache, image_id: str, size: tuple[int, int]) -> np.ndarray:
    """float32 H×W: the maximum over the image's classes of its full-resolution CAMs in
    ``priors`` (0 without a class); a CAM of another size than the image names both."""
    _, cams = priors.read(image_id, "full")
    if cams.shape[1:] != size:
        raise CamflowInputError(
            f"image {image_id!r} is {size[1]}x{size[0]} but its CAM in {priors.path} "
            f"is {cams.shape[2]}x{cams.shape[1]}")
    if cams.shape[0] == 0:
        return np.zeros(size, dtype=np.float32)
    return cams.max(axis=0).astype(np.float32)


class HintDataset(Dataset):
    """A split's images with IRN's augmentation and, for C²AM-H, each image's prior: the
    maximum over its classes of a CAM cache's full-resolution maps (0 without a class),
    augmented with the image (resized nearest, padded with 0: no hint). Seeded by
    ``(seed, epoch, index)`` like :class:`~camflow.data.transforms.ClassificationDataset`."""

    def __init__(self, dataset: SegmentationDataset, split: str, augment: dict[str, Any],
                 seed: int, priors: CamCache | None = None) -> None:
        self.dataset, self.augment, self.seed, self.priors = dataset, augment, seed, priors
        self.ids = dataset.ids(split)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image_id = self.ids[index]
        image = self.dataset.load_image(image_id)
        prior = (None if self.priors is None
                 else strongest_map(self.priors, image_id, image.shape[:2])[None])
        x, prior = joint_augment(image, self.augment, rng, prior, fill=0.0,
                                 resize_maps=torch_nearest)
        hints = torch.zeros(0) if prior is None else torch.from_numpy(prior[0])
        return torch.from_numpy(x), hints


class C2AMTraining:
    """C²AM, or C²AM-H when ``cfg["hints"]`` is set, as a :class:`camflow.trainer.TrainingTask`.

    ``cfg``: ``alpha`` (rank weight α), ``pair_mean`` (module doc), ``hints``
    (``delta_fg``, ``delta_bg``, ``weight`` λ_h, ``reduction``), ``optimizer`` (SGD with
    polynomial decay; the head at ``head_lr_mult`` × lr), ``augment``, ``seed``. The hints
    are bicubically resized to φ's grid (the code's ``interp`` for CAM priors) before the
    threshold.
    """

    def __init__(self, cfg: dict[str, Any], dataset: SegmentationDataset, split: str,
                 backbone: Backbone, priors: CamCache | None, device: torch.device) -> None:
        seed_everything(int(cfg["seed"]))
        if cfg.get("hints") and priors is None:
            raise ValueError("C²AM-H needs the priors' CAM cache for its hints")
        self.model = C2AMNetwork(backbone).to(device)
        self.networks = {"c2am": self.model}
        self.cfg, self.dataset, self.split, self.priors = cfg, dataset, split, priors
        self.device = device

    def optimizers(self) -> dict[str, OptimizerSpec]:
        opt = self.cfg["optimizer"]
        lr, wd = float(opt["lr"]), float(opt["weight_decay"])
        head = lr * float(opt["head_lr_mult"])
        return {"c2am": OptimizerSpec([
            {"params": list(self.model.backbone.parameters()), "lr": lr, "initial_lr": lr,
             "weight_decay": wd},
            {"params": list(self.model.head.parameters()), "lr": head, "initial_lr": head,
             "weight_decay": wd}], opt)}

    def training_data(self) -> HintDataset:
        priors = self.priors if self.cfg.get("hints") else None
        return HintDataset(self.dataset, self.split, self.cfg["augment"], int(self.cfg["seed"]),
                           priors)

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], progress: Progress,
             update: Update) -> dict[str, torch.Tensor]:
        images, priors = (t.to(self.device) for t in batch)
        fg, bg, logits = self.model(images)
        terms = c2am_loss(fg.float(), bg.float(), float(self.cfg["alpha"]),
                          self.cfg["pair_mean"])
        hints = self.cfg.get("hints")
        if hints:
            grid = F.interpolate(priors[:, None], logits.shape[-2:], mode="bicubic",
                                 align_corners=False)[:, 0]
            terms["hint"] = float(hints["weight"]) * hint_loss(
                logits.float(), grid, float(hints["delta_fg"]), hints.get("delta_bg"),
                hints["reduction"])
        terms["total"] = sum(terms.values())
        update("c2am", terms["total"])
        return {k: v.detach() for k, v in terms.items()}


def partition_sign(model: C2AMNetwork, dataset: SegmentationDataset, ids: list[str],
                   priors: CamCache, delta_fg: float, device: torch.device) -> int:
    """+1 if φ's first partition is the foreground on these images, −1 if it is the
    background (:func:`foreground_is_first` on φ's probabilities at scale 1, resized to each
    image, against the priors' strongest class map) — the anchor C²AM lacks, taken from the
    same priors C²AM-H's hints come from."""
    saliency, prior = [], []
    model.eval()
    with torch.no_grad():
        for image_id in ids:
            image = dataset.load_image(image_id)
            logits = fuse_tta(lambda x: model(x)[2][:, None], [image], [1.0], False,
                              [(image.shape[:2], 1)], device)[0]
            saliency.append(torch.sigmoid(logits[0, 0]).flatten().cpu())
            prior.append(torch.from_numpy(
                strongest_map(priors, image_id, image.shape[:2])).flatten())
    return 1 if foreground_is_first(torch.cat(saliency), torch.cat(prior), delta_fg) else -1


def saliency_map(model: C2AMNetwork, image: np.ndarray, sign: int, scales: list[float],
                 flip: bool, grid: int, device: torch.device) -> np.ndarray:
    """C²AM's saliency of one image (float32 H×W in [0, 1]): ReLU of φ's logits (of the
    foreground partition: ``sign``), summed over scales and flips and divided by its maximum,
    as the authors' ``scripts/ccam/inference.py`` (its default ``relu`` activation) and
    camflow's CAM inference (:func:`~camflow.methods.cam.fuse_tta`) do."""
    with torch.no_grad():
        full = fuse_tta(lambda x: F.relu(sign * model(x)[2])[:, None], [image], scales, flip,
                        [(image.shape[:2], grid)], device)[0]
    return max_normalize(full[0, 0].float()).cpu().numpy()


def make_saliency(model: C2AMNetwork, dataset: SegmentationDataset, split: str,
                  out_path: str | Path, sign: int, scales: list[float], flip: bool, grid: int,
                  device: torch.device, provenance: dict[str, Any] | None = None,
                  progress: bool = True) -> Path:
    """:func:`saliency_map` of every image of ``split`` into a saliency cache; the
    provenance records which partition was taken as the foreground (``sign``)."""
    model.eval()
    meta = {"split": split, "scales": list(scales), "flip": flip, "grid": grid,
            "first_partition": "foreground" if sign > 0 else "background", **(provenance or {})}
    ids = dataset.ids(split)
    with SaliencyCacheWriter(out_path, meta) as writer:
        for image_id in progress_bar(progress, iterable=ids, desc=f"saliency {split}"):
            writer.add(image_id, saliency_map(model, dataset.load_image(image_id), sign,
                                              scales, flip, grid, device))
    return Path(out_path)


def load_c2am(path: str | Path, device: torch.device) -> C2AMNetwork:
    """The trained C²AM network of a ``train_saliency`` checkpoint (eval mode)."""
    from camflow.models.backbones import build_backbone
    from camflow.runtime import load_checkpoint

    ckpt = load_checkpoint(path)
    if ckpt.get("method") != "c2am" or "config" not in ckpt:
        raise CamflowInputError(f"checkpoint {path} is not a C²AM checkpoint")
    backbone = build_backbone({**ckpt["config"]["backbone"], "weights": "none"})
    model = C2AMNetwork(backbone)
    model.load_state_dict(ckpt["networks"]["c2am"])
    return model.to(device).eval()


@register_saliency("c2am")
class C2AMSaliency(SaliencyMethod):
    """C²AM (``hints: false``) or C²AM-H (``hints`` set) as a saliency source: trained on the
    train split (:class:`C2AMTraining`; C²AM-H's hints from the CAMs of ``priors``, a
    ``classifier/source``), its maps oriented by :func:`partition_sign` against the same
    priors on the first ``sign_images`` training images, then inferred with the authors'
    test-time augmentation (:func:`saliency_map`)."""

    learned = True
    schema: ClassVar[dict[str, Any]] = {
        "required": ["priors", "backbone", "optimizer", "batch_size", "epochs", "augment"],
        "properties": {
            "priors": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$",
                       "description": "classifier/source whose CAMs give the hints and the "
                                      "partition's sign"},
            "hints": {
                "description": "C²AM-H's hint term (Eq. 11); false: C²AM",
                "anyOf": [{"const": False}, {
                    "type": "object", "additionalProperties": False,
                    "properties": {
                        "delta_fg": {"type": "number", "minimum": 0, "maximum": 1,
                                     "default": 0.4},
                        "delta_bg": {"type": ["number", "null"], "minimum": 0, "maximum": 1,
                                     "default": None},
                        "weight": {"type": "number", "minimum": 0, "default": 1.0},
                        "reduction": {"enum": ["sum", "mean"], "default": "sum"}}}],
                "default": False},
            "backbone": {"$ref": "#/$defs/classifier/properties/backbone"},
            "alpha": {"type": "number", "minimum": 0, "default": 0.25},
            "pair_mean": {"enum": ["paper", "code"], "default": "paper"},
            "optimizer": {"allOf": [{"$ref": "#/$defs/sgd"}, {"required": ["head_lr_mult"]}]},
            "batch_size": {"type": "integer", "minimum": 2},
            "epochs": {"type": "integer", "minimum": 1},
            "augment": {"$ref": "#/$defs/augment"},
            "seed": {"type": "integer", "minimum": 0, "default": 0},
            "sign_threshold": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.4},
            "sign_images": {"type": "integer", "minimum": 1, "default": 200},
            "scales": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0},
                       "minItems": 1, "default": [1.0, 0.5, 1.5, 2.0]},
            "flip": {"type": "boolean", "default": True},
            "grid": {"type": "integer", "minimum": 1, "default": 16},
        },
    }

    @classmethod
    def inference_inputs(cls, cfg: dict[str, Any], prefix: str, train_split: str,
                         name: str) -> dict[str, str]:
        """The priors' train-split CAMs: the partition's sign (and C²AM-H's hints)."""
        return {"priors": f"{prefix}/{cfg['priors']}/{train_split}/cams.h5"}

    @classmethod
    def training_inputs(cls, cfg: dict[str, Any], prefix: str, train_split: str,
                        name: str) -> dict[str, str]:
        """C²AM-H reads its hints from the priors; C²AM trains on the images alone."""
        return cls.inference_inputs(cfg, prefix, train_split, name) if cfg["hints"] else {}

    @classmethod
    def train(cls, cfg: dict[str, Any], dataset: SegmentationDataset, split: str,
              inputs: dict[str, str], out_path: str, device: torch.device, workers: int,
              amp: bool) -> None:
        from camflow.models.backbones import build_backbone
        from camflow.trainer import Trainer

        with CamCache(inputs["priors"]) if cfg["hints"] else contextlib.nullcontext() \
                as priors:
            if priors is not None:
                priors.require(dataset.ids(split), f"{dataset.name}/{split}")
            task = C2AMTraining(cfg, dataset, split, build_backbone(cfg["backbone"]),
                                priors, device)
            Trainer(task, cfg, Path(out_path), device,
                    {"cfg": cfg, "priors": priors.provenance if priors is not None else None},
                    workers=workers, amp=amp).fit({"method": "c2am", "config": cfg})

    @classmethod
    def infer(cls, cfg: dict[str, Any], dataset: SegmentationDataset, split: str,
              inputs: dict[str, str], model: str | None, out_path: str,
              device: torch.device, workers: int) -> None:
        assert model is not None
        net = load_c2am(model, device)
        with CamCache(inputs["priors"]) as priors:
            ids = priors.ids[: int(cfg["sign_images"])]
            sign = partition_sign(net, dataset, ids, priors, float(cfg["sign_threshold"]),
                                  device)
        make_saliency(net, dataset, split, out_path, sign, cfg["scales"], cfg["flip"],
                      int(cfg["grid"]), device,
                      {"method": "c2am", "hints": bool(cfg["hints"]), "model": model,
                       "priors": cfg["priors"]})
