"""Fully-CAM (Song et al.), Grad-CAM and Grad-CAM++ on tiny networks with known gradients."""

import pytest
import torch
from torch import nn

from camflow.methods import fullcam as fc
from camflow.models import build_classifier

SMALL = {"arch": "resnet_small", "strides": [2, 2, 2, 1], "widths": [4, 8, 8, 16],
         "blocks": [1, 1, 1, 1], "weights": "none"}


class Quadratic(nn.Module):
    """score_c = Σ_k W_ck · mean_ij(A_kij²) with A = conv1x1(x): gradients known in closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.conv = nn.Conv2d(2, 3, 1, bias=False)
        self.W = torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, 1.0]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.backbone.conv(x)
        return (a.pow(2).mean(dim=(2, 3)) @ self.W.T)


def test_gradcam_matches_hand_computed_gradients() -> None:
    torch.manual_seed(0)
    net = Quadratic()
    x = torch.randn(1, 2, 3, 4)
    a = net.backbone.conv(x).detach()
    hw = 12
    for c in (0, 1):
        grad = 2 * net.W[c][None, :, None, None] * a / hw          # ∂score_c/∂A
        weights = grad.mean(dim=(2, 3))
        expected = torch.relu((weights[:, :, None, None] * a).sum(1))
        got = fc.gradient_cam(net, "backbone.conv", "gradcam")(x, torch.tensor([c]))[:, 0]
        assert torch.allclose(got, expected, atol=1e-6)


def test_gradcampp_weights_by_hand() -> None:
    a = torch.tensor([[[[1.0, 2.0], [0.0, 1.0]]]])          # Σ A = 4
    g = torch.tensor([[[[0.5, -1.0], [0.0, 2.0]]]])
    # α = g²/(2g² + 4g³): 0.25/(0.5+0.5)=0.25; 1/(2-4)=-0.5; 0 (denominator 0); 4/(8+32)=0.1
    # w = Σ α·relu(g) = 0.25·0.5 + 0 + 0 + 0.1·2 = 0.325
    assert fc.gradcampp_weights(a, g).item() == pytest.approx(0.325)


def test_gradcam_weights_on_cam_head_equal_head_weights_over_positions() -> None:
    model = build_classifier({"backbone": SMALL, "freeze_bn_stats": False,
                              "trainable_from_stage": 3}, num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    feat, grads = fc._layer_grads(model, "backbone.stages.3", x, torch.tensor([0, 2]))
    hw = feat.shape[-1] * feat.shape[-2]
    for grad, c in zip(grads, (0, 2), strict=True):
        expected = model.head.weight[c, :, 0, 0] / hw
        assert torch.allclose(fc.gradcam_weights(grad)[0], expected, atol=1e-7)


def test_fullcam_layer_map_is_normalised_channel_sum_of_relu_products() -> None:
    a = torch.tensor([[[[1.0, -1.0], [2.0, 0.5]], [[0.0, 3.0], [1.0, 1.0]]]])
    g = torch.tensor([[[[2.0, 1.0], [-1.0, 1.0]], [[1.0, 1.0], [1.0, -2.0]]]])
    # channel 0: relu products [[2,0],[0,0.5]] / 2 ; channel 1: [[0,3],[1,0]] / 3
    expected = torch.tensor([[[1.0, 1.0], [1 / 3, 0.25]]])
    assert torch.allclose(fc.fullcam_layer_map(a, g), expected, atol=1e-4)


def test_fullcam_one_backward_per_class_and_normalised(monkeypatch) -> None:
    model = build_classifier({"backbone": SMALL, "freeze_bn_stats": True,
                              "trainable_from_stage": 3}, num_classes=4).eval()
    calls = []
    real = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    images = torch.randn(2, 3, 32, 32)
    maps = fc.fullcam(model, "all", chunk=2)(images, torch.tensor([1, 3]))
    assert len(calls) == 2, "one backward per class, covering all layers"
    calls.clear()
    one_by_one = fc.fullcam(model, "all", chunk=1)(images, torch.tensor([1, 3]))
    assert len(calls) == 4, "one backward per class and chunk"
    assert torch.allclose(maps, one_by_one, atol=1e-5)
    assert maps.shape == (2, 2, 32, 32)
    assert torch.allclose(maps.amax(dim=(2, 3)), torch.ones(2, 2), atol=1e-3)
    assert (maps >= 0).all()


def test_layer_selection() -> None:
    model = build_classifier({"backbone": SMALL, "freeze_bn_stats": False,
                              "trainable_from_stage": 1}, num_classes=2)
    everything = fc.select_layers(model, "all")
    assert len(everything) == sum(isinstance(m, nn.Conv2d) for m in model.backbone.modules())
    assert fc.select_layers(model, {"stages": [4]}) == ["backbone.stages.3.0.conv2"]
    assert fc.select_layers(model, {"stages": [4, 3]}) == ["backbone.stages.3.0.conv2",
                                                           "backbone.stages.2.0.conv2"]
    with pytest.raises(Exception, match="nope"):
        fc.select_layers(model, {"names": ["nope"]})


def test_resnet50_stage_names_match_the_paper() -> None:
    model = build_classifier({"backbone": {"arch": "resnet50", "weights": "none"},
                              "freeze_bn_stats": True, "trainable_from_stage": 3}, 2)
    # Fully-CAM (Song et al.) Table 2: stage 5 = layer4.2.conv3, stage 4 = layer3.5.conv3,
    # stage 3 = layer2.3.conv3
    assert fc.select_layers(model, {"stages": [4, 3, 2]}) == [
        "backbone.stages.3.2.conv3", "backbone.stages.2.5.conv3", "backbone.stages.1.3.conv3"]


def test_fullcam_hooks_equal_explicit_gradients() -> None:
    """The hook-accumulated maps equal Eq. 8–11 computed from explicit autograd gradients."""
    torch.manual_seed(1)
    model = build_classifier({"backbone": SMALL, "freeze_bn_stats": True,
                              "trainable_from_stage": 1}, num_classes=3).eval()
    x = torch.randn(1, 3, 32, 32)
    names = fc.select_layers(model, "all")
    feats, grads = [], []
    for name in names:
        f, (g,) = fc._layer_grads(model, name, x, torch.tensor([2]))
        feats.append(f)
        grads.append(g)
    total = sum(torch.nn.functional.interpolate(fc.fullcam_layer_map(f, g)[:, None], (32, 32),
                                                mode="bilinear", align_corners=False)[:, 0]
                for f, g in zip(feats, grads, strict=True))
    expected = total / (total.amax() + fc.EPS)
    got = fc.fullcam(model, "all")(x, torch.tensor([2]))[:, 0]
    assert torch.allclose(got, expected, atol=1e-5)
