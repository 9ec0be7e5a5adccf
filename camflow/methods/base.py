"""The seam for ways to *train the CAM network*: a registry of training methods.

A method is a subclass of :class:`TrainingMethod` registered with :func:`register_method`
under the name that ``classifiers.<name>.method`` selects.  In one module it declares

* ``schema``: the JSON schema of its own config keys (with their defaults), validated and
  completed by :func:`method_config` together with the keys every method has;
* how it builds its networks (``networks``; ``classifier`` is the one whose CAMs are used);
* its optimizers (:meth:`optimizers`, several where it trains two networks in turn);
* its training data (:meth:`training_data`) and step (:meth:`step`, receiving the batch and
  the :class:`camflow.trainer.Progress`, returning its named loss terms);
* its inference map (:meth:`cam`) that the ``cam`` CAM source uses.

Every method's ``classifier`` is a :class:`camflow.models.classifier.CAMClassifier` (feature
extractor ``backbone``, 1×1 ``head``), so Grad-CAM, Grad-CAM++ and Fully-CAM work on any
method's network.  The checkpoint records the method and its config, and
:func:`load_method` rebuilds any method's networks from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from camflow.data.base import SegmentationDataset
from camflow.io import CamflowInputError
from camflow.models.backbones import Backbone, build_backbone
from camflow.models.classifier import CAMClassifier
from camflow.registry import Registry
from camflow.runtime import load_checkpoint
from camflow.schema import extend, validate_block
from camflow.trainer import OptimizerSpec, Progress, Trainer, Update

METHODS: Registry[type[TrainingMethod]] = Registry("training method", ("camflow.methods",))


register_method = METHODS.register  # class decorator: @register_method("name")


def method_class(name: str, key: str = "method") -> type[TrainingMethod]:
    """The registered method ``name``; an unknown name fails naming the config ``key``."""
    return METHODS.get(name, key)


def method_config(cfg: dict[str, Any], key: str, common: dict[str, Any],
                  defs: dict[str, Any] | None = None) -> dict[str, Any]:
    """``cfg`` (a config block selecting a method, default ``cam``) validated against the
    ``common`` schema extended by the method's own ``schema``, with defaults filled in;
    ``defs`` resolves ``#/$defs/...`` references.  Errors name ``key`` and the offending
    key."""
    cfg = {"method": "cam", **cfg}
    cls = method_class(cfg["method"], f"{key}.method")
    own = {**cls.schema, "properties": {**cls.schema.get("properties", {}),
                                        "method": {"type": "string"}}}
    return validate_block(cfg, key, extend(common, own), defs)


def no_pretrained_weights(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with its backbone built without pretrained weights."""
    return {**cfg, "backbone": {**cfg["backbone"], "weights": "none"}}


class TrainingMethod:
    """A way to train the CAM network (module doc).  Subclasses set ``schema`` and
    ``networks`` (in ``__init__``, with ``networks["classifier"]`` the CAM network) and
    implement :meth:`training_data` and :meth:`step`; :meth:`optimizers` and :meth:`cam`
    have defaults for a method that trains its classifier alone."""

    name: ClassVar[str]
    schema: ClassVar[dict[str, Any]] = {}

    def __init__(self, cfg: dict[str, Any], num_classes: int,
                 inputs: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.num_classes = num_classes
        self.inputs = inputs or {}
        self.networks: dict[str, nn.Module] = {}

    @property
    def classifier(self) -> CAMClassifier:
        """The network whose CAMs (and gradients) the CAM sources use."""
        return self.networks["classifier"]

    @property
    def label_smoothing(self) -> float:
        """ε of the method's classification losses (``label_smoothing``; absent: none)."""
        return float(self.cfg.get("label_smoothing", 0.0))

    def to(self, device: torch.device) -> TrainingMethod:
        for net in self.networks.values():
            net.to(device)
        self.device = device
        return self

    def optimizers(self) -> dict[str, OptimizerSpec]:
        """One SGD optimizer over the classifier (backbone at lr, head at lr × mult)."""
        opt = self.cfg["optimizer"]
        groups = self.classifier.param_groups(float(opt["lr"]), float(opt["head_lr_mult"]),
                                              float(opt["weight_decay"]))
        return {"classifier": OptimizerSpec(groups, opt)}

    def training_data(self, dataset: SegmentationDataset, split: str) -> Dataset:
        raise NotImplementedError

    def step(self, batch: Any, progress: Progress, update: Update) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def cam(self, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Non-negative maps B×n×h×w of ``classes`` (0-based) for a normalised batch: the
        ReLU of the classifier's head (GSLM (Mai et al.) Eq. 2, before normalisation)."""
        return self.classifier.cam(images)[:, classes]

    @classmethod
    def input_classifiers(cls, cfg: dict[str, Any]) -> dict[str, str]:
        """Other classifiers (by name under ``classifiers``) whose checkpoints training needs,
        by input name: they reach ``__init__`` as ``inputs[name]`` (OC-CSE's ``oc``)."""
        return {}

    @classmethod
    def from_checkpoint(cls, cfg: dict[str, Any], num_classes: int) -> TrainingMethod:
        """The untrained networks of a saved config; nothing is downloaded or read (the
        checkpoint's weights are loaded into them afterwards)."""
        return cls(no_pretrained_weights(cfg), num_classes)

    @classmethod
    def backbone_config(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        """The backbone block of the classifier a saved config builds."""
        return cfg["backbone"]

    def identity(self) -> dict[str, Any]:
        """What a resume state must have been written for, beyond the config and data."""
        return {}

    def checkpoint(self) -> dict[str, Any]:
        """The config that rebuilds this method's networks (recorded in the checkpoint)."""
        return self.cfg


class _Task:
    """A method bound to its training data, as the trainer sees it."""

    def __init__(self, method: TrainingMethod, data: Dataset) -> None:
        self.method = method
        self.networks = method.networks
        self.data = data

    def optimizers(self) -> dict[str, OptimizerSpec]:
        return self.method.optimizers()

    def training_data(self) -> Dataset:
        return self.data

    def step(self, batch: Any, progress: Progress, update: Update) -> dict[str, torch.Tensor]:
        return self.method.step(batch, progress, update)


def train_method(cfg: dict[str, Any], dataset: SegmentationDataset, split: str,
                 out_path: str | Path, device: torch.device, inputs: dict[str, Any] | None = None,
                 workers: int = 0, amp: bool = True, progress: bool = True,
                 stop_after_epochs: int | None = None, epochs_dir: str | Path | None = None
                 ) -> Path:
    """Train the method ``cfg["method"]`` (a validated config block) on ``split`` of
    ``dataset`` and write its checkpoint ``out_path`` (resumable; see
    :class:`camflow.trainer.Trainer`).  ``inputs`` are the method's input files;
    ``epochs_dir`` keeps every epoch's checkpoint there."""
    torch.manual_seed(int(cfg["seed"]))
    method = method_class(cfg["method"])(cfg, dataset.num_classes, inputs).to(device)
    data = method.training_data(dataset, split)
    if len(data) == 0:
        raise CamflowInputError(f"{dataset.name}/{split}: no image with a foreground class "
                                "to train on")
    identity = {"cfg": cfg, "split": split, "n": len(data), **method.identity()}
    trainer = Trainer(_Task(method, data), cfg, Path(out_path), device, identity,
                      workers=workers, amp=amp, progress=progress, stop_after=stop_after_epochs,
                      epochs_dir=None if epochs_dir is None else Path(epochs_dir))
    return trainer.fit({"method": cfg["method"], "config": method.checkpoint(),
                        "class_names": list(dataset.class_names), "split": split})


def load_method(path: str | Path, device: torch.device) -> TrainingMethod:
    """Rebuild the trained method saved at ``path`` (networks in eval mode)."""
    return method_from_checkpoint(load_checkpoint(path), path, device)


def method_from_checkpoint(ckpt: dict[str, Any], path: str | Path,
                           device: torch.device) -> TrainingMethod:
    """Rebuild the trained method of a loaded checkpoint (read from ``path``)."""
    if "method" not in ckpt or "networks" not in ckpt:
        raise CamflowInputError(f"checkpoint {path} is not a CAM-method checkpoint "
                                "(no 'method' / 'networks'); retrain it with this camflow")
    cls = method_class(ckpt["method"], f"method of checkpoint {path}")
    method = cls.from_checkpoint(ckpt["config"], len(ckpt["class_names"]) - 1)
    for name, net in method.networks.items():
        net.load_state_dict(ckpt["networks"][name])
        net.eval()
    return method.to(device)


def load_classifier(path: str | Path, device: torch.device) -> CAMClassifier:
    """The CAM network of any method's checkpoint, in eval mode."""
    return load_method(path, device).classifier


def pretrained_backbone(init: str, classifier: str | Path) -> Backbone:
    """The backbone of a refinement network, with the architecture of the CAM network saved
    at ``classifier`` (any method's): its trained weights (``init: classifier``),
    ImageNet's (``imagenet``, as IRN and PSA) or none (``none``: weights loaded later)."""
    if init == "classifier":
        return load_classifier(classifier, torch.device("cpu")).backbone
    if init not in ("imagenet", "none"):
        raise CamflowInputError(f"backbone_init {init!r}: use classifier, imagenet or none")
    ckpt = load_checkpoint(classifier)
    cfg = method_class(ckpt["method"]).backbone_config(ckpt["config"])
    return build_backbone({**cfg, "weights": init})
