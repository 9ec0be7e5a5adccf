"""CAM inference speed-ups keep the outputs: batch-norm folding, channels_last input, the
``batch_size: auto`` policy and the batched copy-back of ``make_cams``."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from camflow.cache import CamCache
from camflow.data.voc import SyntheticDataset
from camflow.methods.cam import (
    AUTO_CPU_BATCH_PIXELS,
    AUTO_CPU_MAX_BATCH,
    CAM,
    batch_size_for,
    make_cams,
    network_input,
)
from camflow.methods.sources import build_source
from camflow.models import build_classifier
from camflow.models.backbones import batch_norms
from camflow.models.inference import (
    fold_batch_norms,
    foldable_pairs,
    prepare_for_inference,
    retained_heap,
)
from fixtures import make_synthetic_fixture

RESNET50 = {"arch": "resnet50", "strides": [2, 2, 2, 1], "weights": "none"}
# config.yaml's resnet_small, and the dilated variant of the DeepLab backbones
SMALL = {"arch": "resnet_small", "strides": [2, 2, 1, 1], "widths": [32, 64, 96, 128],
         "blocks": [1, 1, 1, 1], "weights": "none"}
SMALL_DILATED = {**SMALL, "strides": [2, 2, 1, 1], "blocks": [2, 1, 2, 1],
                 "dilation": [False, True, True]}


def trained_like(backbone: dict, seed: int = 0) -> nn.Module:
    """An eval-mode classifier whose batch norms have non-trivial statistics and affine
    parameters (a fresh one's are the identity up to ε, which would test little)."""
    torch.manual_seed(seed)
    model = build_classifier({"backbone": backbone, "freeze_bn_stats": True,
                              "trainable_from_stage": 1}, num_classes=5)
    with torch.no_grad():
        for bn in batch_norms(model):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("backbone", [RESNET50, SMALL, SMALL_DILATED],
                         ids=["resnet50", "resnet_small", "resnet_small_dilated"])
def test_folded_model_gives_the_same_maps(backbone: dict) -> None:
    """Every batch norm of these backbones follows a conv (ResNet-50: 53) and is folded."""
    model = trained_like(backbone)
    folded = copy.deepcopy(model)
    assert fold_batch_norms(folded) == len(batch_norms(model))
    assert backbone is not RESNET50 or len(batch_norms(model)) == 53
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 72, 56)
    with torch.no_grad():
        expected = model.cam(x)
        got = folded.cam(x)
        fast = prepare_for_inference(copy.deepcopy(model)).cam(network_input(
            torch.randint(0, 256, (2, 72, 56, 3), dtype=torch.uint8)))
    assert fast.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(got, expected, rtol=0, atol=1e-5 * expected.abs().max().item())
    # the conv names stay, so a layer named in a source config still exists
    assert {n for n, m in folded.named_modules() if isinstance(m, nn.Conv2d)} == \
        {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


class TwoReaders(nn.Module):
    """conv → BN, but the conv's output is read elsewhere too: folding would change it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


@pytest.mark.parametrize("model", [
    nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4)),   # BN after ReLU
    nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4)),               # no BN at all
    nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)),
    TwoReaders(),
], ids=["bn-after-relu", "groupnorm", "no-running-stats", "conv-read-twice"])
def test_models_without_foldable_pairs_are_left_unchanged(model: nn.Module) -> None:
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert foldable_pairs(model) == []
    assert fold_batch_norms(model) == 0
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_folding_refuses_a_model_in_training_mode() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(model)


def test_retained_heap_keeps_values() -> None:
    with retained_heap():
        x = torch.ones(64, 1024, 1024)
        assert x.sum().item() == 64 * 1024 * 1024
    assert torch.ones(8).sum().item() == 8


def test_network_input_is_channels_last() -> None:
    images = torch.randint(0, 256, (2, 9, 7, 3), dtype=torch.uint8)
    x = network_input(images)
    assert x.shape == (2, 3, 9, 7) and x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_auto_batch_size_follows_image_size_and_device() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert batch_size_for(16, (500, 375), cpu) == 16
    assert batch_size_for("auto", (500, 375), cpu) == AUTO_CPU_BATCH_PIXELS // (500 * 375)
    assert batch_size_for("auto", (500, 375), cpu) == 1  # VOC-sized: one at a time
    assert batch_size_for("auto", (128, 128), cpu) == AUTO_CPU_BATCH_PIXELS // 128**2 > 1
    assert batch_size_for("auto", (32, 32), cpu) == AUTO_CPU_MAX_BATCH
    assert batch_size_for("auto", (2000, 2000), cpu) == 1
    assert batch_size_for("auto", (500, 375), cuda) > 1
    assert batch_size_for("auto", (4000, 4000), cuda) == 1


@pytest.mark.parametrize("workers", [0, 2])
def test_make_cams_auto_batches_equal_one_image_at_a_time(tmp_path, workers: int) -> None:
    """``auto`` batches the fixture's small images; the cache equals batch size 1's, with
    DataLoader workers rescaling too."""
    dataset = SyntheticDataset(make_synthetic_fixture(tmp_path))
    model = trained_like({**SMALL, "widths": [8, 8, 16, 16]})
    prepare_for_inference(model)

    def source(images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return model.cam(images)[:, classes]

    caches = {}
    for batch in (1, "auto"):
        caches[batch] = tmp_path / f"{batch}.h5"
        make_cams(source, dataset, "train", caches[batch], scales=[1.0, 0.5], flip=True,
                  batch_size=batch, grid=16, device=torch.device("cpu"), workers=workers,
                  progress=False, dtype="float32")
    with CamCache(caches[1]) as one, CamCache(caches["auto"]) as auto:
        assert sorted(one.ids) == sorted(auto.ids) == sorted(dataset.ids("train"))
        for image_id in one.ids:
            for kind in ("full", "stride4"):
                keys_a, a = one.read(image_id, kind)
                keys_b, b = auto.read(image_id, kind)
                assert np.array_equal(keys_a, keys_b)
                assert np.allclose(a, b, atol=1e-5), (image_id, kind)


def test_cam_source_folds_a_copy_and_keeps_the_maps() -> None:
    """The ``cam`` source runs a folded channels_last copy; the trained method keeps its
    batch norms (a gradient source built from it next reads the unfolded layers)."""
    trained = CAM({"backbone": SMALL, "freeze_bn_stats": True, "trainable_from_stage": 1}, 5)
    trained.networks["classifier"] = trained_like(SMALL)
    source = build_source(trained, {"method": "cam"})
    assert len(batch_norms(trained.classifier)) == 12
    x = network_input(torch.randint(0, 256, (2, 48, 40, 3), dtype=torch.uint8))
    classes = torch.tensor([0, 3])
    with torch.no_grad():
        expected = trained.cam(x, classes)
        got = source(x, classes)
    assert torch.allclose(got, expected, rtol=0, atol=1e-5 * expected.abs().max().item())
