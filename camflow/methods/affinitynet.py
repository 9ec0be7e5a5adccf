"""AffinityNet (Ahn & Kwak, CVPR 2018, "PSA").

Feature maps of three backbone stages are embedded by 1×1 convolutions (64, 128 and 256
channels, ELU), concatenated and mixed by a 1×1 convolution (448 channels, ELU) on the
stride-8 grid (PSA Sec. 3.2).  The affinity of two pixels is

    a_ij = exp(−‖f_i − f_j‖₁ / C)        (PSA Eq. 3, the mean absolute difference)

for pairs within radius 5, trained with PSA's affinity labels on the stride-8 grid of each
crop (:func:`camflow.refine.affinity_labels.psa_grid_labels` of the CRF scores, as PSA's
``train_aff.py``; :class:`PsaScoreDataset`):

    L = ¼ L_bg⁺ + ¼ L_fg⁺ + ½ L⁻,   L⁺ = −mean log a_ij,   L⁻ = −mean log(1 − a_ij)   (Eq. 7–9).

Unlike IRN's, the backbone is trained as well (×1 learning rate, the new layers ×10).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from camflow.cache import LabelCache
from camflow.data.base import SegmentationDataset
from camflow.data.transforms import AffinityLabelDataset, joint_augment, normalize
from camflow.io import CamflowInputError
from camflow.methods.base import pretrained_backbone
from camflow.models.backbones import Backbone, batch_norms
from camflow.refine.affinity_labels import psa_grid_labels
from camflow.refine.pairs import grid_pairs, pair_labels, region_pairs
from camflow.refine.random_walk import psa_propagate
from camflow.refine.refiners import LearnedRefiner, register_refiner
from camflow.runtime import load_checkpoint, seed_everything
from camflow.trainer import OptimizerSpec, Progress, Update

STRIDE = 8


class AffinityNet(nn.Module):
    """Backbone + PSA's feature embedding on the stride-8 grid (module doc)."""

    def __init__(self, backbone: Backbone, freeze_bn_stats: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.freeze_bn_stats = freeze_bn_stats
        chans = backbone.stage_channels[1:]
        self.embed = nn.ModuleList(nn.Conv2d(c, w, 1, bias=False)
                                   for c, w in zip(chans, (64, 128, 256), strict=True))
        self.mix = nn.Conv2d(448, 448, 1, bias=False)
        for conv in self.embed:
            nn.init.kaiming_normal_(conv.weight)
        nn.init.xavier_uniform_(self.mix.weight, gain=4)

    def train(self, mode: bool = True) -> AffinityNet:
        super().train(mode)
        if mode and self.freeze_bn_stats:
            for m in batch_norms(self):
                m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel features B×448×⌈H/8⌉×⌈W/8⌉ (stages resized bilinearly to that grid)."""
        grid = (-(-x.shape[-2] // STRIDE), -(-x.shape[-1] // STRIDE))
        feats = self.backbone(x)[1:]
        parts = []
        for conv, f in zip(self.embed, feats, strict=True):
            if f.shape[-2:] != grid:
                f = F.interpolate(f, grid, mode="bilinear", align_corners=False)
            parts.append(F.elu(conv(f)))
        return F.elu(self.mix(torch.cat(parts, 1)))

    def param_groups(self, lr: float, head_lr_mult: float,
                     weight_decay: float) -> list[dict[str, Any]]:
        new = list(self.embed.parameters()) + list(self.mix.parameters())
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        return [{"params": backbone, "lr": lr, "initial_lr": lr, "weight_decay": weight_decay},
                {"params": new, "lr": lr * head_lr_mult, "initial_lr": lr * head_lr_mult,
                 "weight_decay": weight_decay}]


def feature_affinity(source: torch.Tensor, partners: torch.Tensor) -> torch.Tensor:
    """exp(−mean_c |f_i − f_j|) for source features …×C×h×w and partners …×C×n×h×w (Eq. 3):
    …×n×h×w."""
    return torch.exp(-(source.unsqueeze(-3) - partners).abs().mean(dim=-4))


def affinitynet_loss(features: torch.Tensor, labels: torch.Tensor,
                     radius: int) -> dict[str, torch.Tensor]:
    """PSA's loss bg/4 + fg/4 + neg/2 (Eq. 7–9) for features B×C×h×w and affinity labels
    B×h×w (0..K, 255 ignore) on the same grid."""
    eps = 1e-5
    pairs = pair_labels(labels, radius)
    aff = feature_affinity(*region_pairs(features.float(), radius))

    def mean(loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (loss * mask).sum() / (mask.sum() + eps)

    bg = mean(-torch.log(aff + eps), pairs["bg_pos"])
    fg = mean(-torch.log(aff + eps), pairs["fg_pos"])
    neg = mean(-torch.log(1 + eps - aff), pairs["neg"])
    return {"bg_pos": bg, "fg_pos": fg, "neg": neg, "total": bg / 4 + fg / 4 + neg / 2}


def _resize_scores(scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Score maps C×H×W resized bilinearly to ``size`` (PSA never resizes them; only a profile
    with a random rescale does)."""
    if scores.shape[1:] == tuple(size):
        return scores
    return F.interpolate(torch.from_numpy(scores)[None], size, mode="bilinear",
                         align_corners=False)[0].numpy()


class PsaScoreDataset(AffinityLabelDataset):
    """AffinityNet's training samples as PSA's ``train_aff.py`` builds them
    (``voc12/data.py``, ``VOC12AffDataset``): the image and its two CRF score stacks (the
    ``scores`` of a ``psa`` label cache) go through :func:`joint_augment` together — the crop
    pads the scores with 0 — and the scores of the crop are reduced to the ``label_stride``
    grid by :func:`~camflow.refine.affinity_labels.psa_grid_labels` (8×8 block means, then
    PSA's label rule).  Returns the normalised crop and int64 labels 0..K, 255."""

    def __init__(self, dataset: SegmentationDataset, labels: LabelCache, augment: dict[str, Any],
                 seed: int, label_stride: int) -> None:
        super().__init__(dataset, labels, augment, seed, label_stride)
        if self.ids and labels.read_scores(self.ids[0]) is None:
            raise CamflowInputError(
                f"label cache {labels.path} holds no CRF scores: AffinityNet trains on PSA's "
                f"labels (an affinity_labels style with method: psa); a cache written before "
                f"camflow stored them must be rebuilt: delete it, or rerun with "
                f"`snakemake -R affinity_labels …`")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image_id = self.ids[index]
        image = self.dataset.load_image(image_id)
        keys, _ = self.labels.read(image_id)
        scores = self.labels.read_scores(image_id)
        if scores is None or scores.shape[1:] != image.shape[:2]:
            raise CamflowInputError(
                f"image {image_id!r}: label cache {self.labels.path} has no CRF scores of "
                f"its size {image.shape[1]}x{image.shape[0]}")
        x, scores = joint_augment(image, self.augment, rng, scores, resize_maps=_resize_scores)
        labels = psa_grid_labels(scores, keys, self.label_stride).astype(np.int64)
        return torch.from_numpy(x), torch.from_numpy(labels)


class AffinityNetTraining:
    """AffinityNet trained on affinity labels (a :class:`camflow.trainer.TrainingTask`);
    the backbone comes from ``cfg``'s ``backbone_init`` and is trained too."""

    def __init__(self, cfg: dict[str, Any], dataset: SegmentationDataset, labels: LabelCache,
                 classifier: str | Path, device: torch.device) -> None:
        seed_everything(int(cfg["seed"]))
        backbone = pretrained_backbone(cfg["backbone_init"], classifier)
        self.model = AffinityNet(backbone, bool(cfg["freeze_bn_stats"])).to(device)
        self.networks = {"affinitynet": self.model}
        self.cfg, self.dataset, self.labels, self.device = cfg, dataset, labels, device

    def optimizers(self) -> dict[str, OptimizerSpec]:
        opt = self.cfg["optimizer"]
        groups = self.model.param_groups(float(opt["lr"]), float(opt["head_lr_mult"]),
                                         float(opt["weight_decay"]))
        return {"affinitynet": OptimizerSpec(groups, opt)}

    def training_data(self) -> AffinityLabelDataset:
        """PSA's labels from the scores of a ``psa`` label cache (:class:`PsaScoreDataset`);
        any other style's labels (IRN's, P-NOC's saliency-aware ones) taken on the stride-8
        grid like IRN's, nearest (P-NOC's code trains its random walk on label maps)."""
        if self.labels.provenance.get("method") == "psa":
            return PsaScoreDataset(self.dataset, self.labels, self.cfg["augment"],
                                   int(self.cfg["seed"]), STRIDE)
        return AffinityLabelDataset(self.dataset, self.labels, self.cfg["augment"],
                                    int(self.cfg["seed"]), STRIDE)

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], progress: Progress,
             update: Update) -> dict[str, torch.Tensor]:
        images, grid_labels = (t.to(self.device) for t in batch)
        terms = affinitynet_loss(self.model(images), grid_labels, int(self.cfg["radius"]))
        update("affinitynet", terms["total"])
        return {k: v.detach() for k, v in terms.items()}


def load_affinitynet(path: str | Path, device: torch.device) -> AffinityNet:
    ckpt = load_checkpoint(path)
    model = AffinityNet(pretrained_backbone("none", ckpt["classifier"]),
                        bool(ckpt["config"]["freeze_bn_stats"]))
    model.load_state_dict(ckpt["networks"]["affinitynet"])
    return model.to(device).eval()


def pair_affinity(model: AffinityNet, image: torch.Tensor, radius: int) -> torch.Tensor:
    """Affinities n_offsets×⌈H/8⌉×⌈W/8⌉ of every pixel pair of one normalised image 3×H×W on
    the stride-8 grid of the zero-padded image (pairs leaving the grid: 0); PSA's walk
    (:func:`psa_propagate`) keeps the pairs of PSA's ``get_indices_of_pairs``."""
    h, w = image.shape[-2:]
    x = F.pad(image[None], (0, -w % 32, 0, -h % 32))
    feats = model(x)[0].float()[:, : -(-h // STRIDE), : -(-w // STRIDE)]
    inside = torch.ones_like(feats[:1])
    source, partners = grid_pairs(feats, radius, 0.0)
    _, inside_partners = grid_pairs(inside, radius, 0.0)
    return feature_affinity(source, partners) * inside_partners[0]


@register_refiner("affinitynet")
class AffinityNetRefiner(LearnedRefiner):
    """PSA's random walk (PSA Sec. 3.3): the full-resolution CAMs walked over AffinityNet's
    feature affinities (:func:`camflow.refine.random_walk.psa_propagate`)."""

    schema = {"required": ["random_walk", "freeze_bn_stats"],
              "properties": {
                  "random_walk": {"allOf": [{"$ref": "#/$defs/random_walk"},
                                            {"required": ["alpha"]}]},
                  "freeze_bn_stats": {"type": "boolean"},
                  "optimizer": {"allOf": [{"$ref": "#/$defs/sgd"},
                                          {"required": ["head_lr_mult"]}]}}}

    task = AffinityNetTraining
    load = staticmethod(load_affinitynet)

    def refine(self, image: np.ndarray, keys: np.ndarray,
               cams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        x = torch.from_numpy(normalize(image)).to(self.device)
        affinity = pair_affinity(self.model, x, int(p["radius"])).cpu()
        scores, channels = psa_propagate(torch.from_numpy(cams), affinity, int(p["radius"]),
                                         float(p["beta"]), int(p["n_squarings"]),
                                         float(p["alpha"]))
        return channels.numpy(), scores[1:].numpy()
