"""Backbones and the CAM classifier: strides, frozen BN, gradient stop, lr groups."""

import pytest
import torch

from camflow.io import CamflowInputError
from camflow.models import build_backbone, build_classifier
from camflow.trainer import poly_lr

SMALL = {"arch": "resnet_small", "strides": [2, 2, 2, 1], "widths": [4, 8, 8, 16],
         "blocks": [1, 1, 1, 1], "weights": "none"}


def classifier_cfg(backbone: dict, freeze: bool = False, start: int = 1) -> dict:
    return {"backbone": backbone, "freeze_bn_stats": freeze, "trainable_from_stage": start}


@pytest.mark.parametrize(("strides", "stride"), [([2, 2, 2, 1], 16), ([2, 2, 1, 1], 8),
                                                 ([2, 2, 2, 2], 32)])
def test_resnet50_output_stride_follows_irn_strides(strides: list[int], stride: int) -> None:
    net = build_backbone({"arch": "resnet50", "strides": strides, "weights": "none"})
    feats = net(torch.zeros(1, 3, 64, 64))
    assert feats[-1].shape[-1] == 64 // stride
    assert feats[-1].shape[1] == net.out_channels == 2048
    assert len(feats) == 4


def test_small_resnet_and_vgg_shapes() -> None:
    small = build_backbone(SMALL)
    assert small(torch.zeros(2, 3, 64, 64))[-1].shape == (2, 16, 4, 4)
    vgg = build_backbone({"arch": "vgg16", "weights": "none"})
    assert vgg(torch.zeros(1, 3, 64, 64))[-1].shape == (1, 512, 4, 4)


def test_frozen_bn_keeps_running_stats_and_gradient_stops_before_stage() -> None:
    model = build_classifier(classifier_cfg(SMALL, freeze=True, start=3), num_classes=3)
    model.train()
    bn = model.backbone.stages[2][0].bn1
    before = bn.running_mean.clone()
    loss = model(torch.randn(2, 3, 64, 64) * 5 + 3).sum()
    loss.backward()
    assert torch.equal(bn.running_mean, before), "BN statistics must stay frozen"
    assert not bn.training
    for p in model.backbone.stages[:2].parameters():
        assert not p.requires_grad and p.grad is None
    assert model.backbone.stages[2][0].conv1.weight.grad is not None
    assert model.head.weight.grad is not None


def test_param_groups_give_head_ten_times_the_lr_and_skip_frozen_stages() -> None:
    model = build_classifier(classifier_cfg(SMALL, start=3), num_classes=3)
    groups = model.param_groups(0.1, 10, 1e-4)
    assert groups[0]["lr"] == pytest.approx(0.1) and groups[1]["lr"] == pytest.approx(1.0)
    frozen = {id(p) for p in model.backbone.stages[:2].parameters()}
    assert not frozen & {id(p) for p in groups[0]["params"]}
    assert groups[1]["params"] == [model.head.weight]
    assert model.head.bias is None


def test_scores_are_gap_of_head_and_cam_is_relu_of_head() -> None:
    model = build_classifier(classifier_cfg(SMALL), num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        raw = model.head(model.features(x))
        assert torch.allclose(model(x), raw.mean(dim=(2, 3)))
        assert torch.allclose(model.cam(x), raw.clamp(min=0))


def test_weights_path_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(CamflowInputError, match="nope.pt"):
        build_backbone({**SMALL, "weights": str(tmp_path / "nope.pt")})
    with pytest.raises(CamflowInputError, match="backbone.arch"):
        build_backbone({**SMALL, "arch": "resnet9000"})


def test_local_checkpoint_weights_are_loaded(tmp_path) -> None:
    net = build_backbone(SMALL)
    path = tmp_path / "w.pt"
    torch.save(net.state_dict(), path)
    again = build_backbone({**SMALL, "weights": str(path)})
    for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_poly_lr() -> None:
    assert poly_lr(0.1, 0, 100, 0.9) == pytest.approx(0.1)
    assert poly_lr(0.1, 50, 100, 0.9) == pytest.approx(0.1 * 0.5 ** 0.9)
    assert poly_lr(0.1, 100, 100, 0.9) == 0.0


def test_imagenet_weights_without_network_fail_fast_and_clearly(monkeypatch) -> None:
    import urllib.error

    from torchvision import models

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(models.ResNet50_Weights.IMAGENET1K_V1.__class__, "get_state_dict",
                        offline)
    with pytest.raises(CamflowInputError, match="needs network access.*weights: none"):
        build_backbone({"arch": "resnet50", "weights": "imagenet"})


@pytest.mark.parametrize(("strides", "stride"), [([2, 2, 2, 1], 16), ([2, 2, 1, 1], 8)])
def test_timm_resnest_has_four_stages_at_irn_output_strides(strides: list[int],
                                                            stride: int) -> None:
    """ResNeSt-101 comes from timm (P-NOC's backbone family): four stages of 256…2048
    channels, output stride 16 or 8 as IRN's strides ask; a classifier trains on it."""
    backbone = build_backbone({"arch": "resnest101", "strides": strides, "weights": "none"})
    backbone.eval()
    shapes = [tuple(f.shape[1:]) for f in backbone(torch.zeros(1, 3, 64, 64))]
    assert [s[0] for s in shapes] == [256, 512, 1024, 2048]
    assert shapes[-1][1:] == (64 // stride, 64 // stride)
    with pytest.raises(CamflowInputError, match="backbone.strides"):
        build_backbone({"arch": "resnest101", "strides": [2, 1, 2, 1], "weights": "none"})
