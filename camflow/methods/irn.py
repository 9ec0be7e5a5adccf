"""IRN: inter-pixel relation network (Ahn, Cho & Kwak, CVPR 2019).

A class-boundary branch and a displacement-field branch on the multi-level features of a
frozen backbone (IRN Sec. 3.2, ``docs/fidelity.md``, conventions: "IR labels and IRN"), trained from
IR labels (:mod:`camflow.refine.affinity_labels`) with pixel pairs within radius 10 on the
stride-4 grid:

* boundary: a_ij = 1 − max_{k ∈ Π_ij} B(x_k) (Eq. 3); L_B = ½(½ L_bg⁺ + ½ L_fg⁺) + ½ L⁻ with
  L⁺ = −mean log a_ij over positive pairs and L⁻ = −mean log(1 − a_ij) over negative pairs
  (Eq. 4, weighted as in the published code);
* displacement: for pairs of the same foreground class D(x_i) − D(x_j) should equal the
  offset x_j − x_i (L_fg^D, Eq. 5), for background pairs it should be 0 (L_bg^D, Eq. 6);
  total L = L_B + ½(L_fg^D + L_bg^D).

The boundary map drives the random walk (:func:`camflow.refine.random_walk.irn_propagate`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from camflow.cache import LabelCache
from camflow.data.base import SegmentationDataset
from camflow.data.transforms import AffinityLabelDataset, normalize
from camflow.methods.base import pretrained_backbone
from camflow.methods.cam import strided_size
from camflow.models.backbones import Backbone
from camflow.refine.pairs import neighbour_offsets, pair_labels, path_max, region_pairs
from camflow.refine.random_walk import irn_propagate
from camflow.refine.refiners import LearnedRefiner, register_refiner
from camflow.runtime import load_checkpoint, seed_everything
from camflow.trainer import OptimizerSpec, Progress, Update

log = logging.getLogger(__name__)


def _branch(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.GroupNorm(4, cout),
                         nn.ReLU(inplace=True))


class IRNet(nn.Module):
    """Boundary and displacement branches on a frozen four-stage backbone (IRN Fig. 3).

    Every stage feeds a 1×1 conv (32 channels) of the boundary branch, resized to the stride-4
    grid and fused by a 1×1 conv into one boundary logit map.  The displacement branch fuses
    the deeper stages at stride 8, upsamples, joins the stride-4 stage and predicts a 2-channel
    field (dy, dx) in stride-4 pixels.
    """

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone.requires_grad_(False)
        chans = backbone.stage_channels
        self.edge = nn.ModuleList(_branch(c, 32) for c in chans)
        self.edge_out = nn.Conv2d(32 * len(chans), 1, 1)
        widths = (64, 128, 256, 256)
        self.disp = nn.ModuleList(_branch(c, w) for c, w in zip(chans, widths, strict=True))
        self.disp_deep = _branch(sum(widths[1:]), 256)
        self.disp_out = nn.Sequential(_branch(widths[0] + 256, 256), nn.Conv2d(256, 2, 1))

    def train(self, mode: bool = True) -> IRNet:
        super().train(mode)
        self.backbone.eval()  # frozen: BatchNorm statistics never change (IRN)
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Boundary logits (B×1×h×w) and displacement (B×2×h×w) on the stride-4 grid of x."""
        with torch.no_grad():
            feats = [f.detach() for f in self.backbone(x)]
        grid = feats[0].shape[-2:]

        def at(t: torch.Tensor, size: torch.Size) -> torch.Tensor:
            if t.shape[-2:] == size:
                return t
            return F.interpolate(t, size, mode="bilinear", align_corners=False)

        edge = self.edge_out(torch.cat([at(b(f), grid) for b, f in zip(self.edge, feats,
                                                                         strict=True)], 1))
        d = [b(f) for b, f in zip(self.disp, feats, strict=True)]
        mid = d[1].shape[-2:]
        deep = self.disp_deep(torch.cat([d[1], at(d[2], mid), at(d[3], mid)], 1))
        disp = self.disp_out(torch.cat([d[0], at(deep, grid)], 1))
        return edge, disp

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


def irn_loss(edge_logits: torch.Tensor, disp: torch.Tensor, labels: torch.Tensor,
             radius: int) -> dict[str, torch.Tensor]:
    """IRN's losses (module doc) for boundary logits B×1×h×w, displacement B×2×h×w and IR
    labels B×h×w (0..K, 255 ignore) on the same grid.  Returns the terms and ``total``."""
    eps = 1e-5
    pairs = pair_labels(labels, radius)
    aff = 1 - path_max(torch.sigmoid(edge_logits[:, 0].float()), radius)

    def mean(loss: torch.Tensor, mask: torch.Tensor, extra: float = 1.0) -> torch.Tensor:
        return (loss * mask).sum() / (extra * mask.sum() + eps)

    bg_pos = mean(-torch.log(aff + eps), pairs["bg_pos"])
    fg_pos = mean(-torch.log(aff + eps), pairs["fg_pos"])
    neg = mean(-torch.log(1 + eps - aff), pairs["neg"])
    source, partners = region_pairs(disp.float(), radius)
    diff = source.unsqueeze(2) - partners                       # D(x_i) − D(x_j): B×2×n×h×w
    offsets = torch.tensor(neighbour_offsets(radius), dtype=diff.dtype, device=diff.device)
    gt = offsets.t()[None, :, :, None, None]                     # x_j − x_i
    dp_fg = mean((diff - gt).abs(), pairs["fg_pos"].unsqueeze(1), 2.0)
    dp_bg = mean(diff.abs(), pairs["bg_pos"].unsqueeze(1), 2.0)
    boundary = (bg_pos / 2 + fg_pos / 2 + neg) / 2
    displacement = (dp_fg + dp_bg) / 2
    return {"bg_pos": bg_pos, "fg_pos": fg_pos, "neg": neg, "dp_fg": dp_fg, "dp_bg": dp_bg,
            "total": boundary + displacement}


class IRNTraining:
    """IRN's branches trained on IR labels (a :class:`camflow.trainer.TrainingTask`); the
    backbone comes from ``cfg``'s ``backbone_init`` (the CAM classifier's, or ImageNet's)
    and stays frozen."""

    def __init__(self, cfg: dict[str, Any], dataset: SegmentationDataset, labels: LabelCache,
                 classifier: str | Path, device: torch.device) -> None:
        seed_everything(int(cfg["seed"]))
        self.model = IRNet(pretrained_backbone(cfg["backbone_init"], classifier)).to(device)
        self.networks = {"irn": self.model}
        self.cfg, self.dataset, self.labels, self.device = cfg, dataset, labels, device

    def optimizers(self) -> dict[str, OptimizerSpec]:
        opt = self.cfg["optimizer"]
        return {"irn": OptimizerSpec([{"params": self.model.trainable(), "lr": float(opt["lr"]),
                                       "initial_lr": float(opt["lr"]),
                                       "weight_decay": float(opt["weight_decay"])}], opt)}

    def training_data(self) -> AffinityLabelDataset:
        return AffinityLabelDataset(self.dataset, self.labels, self.cfg["augment"],
                                    int(self.cfg["seed"]), 4)

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], progress: Progress,
             update: Update) -> dict[str, torch.Tensor]:
        images, grid_labels = (t.to(self.device) for t in batch)
        edge, disp = self.model(images)
        terms = irn_loss(edge, disp, grid_labels, int(self.cfg["radius"]))
        update("irn", terms["total"])
        return {k: v.detach() for k, v in terms.items()}


def load_irn(path: str | Path, device: torch.device) -> IRNet:
    """Rebuild a trained IRN (its backbone architecture from the classifier it was built on)."""
    ckpt = load_checkpoint(path)
    model = IRNet(pretrained_backbone("none", ckpt["classifier"]))
    model.load_state_dict(ckpt["networks"]["irn"])
    return model.to(device).eval()


def boundary_map(model: IRNet, image: torch.Tensor, flip: bool, pad_to: int = 32,
                 flip_before_pad: bool = False) -> torch.Tensor:
    """Boundary probabilities (h×w, the stride-4 grid ⌈H/4⌉×⌈W/4⌉) of one normalised image
    3×H×W, as IRN's ``EdgeDisplacement.forward``: the image is zero-padded (bottom, right) to
    a multiple of ``pad_to`` (IRN: its crop size 512); with ``flip`` the *logits* of the image
    and of its mirror image are averaged before the sigmoid.

    camflow mirrors the padded image, so the flipped-back logits lie exactly on the image's
    grid.  ``flip_before_pad`` reproduces IRN's code instead: the unpadded image is mirrored,
    both are padded and cropped to the stride-4 grid, and the cropped mirror map is flipped
    back — off by 4⌈W/4⌉ − W pixels when W is not a multiple of 4, and with the padding on the
    other side of the mirrored content (``docs/fidelity.md``)."""
    h, w = image.shape[-2:]
    gh, gw = -(-h // 4), -(-w // 4)

    def padded(x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, -w % pad_to, 0, -h % pad_to))

    if not flip:
        logits = model(padded(image[None]))[0][0, 0].float()
    elif flip_before_pad:
        edge = model(padded(torch.stack([image, image.flip(-1)])))[0][:, 0, :gh, :gw].float()
        logits = edge[0] / 2 + edge[1].flip(-1) / 2
    else:
        x = padded(image[None])
        edge = model(torch.cat([x, x.flip(-1)]))[0][:, 0].float()
        logits = edge[0] / 2 + edge[1].flip(-1) / 2
    return torch.sigmoid(logits[:gh, :gw])


@register_refiner("irn")
class IRNRefiner(LearnedRefiner):
    """IRN's semantic pseudo labels (IRN Sec. 4): the stride-4 CAMs walked over the
    affinities of the boundary map (:func:`camflow.refine.random_walk.irn_propagate`)."""

    resolution = "stride4"
    schema = {"required": ["random_walk"],
              "properties": {"random_walk": {"allOf": [
                  {"$ref": "#/$defs/random_walk"},
                  {"required": ["bg_threshold", "flip", "pad_to", "flip_before_pad"]}]}}}

    task = IRNTraining
    load = staticmethod(load_irn)

    def cam_size(self, size: tuple[int, int]) -> tuple[int, int]:
        return strided_size(size, 4)

    def refine(self, image: np.ndarray, keys: np.ndarray,
               cams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        x = torch.from_numpy(normalize(image)).to(self.device)
        boundary = boundary_map(self.model, x, bool(p["flip"]), int(p["pad_to"]),
                                bool(p["flip_before_pad"])).cpu()
        scores, channels = irn_propagate(torch.from_numpy(cams), boundary, image.shape[:2],
                                         int(p["radius"]), float(p["beta"]),
                                         int(p["n_squarings"]), float(p["bg_threshold"]))
        return channels.numpy(), scores.numpy()
