"""Device selection, seeding, logging, checkpoint I/O and the per-image process pool shared
by the stages."""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import random
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sized
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from camflow.io import CamflowInputError, atomic_path, rebuild_hint


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
        raise CamflowInputError(f"checkpoint {path} is unreadable: {exc}; "
                                f"{rebuild_hint(path)}") from exc


_T = TypeVar("_T")
_R = TypeVar("_R")


def progress_bar(progress: bool = True, **options: Any) -> tqdm:
    """A tqdm bar shown on a terminal only: a job's log (stderr redirected, as under SLURM)
    never fills with carriage-return frames; long stages log readable lines instead."""
    return tqdm(disable=None if progress else True, dynamic_ncols=True, **options)


def parallel_map(func: Callable[[_T], _R], items: Iterable[_T], workers: int,
                 progress: bool = True, desc: str = "", *, total: int | None = None,
                 max_pending: int | None = None,
                 chunksize: int | None = None) -> Iterator[_R]:
    """``func(item)`` for every item, in order, over a ``multiprocessing`` pool of ``workers``
    processes, with a progress bar of ``total`` steps (default ``len(items)`` if it has one).

    ``func`` must be picklable (a module-level function, a ``functools.partial`` of one, or a
    dataclass instance); it is sent to each worker once.  The work runs in-process when
    ``workers <= 1`` or there is at most one item.

    ``items`` may be any iterable; it is drawn lazily in the calling process.  The pool is
    started before the first item is drawn, so what a generator does (e.g. load a model) is
    not inherited by the workers.  With ``max_pending``, at most that many items are drawn
    whose results have not been yielded yet, which bounds the memory a lazily produced input
    holds; without it the input is drawn up front.  ``chunksize`` items go to a worker per
    task (default: up to 16 for an input of known length, 1 with ``max_pending`` or an
    unknown length).

    If ``func``, ``items`` or the consumer raises, or the generator is closed before the end,
    the workers are terminated and joined; close it (``contextlib.closing``) where it may be
    abandoned half-way.
    """
    for name, value in (("max_pending", max_pending), ("chunksize", chunksize)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    n = total if total is not None else len(items) if isinstance(items, Sized) else None
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(progress_bar(progress, total=n, desc=desc, unit="img"))
        results: Iterator[_R]
        if workers > 1 and (n is None or n > 1):
            if chunksize is None:
                chunksize = (1 if max_pending is not None or n is None
                             else max(1, min(16, n // (4 * workers))))
            results = stack.enter_context(contextlib.closing(
                _pool_map(func, items, workers, chunksize, max_pending)))
        else:
            results = map(func, items)
        for result in results:
            bar.update(1)
            yield result


def _pool_map(func: Callable[[_T], _R], items: Iterable[_T], workers: int, chunksize: int,
              max_pending: int | None) -> Iterator[_R]:
    """The pooled path of :func:`parallel_map`: tasks of ``chunksize`` items submitted as the
    results are yielded (at most ``max_pending`` items in flight), results taken in order."""
    pool = multiprocessing.get_context().Pool(workers, initializer=_init_map_worker,
                                              initargs=(func,))
    try:
        source = iter(items)
        bound = sys.maxsize if max_pending is None else max_pending
        pending: collections.deque[AsyncResult[list[_R]]] = collections.deque()
        in_flight = 0  # items drawn whose results have not been yielded yet
        exhausted = False
        while True:
            while not exhausted and in_flight < bound:
                want = min(chunksize, bound - in_flight)
                chunk = list(itertools.islice(source, want))
                exhausted = len(chunk) < want
                if chunk:
                    pending.append(pool.apply_async(_call_map_worker, (chunk,)))
                    in_flight += len(chunk)
            if not pending:
                return
            for result in pending.popleft().get():
                in_flight -= 1
                yield result
    finally:
        pool.terminate()
        pool.join()


_MAP_FUNC: Callable[[Any], Any] | None = None


def _init_map_worker(func: Callable[[Any], Any]) -> None:
    """Pool initializer: keep the mapped function for the tasks of this worker."""
    global _MAP_FUNC
    _MAP_FUNC = func


def _call_map_worker(chunk: list[Any]) -> list[Any]:
    """One task in a worker: the mapped function over a chunk of items, in order."""
    assert _MAP_FUNC is not None, "worker not initialised"
    return [_MAP_FUNC(item) for item in chunk]
