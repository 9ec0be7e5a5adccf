"""C²AM's contrastive loss (P-NOC Eq. 7), C²AM-H's hint term (Eq. 11) and the partition
direction, against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from camflow.cache import CamCache, CamCacheWriter, SaliencyCache
from camflow.data.voc import SyntheticDataset
from camflow.methods.c2am import (
    C2AMNetwork,
    C2AMTraining,
    c2am_loss,
    foreground_is_first,
    hint_loss,
    make_saliency,
    partition_sign,
    positive_loss,
    rank_weights,
    saliency_map,
)
from camflow.models.backbones import build_backbone
from camflow.trainer import Trainer, metrics_path
from fixtures import SYNTHETIC_CLASSES, make_synthetic_fixture

ALPHA = 0.25
# three embeddings: cos(0,1) = 2/√5, cos(1,2) = 1/√5, cos(0,2) = 0 → clamped to 5e-4
FG = torch.tensor([[1.0, 0.0], [2.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
S01, S12, S02 = 2 / math.sqrt(5), 1 / math.sqrt(5), 5e-4


def test_rank_weights_rank_each_row_most_similar_first() -> None:
    sim = torch.tensor([[1.0, S01, S02], [S01, 1.0, S12], [S02, S12, 1.0]], dtype=torch.float64)
    w = rank_weights(sim, ALPHA)
    e = math.exp(-ALPHA)
    # row 0: image 1 first, image 2 second; row 1: 0 then 2; row 2: 1 then 0; no self-pairs
    expected = torch.tensor([[0, 1, e], [1, 0, e], [e, 1, 0]], dtype=torch.float64)
    torch.testing.assert_close(w, expected)


def test_positive_loss_by_hand() -> None:
    e = math.exp(-ALPHA)
    rank0 = -math.log(S01) - math.log(S01) - math.log(S12)  # (0,1), (1,0), (2,1)
    rank1 = -math.log(S02) - math.log(S12) - math.log(S02)  # (0,2), (1,2), (2,0)
    paper = (rank0 + e * rank1) / 6
    assert positive_loss(FG, ALPHA).item() == pytest.approx(paper, rel=1e-9)
    # the authors' code: self-pairs at weight e^α with log(1 − 5e-4), mean over n² = 9
    code = (rank0 + e * rank1 - 3 * math.exp(ALPHA) * math.log(1 - 5e-4)) / 9
    assert positive_loss(FG, ALPHA, "code").item() == pytest.approx(code, rel=1e-9)


def test_c2am_loss_terms_by_hand() -> None:
    bg = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    terms = c2am_loss(FG, bg, ALPHA)
    # negative term: −1/9 Σ log(1 − cos(bg_i, fg_j)), each cosine clamped to [5e-4, 1 − 5e-4]
    neg = 0.0
    for b in bg.tolist():
        for f in FG.tolist():
            cos = (b[0] * f[0] + b[1] * f[1]) / (math.hypot(*b) * math.hypot(*f))
            neg -= math.log(1 - min(max(cos, 5e-4), 1 - 5e-4))
    assert terms["neg"].item() == pytest.approx(neg / 9, rel=1e-9)
    assert terms["pos_f"].item() == pytest.approx(positive_loss(FG, ALPHA).item())
    # bg: cos(0,1) = 0, cos(0,2) = cos(1,2) = 1/√2; rank 0 to the √½ pairs
    e, s = math.exp(-ALPHA), -math.log(1 / math.sqrt(2))
    rows = [s + e * -math.log(5e-4), s + e * -math.log(5e-4), s + e * s]
    assert terms["pos_b"].item() == pytest.approx(sum(rows) / 6, rel=1e-9)
    with pytest.raises(ValueError, match="at least 2"):
        c2am_loss(FG[:1], bg[:1], ALPHA)


def test_hint_term_counts_only_pixels_above_delta_fg() -> None:
    logits = torch.tensor([[[2.0, -1.0], [0.5, 3.0]]])
    prior = torch.tensor([[[0.9, 0.4], [0.41, 0.1]]])  # 0.4 is not above δ_fg = 0.4
    softplus = [math.log1p(math.exp(-2.0)), math.log1p(math.exp(-0.5))]  # BCE(x, 1)
    assert hint_loss(logits, prior, 0.4).item() == pytest.approx(sum(softplus), rel=1e-6)
    assert hint_loss(logits, prior, 0.4, reduction="mean").item() == pytest.approx(
        sum(softplus) / 2, rel=1e-6)
    # background hints (δ_bg = 0.2): the pixel at 0.1 joins with target 0: BCE(3, 0)
    both = sum(softplus) + math.log1p(math.exp(3.0))
    assert hint_loss(logits, prior, 0.4, delta_bg=0.2).item() == pytest.approx(both, rel=1e-6)
    assert hint_loss(logits, torch.zeros_like(prior), 0.4).item() == 0.0


def test_partition_direction_follows_the_prior() -> None:
    prior = torch.zeros(1, 4, 4)
    prior[0, 1:3, 1:3] = 0.8
    salient_object = 0.1 + 0.8 * (prior > 0.4).float()
    assert foreground_is_first(salient_object, prior, 0.4)
    assert not foreground_is_first(1 - salient_object, prior, 0.4)
    assert foreground_is_first(1 - salient_object, torch.zeros(1, 4, 4), 0.4)  # no evidence


def tiny_backbone():
    return build_backbone({"arch": "resnet_small", "strides": [2, 2, 1, 1],
                           "widths": [8, 8, 8, 16], "blocks": [1, 1, 1, 1], "weights": "none"})


def test_network_pools_foreground_and_background_embeddings() -> None:
    torch.manual_seed(0)
    net = C2AMNetwork(tiny_backbone()).eval()
    x = torch.randn(3, 3, 32, 32)
    fg, bg, logits = net(x)
    assert fg.shape == bg.shape == (3, 24) and logits.shape == (3, 4, 4)
    # v^f + v^b is the plain average of the features, whatever φ says
    low, high = net.backbone(x)[-2:]
    mean = torch.cat([high, low], dim=1).mean(dim=(2, 3))
    torch.testing.assert_close(fg + bg, mean)
    assert all(torch.isfinite(t) for t in c2am_loss(fg, bg, ALPHA).values())
    hint_loss(logits, torch.rand(3, 4, 4), 0.4).backward()  # the hints reach φ
    assert net.head[0].weight.grad is not None and net.head[0].weight.grad.abs().sum() > 0


def test_c2am_h_trains_with_hints_from_a_cam_cache(tmp_path) -> None:
    """C²AM-H through the one trainer on the tiny fixture: the hints come from a CAM cache
    (the masks as priors), every term is logged, and the hint term falls."""
    dataset = SyntheticDataset(make_synthetic_fixture(tmp_path))
    priors = tmp_path / "cams.h5"
    with CamCacheWriter(priors, SYNTHETIC_CLASSES) as writer:
        for image_id in dataset.ids("train_aug"):
            mask = dataset.load_mask(image_id, "train_aug")
            keys = np.unique(mask[(mask > 0) & (mask < 255)])
            cams = np.stack([(mask == k).astype(np.float32) for k in keys])
            writer.add(image_id, keys, stride4=cams[:, ::4, ::4], full=cams)
    cfg = {"seed": 0, "alpha": 0.25, "pair_mean": "paper", "batch_size": 2, "epochs": 12,
           "hints": {"delta_fg": 0.4, "delta_bg": None, "weight": 1.0, "reduction": "mean"},
           "optimizer": {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "poly_power": 0.9,
                         "head_lr_mult": 10},
           "augment": {"resize_long": [24, 24], "resample": "bilinear", "flip": True,
                       "crop": 32}}
    backbone = tiny_backbone()
    with CamCache(priors) as cache:
        task = C2AMTraining(cfg, dataset, "train_aug", backbone, cache, torch.device("cpu"))
        out = tmp_path / "c2am.pt"
        Trainer(task, cfg, out, torch.device("cpu"), {"cfg": cfg}, progress=False).fit({})
    rows = metrics_path(out).read_text().splitlines()
    header = rows[0].split(",")
    assert {"pos_f", "pos_b", "neg", "hint", "total"} <= set(header)
    hint = [float(r.split(",")[header.index("hint")]) for r in rows[1:]]
    assert len(hint) == 12 and hint[-1] < hint[0]


class _Flipped(torch.nn.Module):
    """A C²AM stand-in whose logits are high off the object of the fixture: its first
    partition is the background."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        bright = x.mean(dim=1)  # the fixture's objects are brighter than its background
        logits = -(bright - bright.mean(dim=(1, 2), keepdim=True)) * 10
        return x.mean(dim=(2, 3)), x.mean(dim=(2, 3)), logits


def test_partition_sign_anchors_the_direction_on_the_priors(tmp_path) -> None:
    dataset = SyntheticDataset(make_synthetic_fixture(tmp_path))
    ids = dataset.ids("train")
    priors = tmp_path / "cams.h5"
    with CamCacheWriter(priors, SYNTHETIC_CLASSES) as writer:
        for image_id in ids:
            mask = dataset.load_mask(image_id, "train")
            keys = np.unique(mask[(mask > 0) & (mask < 255)])
            cams = np.stack([(mask == k).astype(np.float32) for k in keys])
            writer.add(image_id, keys, stride4=cams[:, ::4, ::4], full=cams)
    model = _Flipped()
    with CamCache(priors) as cache:
        sign = partition_sign(model, dataset, ids, cache, 0.4, torch.device("cpu"))
    assert sign == -1
    image = dataset.load_image(ids[0])
    mask = dataset.load_mask(ids[0], "train") > 0
    sal = saliency_map(model, image, sign, [1.0, 0.5], True, 1, torch.device("cpu"))
    assert sal.shape == mask.shape and sal.max() == pytest.approx(1.0, abs=1e-4)
    assert sal[mask].mean() > 3 * sal[~mask].mean()  # the object is salient once flipped
    unflipped = saliency_map(model, image, 1, [1.0], False, 1, torch.device("cpu"))
    assert unflipped[mask].mean() < unflipped[~mask].mean()


def test_make_saliency_writes_the_oriented_maps(tmp_path) -> None:
    dataset = SyntheticDataset(make_synthetic_fixture(tmp_path))
    out = make_saliency(_Flipped(), dataset, "train", tmp_path / "sal.h5", -1, [1.0], True, 1,
                        torch.device("cpu"), progress=False)
    with SaliencyCache(out) as cache:
        assert cache.provenance["first_partition"] == "background"
        for image_id in dataset.ids("train"):
            expected = saliency_map(_Flipped(), dataset.load_image(image_id), -1, [1.0], True,
                                    1, torch.device("cpu"))
            np.testing.assert_allclose(cache.saliency(image_id), expected, atol=5e-4)
