"""GSLM (Mai et al.): Seed Reactivation, the activation loss, confidence CAMs, one SLM stage."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from camflow.cache import LabelCache, LabelCacheWriter
from camflow.data.voc import SyntheticDataset
from camflow.methods.base import load_classifier, load_method, method_class, train_method
from camflow.methods.gslm import (
    ConfidenceDataset,
    activation_loss,
    confidence_maps,
    relu_k,
    seed_reactivation,
    slm_loss,
)
from camflow.models import build_classifier
from camflow.runtime import load_checkpoint
from fixtures import make_synthetic_fixture

SLM = {"k": 6, "alpha": 0.5, "seed_reactivation": True, "classification_loss": True,
       "variant": "paper"}


def test_relu_k_and_seed_reactivation_hand_computed() -> None:
    x = torch.tensor([-2.0, 0.0, 3.0, 6.0, 9.5])
    assert relu_k(x, 6).tolist() == [0.0, 0.0, 3.0, 6.0, 6.0]
    assert seed_reactivation(x, 6).tolist() == pytest.approx([0, 0, 0.5, 1.0, 1.0])


def test_activation_loss_is_masked_smooth_l1() -> None:
    cam = torch.tensor([0.2, 0.9, 0.5, 0.0])
    conf = torch.tensor([0.0, 1.0, -1.0, 1.0])
    # smooth L1 (beta 1): 0.5 d² for |d| < 1, |d| - 0.5 otherwise; d = 0.2, 0.1, (ignored), 1.0
    expected = (0.5 * 0.2**2 + 0.5 * 0.1**2 + (1.0 - 0.5)) / 3
    assert activation_loss(cam, conf).item() == pytest.approx(expected)


def test_activation_loss_is_smooth_l1_not_l1_nor_half_mse() -> None:
    """Eq. 5's smooth L1 (β = 1) on differences below and above 1: L1 and 0.5·MSE differ."""
    cam = torch.tensor([0.5, 3.0, 0.9, 0.25, -1.5], dtype=torch.float64)
    conf = torch.tensor([1.0, 1.0, -1.0, 0.0, 0.0], dtype=torch.float64)
    # d = -0.5, 2.0, (ignored), 0.25, -1.5
    # smooth L1: 0.5·0.25 + (2 − 0.5) + 0.5·0.0625 + (1.5 − 0.5) = 2.65625, mean over 4
    expected = 2.65625 / 4
    l1 = (0.5 + 2.0 + 0.25 + 1.5) / 4
    half_mse = 0.5 * (0.25 + 4.0 + 0.0625 + 2.25) / 4
    assert min(abs(expected - l1), abs(expected - half_mse)) > 0.15
    assert activation_loss(cam, conf).item() == pytest.approx(expected, abs=1e-12)


def test_pixels_marked_minus_one_give_no_gradient() -> None:
    cam = torch.rand(1, 2, 4, 4, requires_grad=True)
    conf = torch.full((1, 2, 4, 4), -1.0)
    conf[0, 0, :2] = 1.0
    conf[0, 1, 3] = 0.0
    activation_loss(cam, conf).backward()
    grad = cam.grad
    assert (grad[conf < 0] == 0).all()
    assert (grad[conf >= 0] != 0).any()


def test_confidence_maps_from_labels() -> None:
    labels = np.array([[0, 1, 2, 255]], dtype=np.uint8)  # 1×4; classes 1 and 3 present
    n = confidence_maps(np.array([1, 3]), labels, 3)
    assert n.shape == (3, 1, 4)
    assert n[0, 0].tolist() == [0, 1, 0, -1]             # class 1
    assert n[1, 0].tolist() == [-1, -1, -1, -1]          # class 2 absent: ignored
    assert n[2, 0].tolist() == [0, 0, 0, -1]             # class 3 (label 2 is another class)


CFG = {
    "backbone": {"arch": "resnet_small", "strides": [2, 2, 1, 1], "widths": [4, 4, 8, 8],
                 "blocks": [1, 1, 1, 1], "weights": "none"},
    "freeze_bn_stats": False, "trainable_from_stage": 1,
    "optimizer": {"lr": 0.05, "head_lr_mult": 10, "momentum": 0.9, "weight_decay": 1e-4,
                  "poly_power": 0.9},
    "batch_size": 2, "epochs": 1,
    "augment": {"resize_long": [20, 28], "resample": "bicubic", "flip": True, "crop": 24},
    "seed": 3,
}


def test_slm_loss_combines_the_terms() -> None:
    torch.manual_seed(0)
    model = build_classifier(CFG, 3)
    images = torch.randn(2, 3, 24, 24)
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    conf = torch.randint(-1, 2, (2, 3, 24, 24)).float()
    total = slm_loss(model, images, targets, conf, SLM)
    maps = model.head(model.features(images))
    cls = F.multilabel_soft_margin_loss(maps.mean((2, 3)), targets)
    cam = F.interpolate(maps.clamp(0, 6) / 6, (24, 24), mode="bilinear", align_corners=False)
    act = activation_loss(cam, conf)
    assert total.item() == pytest.approx(cls.item() + 0.5 * act.item(), rel=1e-5)
    no_cls = slm_loss(model, images, targets, conf, {**SLM, "classification_loss": False})
    assert no_cls.item() == pytest.approx(0.5 * act.item(), rel=1e-5)


def test_one_slm_stage_starts_from_the_previous_weights(tmp_path, monkeypatch) -> None:
    dataset = SyntheticDataset(make_synthetic_fixture(tmp_path / "data"))
    glm = tmp_path / "glm.pt"
    train_method({**CFG, "method": "cam"}, dataset, "train", glm, torch.device("cpu"),
                 progress=False)
    conf_path = tmp_path / "confidence.h5"
    labels = dataset.image_labels("train")
    with LabelCacheWriter(conf_path, dataset.class_names, {"method": "irn"}) as writer:
        for image_id in dataset.ids("train"):
            mask = dataset.load_mask(image_id, "train").copy()
            mask[::3] = 255
            writer.add(image_id, list(labels[image_id]), mask)
    slm_cfg = {**copy.deepcopy(CFG), **SLM, "method": "slm",
               "optimizer": {"lr": 0.005, "head_lr_mult": 10, "momentum": 0.9,
                             "weight_decay": 1e-3, "poly_power": 0.9}}
    data = ConfidenceDataset(dataset, LabelCache(conf_path), slm_cfg["augment"], 0)
    image, n, target = data[0]
    assert image.shape == (3, 24, 24) and n.shape == (dataset.num_classes, 24, 24)
    absent = target == 0
    assert (n[absent] == -1).all() and ((n >= -1) & (n <= 1)).all()
    assert (n[~absent] == -1).any() and (n[~absent] >= 0).any()
    # the network as the first SLM step receives it, before any update (GSLM Sec. 4.1: SLM
    # shares GLM's weights): every parameter and buffer must equal the GLM checkpoint's
    first: dict[str, torch.Tensor] = {}
    slm_class = method_class("slm")
    step = slm_class.step

    def spy(self, batch, progress, update):
        if not first:
            first.update({k: v.detach().clone() for k, v in self.classifier.state_dict().items()})
        return step(self, batch, progress, update)

    monkeypatch.setattr(slm_class, "step", spy)
    out = tmp_path / "stage2.pt"
    train_method(slm_cfg, dataset, "train", out, torch.device("cpu"),
                 inputs={"previous": str(glm), "confidence": str(conf_path)}, progress=False)
    before = load_checkpoint(glm)["networks"]["classifier"]
    assert first.keys() == before.keys()
    unequal = [k for k in before if not torch.equal(first[k], before[k])]
    assert unequal == []
    after = load_checkpoint(out)["networks"]["classifier"]
    diff = (after["head.weight"] - before["head.weight"]).abs().max().item()
    assert 0 < diff < 1.0                               # and then fine-tuned
    assert load_classifier(out, torch.device("cpu")).arch == "resnet_small"
    # stage 3 rebuilds stage 2's network from stage 2's checkpoint alone
    glm.unlink()
    assert load_method(out, torch.device("cpu")).name == "slm"


class _OneImage:
    """The three things :class:`ConfidenceDataset` asks of a dataset, for one fixed image."""

    num_classes = 2

    def __init__(self, image: np.ndarray) -> None:
        self.image = image

    def load_image(self, image_id: str) -> np.ndarray:
        return self.image

    def multi_hot(self, labels: tuple[int, ...]) -> np.ndarray:
        target = np.zeros(self.num_classes, dtype=np.float32)
        target[[c - 1 for c in labels]] = 1.0
        return target


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    """``mask`` eroded by a (2r+1)² square; pixels near the crop border count as outside."""
    padded = np.pad(mask, r, constant_values=False)
    h, w = mask.shape
    out = np.ones_like(mask)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out &= padded[dy:dy + h, dx:dx + w]
    return out


@pytest.mark.parametrize("variant", ["paper", "code"])
def test_confidence_maps_stay_aligned_with_the_image_under_augmentation(tmp_path,
                                                                        variant) -> None:
    """The SLM's training pairs (image, N) keep N on the image through the random resize,
    flip and crop (padding included): an asymmetric L-shaped object (class 1, bright) and a
    vertical band (ignored, mid-grey) on a dark background, painted in both."""
    h, w = 80, 120
    labels = np.zeros((h, w), np.uint8)
    labels[10:60, 15:40] = 1                    # the L's stem, upper left
    labels[40:60, 15:90] = 1                    # its foot, to the right
    labels[:, 100:115] = 255                    # an ignored band near the right edge
    image = np.full((h, w, 3), 40, np.uint8)
    image[labels == 1] = 230
    image[labels == 255] = 150
    path = tmp_path / "confidence.h5"
    ids = [f"img{i}" for i in range(16)]
    with LabelCacheWriter(path, ("background", "object", "other"), {"method": "irn"}) as writer:
        for image_id in ids:
            writer.add(image_id, [1], labels)
    augment = {"resize_long": [70, 150], "resample": "bicubic", "flip": True, "crop": 96}
    data = ConfidenceDataset(_OneImage(image), LabelCache(path), augment, 0, variant)
    mean = np.array([0.485, 0.456, 0.406])[:, None, None]
    std = np.array([0.229, 0.224, 0.225])[:, None, None]
    flipped = {}
    for index in range(len(ids)):
        x, n, target = (t.numpy() for t in data[index])
        assert target.tolist() == [1.0, 0.0]
        assert (n[1] == -1).all()                       # absent class: ignored everywhere
        pad = (x == 0).all(axis=0)                      # zero-padded after normalisation
        grey = (x * std + mean)[0] * 255                # the red channel, 0..255
        obj, bg, ign = n[0] == 1, n[0] == 0, n[0] == -1
        assert obj.any() or bg.any()
        assert (ign[pad]).all()                         # padding is ignored, exactly
        r = 2                                           # resampling blurs edges by ≤ 2 px
        assert (grey[_erode(obj, r)] > 200).all()
        assert (grey[_erode(bg & ~pad, r)] < 70).all()
        band = _erode(ign & ~pad, r)
        assert ((grey[band] > 120) & (grey[band] < 180)).all()
        # and conversely: the clear object pixels of the image are the object in N
        assert (n[0][_erode(grey > 200, r)] == 1).all()
        # which way the L's foot points tells a flip apart: the stem's side has more object
        cols = np.nonzero(obj.any(axis=0))[0]
        if obj.sum() > 200 and cols.size:
            left = obj[:, : (cols[0] + cols[-1]) // 2].sum()
            right = obj[:, (cols[0] + cols[-1]) // 2:].sum()
            flipped[index] = bool(right > left)
    assert set(flipped.values()) == {False, True}       # both flip states were exercised
