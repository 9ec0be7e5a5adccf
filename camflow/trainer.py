"""One trainer for every trained stage: CAM methods, GSLM's SLM, IRN, AffinityNet, DeepLab.

A stage hands the trainer a :class:`TrainingTask`: its networks, its optimizers (one or
several, each SGD with polynomial decay — IRN's schedule, ``lr · (1 − step/max)^0.9``), its
training data and its ``step``.  The step receives the batch, the training :class:`Progress`
(step, total steps, epoch) for loss-weight schedules, and an ``update(optimizer, loss)``
callback that back-propagates a loss into one optimizer; it may call it several times (a
method that trains two networks in turn) and returns its named loss terms.

Two schedules:

* **epochs** (``cfg["epochs"]``): every epoch visits the data in the order of a generator
  seeded by ``seed · 1000 + epoch``; the data's augmentation is seeded by
  ``(seed, epoch, index)`` (its ``epoch`` attribute is set here).  State is saved after each
  epoch.
* **iterations** (``cfg["iterations"]``): the data is indexed by global sample number
  (``iteration · batch + b``) and must be a pure function of it; state is saved every
  ``cfg["checkpoint_every"]`` iterations.

Before every step the torch RNG is reseeded from ``(seed, step)``, so dropout and any random
choice a method makes is the same after a resume: an interrupted run resumed from its
``*.resume.pt`` ends with bit-identical weights.  bf16 autocast on CUDA when ``amp``.  Each
step's lr and loss terms go to ``metrics.csv`` beside the checkpoint; progress is a bar on a
terminal and a log line every 5 % of training.  No global state: the trainer can run under
``torchrun`` unchanged.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from camflow.io import CamflowInputError, atomic_dir, write_text
from camflow.runtime import (
    config_hash,
    load_checkpoint,
    progress_bar,
    save_checkpoint,
    seed_everything,
)

log = logging.getLogger(__name__)

LOG_LINES = 20  # periodic log lines per training run


@dataclass(frozen=True)
class Progress:
    """Where training stands when a step starts: ``step`` steps are done (0-based), out of
    ``total_steps``; ``epoch`` is 0-based (0 throughout an iteration-based run)."""

    step: int
    total_steps: int
    epoch: int

    @property
    def fraction(self) -> float:
        """Fraction of training done, in [0, 1)."""
        return self.step / max(1, self.total_steps)


def linear_ramp(progress: Progress, start: float, end: float, until: float = 1.0) -> float:
    """A loss weight rising (or falling) linearly from ``start`` to ``end`` over the first
    ``until`` fraction of training, then constant (Puzzle-CAM's λ_re, P-NOC's λ_cse/λ_noc)."""
    t = min(1.0, progress.fraction / until) if until > 0 else 1.0
    return start + (end - start) * t


def poly_lr(base_lr: float, step: int, max_steps: int, power: float) -> float:
    """Polynomial decay lr = base · (1 − step / max_steps)^power."""
    return base_lr * (1.0 - step / max_steps) ** power


@dataclass
class OptimizerSpec:
    """An SGD optimizer: parameter groups (each with ``lr``, ``initial_lr``,
    ``weight_decay``) and the ``optimizer`` config block (``lr``, ``momentum``,
    ``poly_power``)."""

    param_groups: list[dict[str, Any]]
    config: dict[str, Any]


Update = Callable[[str, torch.Tensor], None]


class TrainingTask(Protocol):
    """What a trained stage gives the trainer (module doc)."""

    networks: dict[str, nn.Module]

    def optimizers(self) -> dict[str, OptimizerSpec]: ...

    def training_data(self) -> Dataset: ...

    def step(self, batch: Any, progress: Progress, update: Update) -> dict[str, torch.Tensor]:
        ...


def resume_path(out_path: str | Path) -> Path:
    """Where the in-progress training state of ``out_path`` lives."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + ".resume.pt")


def epochs_staging_path(out_path: str | Path) -> Path:
    """Where the per-epoch checkpoints of ``out_path`` wait until training ends: beside the
    resume state and, like it, no Snakemake output — Snakemake deletes a job's outputs
    before rerunning it, so epochs kept in the output folder would not survive a resume."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + ".epochs.partial")


def metrics_path(out_path: str | Path) -> Path:
    """The per-step training metrics of the checkpoint ``out_path``: ``metrics.csv`` beside it."""
    return Path(out_path).with_name("metrics.csv")


def step_seed(seed: int, step: int) -> int:
    """The torch seed of step ``step`` of a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, 2, step]).generate_state(1)[0])


def _metrics_csv(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


@dataclass
class Trainer:
    """Drives a :class:`TrainingTask` (module doc).

    ``cfg`` gives ``seed``, ``batch_size`` and either ``epochs`` or ``iterations`` (with
    ``checkpoint_every``).  ``identity`` is hashed: a resume state written for another
    identity is ignored.  ``stop_after`` (epochs or iterations) saves the state and returns
    before the end, to test resumption.
    """

    task: TrainingTask
    cfg: dict[str, Any]
    out_path: Path
    device: torch.device
    identity: Any
    workers: int = 0
    amp: bool = True
    progress: bool = True
    stop_after: int | None = None
    epochs_dir: Path | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out_path = Path(self.out_path)
        self.seed = int(self.cfg["seed"])
        self.batch_size = int(self.cfg["batch_size"])
        self.by_epoch = "epochs" in self.cfg
        if self.by_epoch == ("iterations" in self.cfg):
            raise CamflowInputError("a training config needs exactly one of the keys "
                                    "'epochs' and 'iterations'")
        specs = self.task.optimizers()
        self.optimizers = {
            name: torch.optim.SGD(spec.param_groups, lr=float(spec.config["lr"]),
                                  momentum=float(spec.config["momentum"]), nesterov=False)
            for name, spec in specs.items()}
        self.powers = {name: float(spec.config["poly_power"]) for name, spec in specs.items()}
        self.key = config_hash(self.identity)

    # -- state ---------------------------------------------------------------------------

    def _state(self, step: int) -> dict[str, Any]:
        return {"networks": {n: m.state_dict() for n, m in self.task.networks.items()},
                "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
                "step": step, "metrics": self.rows, "config_hash": self.key}

    def _resume(self) -> int:
        """Load a resume state written for this identity; the number of steps it had done."""
        state_file = resume_path(self.out_path)
        if not state_file.exists():
            return 0
        state = load_checkpoint(state_file)
        if state.get("config_hash") != self.key:
            log.info("ignoring %s: it was written for another config", state_file)
            return 0
        for name, net in self.task.networks.items():
            net.load_state_dict(state["networks"][name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.rows = list(state["metrics"])
        log.info("resuming %s from step %d", self.out_path, state["step"])
        return int(state["step"])

    def _final_state(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"format_version": 2,
                "networks": {n: m.state_dict() for n, m in self.task.networks.items()},
                **payload}

    def _save_state(self, step: int) -> None:
        save_checkpoint(resume_path(self.out_path), self._state(step))
        write_text(metrics_path(self.out_path), _metrics_csv(self.rows))

    # -- schedule ------------------------------------------------------------------------

    def _steps_per_epoch(self, n: int) -> int:
        return n // self.batch_size if n >= self.batch_size else 1

    def _batches(self, data: Dataset, start: int, end: int
                 ) -> Iterator[tuple[int, int, Any]]:
        """(step, epoch, batch) for steps ``start`` .. ``end`` − 1."""
        pin = self.device.type == "cuda"
        if not self.by_epoch:
            loader = DataLoader(data, batch_size=self.batch_size, shuffle=False,
                                sampler=range(start * self.batch_size, end * self.batch_size),
                                num_workers=self.workers, pin_memory=pin)
            yield from ((start + i, 0, batch) for i, batch in enumerate(loader))
            return
        n = len(data)
        per_epoch = self._steps_per_epoch(n)
        step = start
        for epoch in range(start // per_epoch, -(-end // per_epoch)):
            data.epoch = epoch
            generator = torch.Generator().manual_seed(self.seed * 1000 + epoch)
            loader = DataLoader(data, batch_size=self.batch_size, shuffle=True,
                                drop_last=n >= self.batch_size, num_workers=self.workers,
                                generator=generator, persistent_workers=False, pin_memory=pin)
            for batch in loader:
                yield step, epoch, batch
                step += 1
                if step >= end:
                    return

    def _checkpoint_due(self, step: int, total: int) -> bool:
        if step >= total:
            return False
        if self.by_epoch:
            return step % self._steps_per_epoch(len(self.data)) == 0
        return step % int(self.cfg["checkpoint_every"]) == 0

    # -- the loop ------------------------------------------------------------------------

    def fit(self, payload: dict[str, Any]) -> Path:
        """Train to the end (or ``stop_after``) and write the checkpoint
        ``{"format_version": 2, "networks": {name: state_dict}, **payload}``; return its
        path (the resume state's when stopped early)."""
        seed_everything(self.seed)
        self.data = self.task.training_data()
        if len(self.data) == 0:
            raise CamflowInputError(f"{self.out_path}: no training sample")
        per_epoch = self._steps_per_epoch(len(self.data))
        if self.by_epoch:
            total = per_epoch * int(self.cfg["epochs"])
            end = total if self.stop_after is None else min(total, self.stop_after * per_epoch)
        else:
            total = int(self.cfg["iterations"])
            end = total if self.stop_after is None else min(total, self.stop_after)
        start = self._resume()
        staging = epochs_staging_path(self.out_path)
        if start == 0 and staging.exists():  # epochs of a run that is not resumed
            shutil.rmtree(staging)
        use_amp = self.amp and self.device.type == "cuda"
        every = max(1, total // LOG_LINES)
        for net in self.task.networks.values():
            net.train()

        def update(name: str, loss: torch.Tensor) -> None:
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{self.out_path}: loss of optimizer {name!r} is "
                                         f"{loss.item()} at step {progress.step}; lower its lr")
            opt = self.optimizers[name]
            opt.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, enabled=False):
                loss.backward()
            opt.step()

        bar = progress_bar(self.progress, total=total, initial=start, desc=self.out_path.name)
        step = start
        for step, epoch, batch in self._batches(self.data, start, end):
            progress = Progress(step, total, epoch)
            lrs = {}
            for name, opt in self.optimizers.items():
                for group in opt.param_groups:
                    group["lr"] = poly_lr(group["initial_lr"], step, total, self.powers[name])
                lrs["lr" if len(self.optimizers) == 1 else f"lr_{name}"] = \
                    opt.param_groups[0]["lr"]
            torch.manual_seed(step_seed(self.seed, step))
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
                terms = self.task.step(batch, progress, update)
            row = {"step": step + 1, "epoch": epoch + 1, **lrs,
                   **{k: float(v) for k, v in terms.items()}}
            self.rows.append(row)
            bar.update(1)
            bar.set_postfix({k: f"{v:.4f}" for k, v in row.items() if k not in lrs
                             and k not in ("step", "epoch")})
            if (step + 1) % every == 0 or step + 1 == total:
                log.info("step %d/%d (epoch %d): %s", step + 1, total, epoch + 1,
                         ", ".join(f"{k} {v:.4f}" for k, v in row.items()
                                   if k not in ("step", "epoch")))
            step += 1
            if self.epochs_dir is not None and self.by_epoch and step % per_epoch == 0:
                save_checkpoint(staging / f"epoch{step // per_epoch:02d}.pt",
                                self._final_state(payload))
            if self._checkpoint_due(step, total):
                self._save_state(step)
        bar.close()
        if step < total:  # stopped early on request
            self._save_state(step)
            return resume_path(self.out_path)
        for net in self.task.networks.values():
            net.eval()
        save_checkpoint(self.out_path, self._final_state(payload))
        write_text(metrics_path(self.out_path), _metrics_csv(self.rows))
        if self.epochs_dir is not None:
            with atomic_dir(self.epochs_dir) as tmp:
                for ckpt in sorted(staging.glob("epoch*.pt")):
                    os.replace(ckpt, tmp / ckpt.name)
            shutil.rmtree(staging, ignore_errors=True)
        resume_path(self.out_path).unlink(missing_ok=True)
        log.info("wrote %s", self.out_path)
        return self.out_path
