"""GSLM (Mai et al.): Seed Reactivation, the activation loss, confidence CAMs, one SLM stage."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from camflow.cache import LabelCache, LabelCacheWriter
from camflow.data.voc import SyntheticDataset
from camflow.methods.base import load_classifier, load_method, train_method
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

SLM = {"k": 6, "alpha": 0.5, "seed_reactivation": True, "classification_loss": True}


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
    "augment": {"resize_long": [20, 28], "flip": True, "crop": 24}, "seed": 3,
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


def test_one_slm_stage_starts_from_the_previous_weights(tmp_path) -> None:
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
    out = tmp_path / "stage2.pt"
    train_method(slm_cfg, dataset, "train", out, torch.device("cpu"),
                 inputs={"previous": str(glm), "confidence": str(conf_path)}, progress=False)
    before = load_checkpoint(glm)["networks"]["classifier"]
    after = load_checkpoint(out)["networks"]["classifier"]
    diff = (after["head.weight"] - before["head.weight"]).abs().max().item()
    assert 0 < diff < 1.0                               # fine-tuned, not re-initialised
    assert load_classifier(out, torch.device("cpu")).arch == "resnet_small"
    # stage 3 rebuilds stage 2's network from stage 2's checkpoint alone
    glm.unlink()
    assert load_method(out, torch.device("cpu")).name == "slm"
