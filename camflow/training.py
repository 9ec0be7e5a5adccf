"""Classifier training: SGD with polynomial decay, seeded, resumable, AMP on CUDA.

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
    out_path = Path(out_path)
    seed = int(cfg["seed"])
    seed_everything(seed)
    data = ClassificationDataset(dataset, split, cfg["augment"], seed)
    if len(data) == 0:
        raise ValueError(f"{dataset.name}/{split}: no image with a foreground class to train on")
    model = build_classifier(cfg, dataset.num_classes).to(device)
    opt_cfg = cfg["optimizer"]
    groups = model.param_groups(float(opt_cfg["lr"]), float(opt_cfg["head_lr_mult"]),
                                float(opt_cfg["weight_decay"]))
    optimizer = torch.optim.SGD(groups, lr=float(opt_cfg["lr"]),
                                momentum=float(opt_cfg["momentum"]),
                                nesterov=False)
    batch_size = int(cfg["batch_size"])
    epochs = int(cfg["epochs"])
    steps_per_epoch = len(data) // batch_size if len(data) >= batch_size else 1
    max_steps = steps_per_epoch * epochs
    use_amp = amp and device.type == "cuda"
    key = config_hash({"cfg": cfg, "split": split, "n": len(data)})

    start_epoch, step = 0, 0
    state_file = resume_path(out_path)
    if state_file.exists():
        state = load_checkpoint(state_file)
        if state.get("config_hash") == key:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start_epoch, step = state["epoch"], state["step"]
            log.info("resuming %s from epoch %d (step %d)", out_path, start_epoch, step)
        else:
            log.info("ignoring %s: it was written for another config", state_file)

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
        for i, (images, targets, indices) in enumerate(bar, start=1):
            for group in optimizer.param_groups:
                group["lr"] = poly_lr(group["initial_lr"], step, max_steps,
                                      float(opt_cfg["poly_power"]))
            images, targets = images.to(device), targets.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = loss_fn(model, images, targets, indices)
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

    save_checkpoint(out_path, {"format_version": 1, "model": model.state_dict(), "config": cfg,
                               "class_names": list(dataset.class_names), "split": split})
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
