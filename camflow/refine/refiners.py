"""The seam for refiners: anything that turns a CAM cache into a pseudo-mask set.

A refiner is a subclass of :class:`Refiner` registered with :func:`register_refiner` under
the name that ``refiners.<name>.method`` selects.  A *learned* refiner (IRN, AffinityNet)
also gives the training task that :class:`camflow.trainer.Trainer` runs on affinity labels
and loads its trained network; one that is not (``crf``) refines from the CAMs alone.
Either way one rule (``refine``) writes its masks and scores with :func:`make_pseudo_masks`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from camflow.cache import LabelCache
from camflow.data.base import SegmentationDataset
from camflow.registry import Registry
from camflow.trainer import TrainingTask

REFINERS: Registry[type[Refiner]] = Registry("refiner", ("camflow.methods", "camflow.refine"))


register_refiner = REFINERS.register  # class decorator: @register_refiner("name")


def refiner_class(name: str, key: str = "method") -> type[Refiner]:
    return REFINERS.get(name, key)


class Refiner:
    """Refines one image at a time (in worker processes: built once per worker).

    ``params`` are the refiner's inference settings (``random_walk`` of a learned refiner,
    the CRF settings of ``crf``); ``model_path`` is the trained network (learned only).
    """

    name: ClassVar[str]
    learned: ClassVar[bool] = False
    resolution: ClassVar[str] = "full"   # the CAM resolution it reads: full | stride4
    settings_keys: ClassVar[tuple[str, ...]] = ("random_walk",)  # inference, not training
    schema: ClassVar[dict[str, Any]] = {}   # its own config keys (JSON schema)

    @classmethod
    def settings(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        """The inference settings of a ``refiners.<name>`` block (passed as ``params``)."""
        return cfg["random_walk"]

    def __init__(self, params: dict[str, Any], model_path: str | None,
                 device: torch.device) -> None:
        self.params = params
        self.model_path = model_path
        self.device = device

    @classmethod
    def training(cls, cfg: dict[str, Any], dataset: SegmentationDataset, labels: LabelCache,
                 classifier: str | Path, device: torch.device) -> TrainingTask:
        """The training task of a learned refiner (affinity labels ``labels``; backbone from
        the CAM network at ``classifier``)."""
        raise TypeError(f"refiner {cls.name!r} is not learned")

    def cam_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The size of the CAMs it reads for an image of ``size``."""
        return size

    def refine(self, image: np.ndarray, keys: np.ndarray,
               cams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(channels, scores)`` of one image (uint8 H×W×3) from its CAMs of classes
        ``keys``: channels H×W (0 background, i the class ``keys[i-1]``) and class scores
        len(keys)×H×W."""
        raise NotImplementedError


class LearnedRefiner(Refiner):
    """A refiner with a trained network: ``task`` builds its training task (the arguments of
    :meth:`Refiner.training`), ``load`` reads the trained network back."""

    learned = True
    task: ClassVar[Callable[..., TrainingTask]]
    load: ClassVar[Callable[[str, torch.device], nn.Module]]

    def __init__(self, params: dict[str, Any], model_path: str | None,
                 device: torch.device) -> None:
        super().__init__(params, model_path, device)
        self.model = type(self).load(model_path, device)

    @classmethod
    def training(cls, cfg: dict[str, Any], dataset: SegmentationDataset, labels: LabelCache,
                 classifier: str | Path, device: torch.device) -> TrainingTask:
        return cls.task(cfg, dataset, labels, classifier, device)
