"""Device selection, seeding, logging, checkpoint I/O and the per-image process pool shared
by the stages."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import random
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

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


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _default_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


_FORK_HOOK: list[bool] = []


def run_logged(log_file: str | Path | None, stage: Callable[..., Any], *args: Any) -> Any:
    """Run ``stage(*args)`` with logging set up; a failure is written to the log file too.

    SIGTERM (how Snakemake and SLURM cancel a job) becomes ``SystemExit`` in this process,
    so that the temporary files of atomic writes are removed on the way out. Forked
    children (pool and DataLoader workers) get the default action back: with a Python-level
    handler, a SIGTERM that lands just before a worker blocks on a lock only sets a flag,
    the worker sleeps on, and ``Pool.terminate()`` waits for it forever.
    """
    signal.signal(signal.SIGTERM, _terminate)
    if not _FORK_HOOK:
        os.register_at_fork(after_in_child=_default_sigterm)
        _FORK_HOOK.append(True)
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


def parallel_map(func: Callable[[Any], Any], items: Sequence[Any], workers: int,
                 progress: bool = True, desc: str = "") -> Iterator[Any]:
    """``func(item)`` for every item, in order, over a ``multiprocessing`` pool of ``workers``
    processes (in-process when ``workers <= 1``), with a progress bar.

    ``func`` must be picklable (a module-level function or a dataclass instance); it is sent
    to each worker once.
    """
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=len(items), desc=desc, unit="img",
                                       disable=not progress, dynamic_ncols=True))
        if workers > 1 and len(items) > 1:
            pool = stack.enter_context(multiprocessing.get_context().Pool(
                workers, initializer=_init_map_worker, initargs=(func,)))
            chunk = max(1, min(16, len(items) // (4 * workers)))
            results: Iterable[Any] = pool.imap(_call_map_worker, items, chunksize=chunk)
        else:
            results = map(func, items)
        for result in results:
            bar.update(1)
            yield result


_MAP_FUNC: Callable[[Any], Any] | None = None


def _init_map_worker(func: Callable[[Any], Any]) -> None:
    global _MAP_FUNC
    _MAP_FUNC = func


def _call_map_worker(item: Any) -> Any:
    assert _MAP_FUNC is not None, "worker not initialised"
    return _MAP_FUNC(item)
