"""The training-method seam: a method defined here (two networks, two optimizers, a
loss-weight ramp) trains through the real trainer, resumes bit-exactly, writes metrics.csv,
and its CAMs are cached and evaluated by the stage functions the rules call; Grad-CAM runs on
its network; unknown names and bad method keys fail naming the config key."""

from __future__ import annotations

import csv
import json
from typing import Any

import pytest
import torch

from camflow.data.transforms import ClassificationDataset
from camflow.data.voc import SyntheticDataset
from camflow.io import CamflowInputError
from camflow.methods.base import (
    TrainingMethod,
    load_method,
    method_class,
    method_config,
    register_method,
    train_method,
)
from camflow.models.classifier import build_classifier, multilabel_loss
from camflow.runtime import load_checkpoint
from camflow.stages import run_eval_cams, run_make_cams
from camflow.trainer import Progress, linear_ramp, metrics_path, resume_path
from fixtures import make_synthetic_fixture

BACKBONE = {"arch": "resnet_small", "strides": [2, 2, 2, 1], "widths": [4, 4, 8, 8],
            "blocks": [1, 1, 1, 1], "weights": "none"}
OPTIMIZER = {"lr": 0.05, "head_lr_mult": 10, "momentum": 0.9, "weight_decay": 1e-4,
             "poly_power": 0.9}
CFG = {"method": "two_nets", "backbone": BACKBONE, "freeze_bn_stats": False,
       "trainable_from_stage": 1, "optimizer": OPTIMIZER, "batch_size": 2, "epochs": 3,
       "augment": {"resize_long": [20, 28], "resample": "bicubic", "flip": True, "crop": 24},
       "seed": 3, "critic_every": 2, "max_weight": 1.0}
CPU = torch.device("cpu")


@register_method("two_nets")
class TwoNets(TrainingMethod):
    """A toy adversarial method: a classifier and a critic trained in turn, the critic every
    ``critic_every`` steps, the critic's term weighted by a ramp 0 → ``max_weight``."""

    schema = {"required": ["critic_every"],
              "properties": {"critic_every": {"type": "integer", "minimum": 1},
                             "max_weight": {"type": "number", "default": 0.5}}}

    def __init__(self, cfg: dict[str, Any], num_classes: int,
                 inputs: dict[str, Any] | None = None) -> None:
        super().__init__(cfg, num_classes, inputs)
        self.networks = {"classifier": build_classifier(cfg, num_classes),
                         "critic": build_classifier(cfg, num_classes)}

    def optimizers(self):
        specs = super().optimizers()
        critic = self.networks["critic"].param_groups(0.01, 1.0, 0.0)
        return {**specs, "critic": type(specs["classifier"])(critic, OPTIMIZER)}

    def training_data(self, dataset, split):
        return ClassificationDataset(dataset, split, self.cfg["augment"], int(self.cfg["seed"]))

    def step(self, batch, progress: Progress, update):
        images, targets, _ = (t.to(self.device) if torch.is_tensor(t) else t for t in batch)
        weight = linear_ramp(progress, 0.0, float(self.cfg["max_weight"]), until=0.5)
        noise = torch.rand_like(images) * 0.1      # a random choice: reseeded per step
        masked = images * (1 - self.classifier.cam(images + noise).mean(1, keepdim=True)
                           .clamp(0, 1).detach().mean())
        cls = multilabel_loss(self.classifier(images), targets)
        adv = -multilabel_loss(self.networks["critic"](masked), targets)
        update("classifier", cls + weight * adv.detach())
        terms = {"cls": cls.detach(), "weight": torch.tensor(weight)}
        if progress.step % int(self.cfg["critic_every"]) == 0:
            critic = multilabel_loss(self.networks["critic"](masked), targets)
            update("critic", critic)
            terms["critic"] = critic.detach()
        return terms


@pytest.fixture
def dataset(tmp_path) -> SyntheticDataset:
    return SyntheticDataset(make_synthetic_fixture(tmp_path / "data"))


def networks(path) -> dict[str, dict[str, torch.Tensor]]:
    return load_checkpoint(path)["networks"]


def test_a_method_with_two_networks_trains_resumes_and_its_cams_are_evaluated(
        dataset, tmp_path) -> None:
    full = tmp_path / "full" / "classifier.pt"
    train_method(CFG, dataset, "train", full, CPU, progress=False)
    part = tmp_path / "part" / "classifier.pt"
    assert train_method(CFG, dataset, "train", part, CPU, progress=False,
                        stop_after_epochs=1) == resume_path(part)
    assert not part.exists()
    train_method(CFG, dataset, "train", part, CPU, progress=False)
    a, b = networks(full), networks(part)
    assert set(a) == {"classifier", "critic"}
    for net in a:
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net]), net
    # metrics.csv: one row per step, the ramp rises and the critic's term every 2nd step
    rows = list(csv.DictReader(metrics_path(full).open()))
    assert metrics_path(full).read_text() == metrics_path(part).read_text()
    per_epoch = len(dataset.ids("train")) // 2
    assert [int(r["step"]) for r in rows] == list(range(1, 3 * per_epoch + 1))
    assert {"lr_classifier", "lr_critic", "cls", "weight", "critic"} <= set(rows[0])
    weights = [float(r["weight"]) for r in rows]
    assert weights[0] == 0 and weights == sorted(weights) and weights[-1] == 1.0
    assert [bool(r["critic"]) for r in rows] == [i % 2 == 0 for i in range(len(rows))]
    # the checkpoint rebuilds the method; the cam source and Grad-CAM use its classifier
    trained = load_method(full, CPU)
    assert isinstance(trained, TwoNets) and not trained.classifier.training
    data = {"name": "synthetic", "root": str(dataset.root), "split": "train"}
    runtime = {"device": "cpu", "amp": False}
    for source in ({"method": "cam"}, {"method": "gradcam", "layer": "backbone.stages.3"}):
        cache = tmp_path / source["method"] / "cams.h5"
        run_make_cams(str(cache), str(full), {**source, "scales": [1.0], "flip": True,
                                              "batch_size": 2, "grid": 16, "dtype": "float32"},
                      data, runtime, 0)
        out = cache.with_name("eval.json")
        run_eval_cams(str(cache), str(out), str(cache.with_name("eval.csv")),
                      {"thresholds": [0.1, 0.3], "crf": {"enabled": False}}, data, 0)
        record = json.loads(out.read_text())
        assert record["kind"] == "seeds" and 0 < record["miou"] <= 1
        assert record["provenance"]["training"] == "two_nets"


def test_method_config_fills_defaults_and_names_bad_keys() -> None:
    common = {"type": "object", "properties": {"seed": {"type": "integer", "default": 0}}}
    cfg = method_config({"method": "two_nets", "critic_every": 2}, "classifiers.x", common)
    assert cfg["max_weight"] == 0.5 and cfg["seed"] == 0
    with pytest.raises(CamflowInputError, match="classifiers.x.critic_every"):
        method_config({"method": "two_nets", "critic_every": 0}, "classifiers.x", common)
    with pytest.raises(CamflowInputError, match="classifiers.x.*critic_evry"):
        method_config({"method": "two_nets", "critic_every": 2, "critic_evry": 3},
                      "classifiers.x", common)
    with pytest.raises(CamflowInputError, match="classifiers.x.method: unknown training"
                                                 " method 'nope'; known: .*cam"):
        method_config({"method": "nope"}, "classifiers.x", common)
    assert method_config({}, "classifiers.y", common)["method"] == "cam"
    assert method_class("slm").name == "slm"
