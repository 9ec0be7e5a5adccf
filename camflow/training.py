"""Training loops: SGD with polynomial decay, seeded, resumable, AMP on CUDA.

Settings follow IRN (``../shared/conventions.md``, CAM classifier): poly decay with power 0.9,
×10 learning rate on the new head, and the choice of momentum (IRN's published code in effect
trains with momentum 1e-4; see ``docs/fidelity.md``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from camflow.data.base import SegmentationDataset
from camflow.data.transforms import ClassificationDataset
from camflow.io import CamflowInputError
from camflow.models.backbones import Backbone, build_backbone
from camflow.models.classifier import CAMClassifier, build_classifier, multilabel_loss
from camflow.runtime import config_hash, load_checkpoint, save_checkpoint, seed_everything

log = logging.getLogger(__name__)

LossFn = Callable[[CAMClassifier, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def poly_lr(base_lr: float, step: int, max_steps: int, power: float) -> float:
    """Polynomial decay lr = base · (1 − step / max_steps)^power."""
    return base_lr * (1.0 - step / max_steps) ** power


def resume_path(out_path: str | Path) -> Path:
    """Where the in-progress training state of ``out_path`` lives."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + ".resume.pt")


def resume_state(state_file: Path, key: str, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    """Load the model and optimizer state of ``state_file`` when it exists and was written for
    the config hashed as ``key``; return the saved state (None when there is nothing to resume).
    A state of another config is logged and ignored."""
    if not state_file.exists():
        return None
    state = load_checkpoint(state_file)
    if state.get("config_hash") != key:
        log.info("ignoring %s: it was written for another config", state_file)
        return None
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state


def classification_loss(model: CAMClassifier, images: torch.Tensor, targets: torch.Tensor,
                        indices: torch.Tensor) -> torch.Tensor:
    """Seed 000 Eq. 1 on the GAP scores (the GLM / plain CAM objective)."""
    return multilabel_loss(model(images), targets)


def train_classifier(cfg: dict[str, Any], dataset: SegmentationDataset, split: str,
                     out_path: str | Path, device: torch.device, workers: int = 0,
                     amp: bool = True, progress: bool = True,
                     loss_fn: LossFn = classification_loss,
                     stop_after_epochs: int | None = None) -> Path:
    """Train a CAM classifier from ``cfg`` (a ``classifiers.<name>`` block); write ``out_path``.

    The state after every epoch is saved beside the output (``*.resume.pt``); a rerun with
    the same config continues from it. ``stop_after_epochs`` ends the run early (to test
    resumption) without writing the final checkpoint.
    """
    seed_everything(int(cfg["seed"]))
    data = ClassificationDataset(dataset, split, cfg["augment"], int(cfg["seed"]))
    if len(data) == 0:
        raise ValueError(f"{dataset.name}/{split}: no image with a foreground class to train on")
    model = build_classifier(cfg, dataset.num_classes).to(device)
    opt_cfg = cfg["optimizer"]
    groups = model.param_groups(float(opt_cfg["lr"]), float(opt_cfg["head_lr_mult"]),
                                float(opt_cfg["weight_decay"]))

    def step(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        images, targets, indices = batch
        return loss_fn(model, images.to(device), targets.to(device), indices)

    return fit_epochs(model, groups, data, cfg, step, out_path, device,
                      {"cfg": cfg, "split": split, "n": len(data)},
                      {"config": cfg, "class_names": list(dataset.class_names), "split": split},
                      workers=workers, amp=amp, progress=progress,
                      stop_after_epochs=stop_after_epochs)


def fit_epochs(model: torch.nn.Module, param_groups: list[dict[str, Any]], data: Any,
               cfg: dict[str, Any], step_loss: Callable[[Any], torch.Tensor],
               out_path: str | Path, device: torch.device, identity: Any,
               payload: dict[str, Any], workers: int = 0, amp: bool = True,
               progress: bool = True, stop_after_epochs: int | None = None) -> Path:
    """Epoch-based SGD with polynomial decay, shared by every trained stage.

    ``data`` is a map-style dataset with an ``epoch`` attribute (its augmentation is seeded
    by epoch and index); ``step_loss(batch)`` returns the loss of one batch.  ``cfg`` gives
    ``seed``, ``batch_size``, ``epochs`` and ``optimizer`` (``lr``, ``momentum``,
    ``poly_power``).  After every epoch the state is saved to ``*.resume.pt`` beside
    ``out_path``; a rerun whose ``identity`` (hashed) is unchanged resumes from it.  The final
    checkpoint is ``{"format_version": 1, "model": state_dict, **payload}``.
    """
    out_path = Path(out_path)
    seed = int(cfg["seed"])
    opt_cfg = cfg["optimizer"]
    optimizer = torch.optim.SGD(param_groups, lr=float(opt_cfg["lr"]),
                                momentum=float(opt_cfg["momentum"]), nesterov=False)
    batch_size = int(cfg["batch_size"])
    epochs = int(cfg["epochs"])
    steps_per_epoch = len(data) // batch_size if len(data) >= batch_size else 1
    max_steps = steps_per_epoch * epochs
    use_amp = amp and device.type == "cuda"
    key = config_hash(identity)

    start_epoch, step = 0, 0
    state_file = resume_path(out_path)
    state = resume_state(state_file, key, model, optimizer)
    if state is not None:
        start_epoch, step = state["epoch"], state["step"]
        log.info("resuming %s from epoch %d (step %d)", out_path, start_epoch, step)

    for epoch in range(start_epoch, epochs):
        if stop_after_epochs is not None and epoch >= stop_after_epochs:
            return state_file
        data.epoch = epoch
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        loader = DataLoader(data, batch_size=batch_size, shuffle=True,
                            drop_last=len(data) >= batch_size,
                            num_workers=workers, generator=generator,
                            persistent_workers=False, pin_memory=device.type == "cuda")
        model.train()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress,
                   dynamic_ncols=True)
        running = 0.0
        for i, batch in enumerate(bar, start=1):
            for group in optimizer.param_groups:
                group["lr"] = poly_lr(group["initial_lr"], step, max_steps,
                                      float(opt_cfg["poly_power"]))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = step_loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            running += loss.item()
            bar.set_postfix(loss=f"{running / i:.4f}")
        log.info("epoch %d/%d: mean loss %.4f", epoch + 1, epochs, running / max(1, i))
        save_checkpoint(state_file, {"model": model.state_dict(),
                                     "optimizer": optimizer.state_dict(),
                                     "epoch": epoch + 1, "step": step, "config_hash": key})

    save_checkpoint(out_path, {"format_version": 1, "model": model.state_dict(), **payload})
    state_file.unlink(missing_ok=True)
    log.info("wrote %s", out_path)
    return out_path


def load_classifier(path: str | Path, device: torch.device) -> CAMClassifier:
    """Rebuild a trained classifier from its checkpoint (in eval mode)."""
    ckpt = load_checkpoint(path)
    cfg = dict(ckpt["config"])
    cfg["backbone"] = {**cfg["backbone"], "weights": "none"}
    model = build_classifier(cfg, len(ckpt["class_names"]) - 1)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()


def pretrained_backbone(init: str, classifier: str | Path) -> Backbone:
    """The backbone of a refinement network, with the architecture of the CAM classifier
    saved at ``classifier``: its trained weights (``init: classifier``), ImageNet's
    (``imagenet``, as IRN and PSA) or none (``none``: weights loaded later)."""
    if init == "classifier":
        return load_classifier(classifier, torch.device("cpu")).backbone
    if init not in ("imagenet", "none"):
        raise CamflowInputError(f"backbone_init {init!r}: use classifier, imagenet or none")
    return build_backbone({**load_checkpoint(classifier)["config"]["backbone"], "weights": init})

