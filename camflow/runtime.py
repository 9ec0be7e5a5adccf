"""Device selection, seeding, logging and checkpoint I/O shared by the training stages."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camflow.io import CamflowInputError, atomic_path


def select_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``/``cuda``/``cuda:N`` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CamflowInputError(f"config key runtime.device is {name!r} but no GPU is visible")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-serialisable config (to refuse resuming a changed run)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def setup_logging(log_file: str | Path | None) -> None:
    """Readable log lines to stderr and, when given, to the rule's log file."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")


def run_logged(log_file: str | Path | None, stage: Callable[..., Any], *args: Any) -> Any:
    """Run ``stage(*args)`` with logging set up; a failure is written to the log file too."""
    setup_logging(log_file)
    try:
        return stage(*args)
    except Exception as exc:
        logging.getLogger("camflow").error("%s failed: %s", stage.__name__, exc, exc_info=True)
        raise


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """``torch.save`` under a temporary name, then rename."""
    with atomic_path(path, ".pt") as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a camflow checkpoint; a missing or unreadable file names itself."""
    path = Path(path)
    if not path.is_file():
        raise CamflowInputError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CamflowInputError(f"checkpoint {path} is unreadable: {exc}") from exc
