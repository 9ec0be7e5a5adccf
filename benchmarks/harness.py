"""What every benchmark in ``benchmarks/`` shares, so that each measures the same honest way.

* :func:`alternate` times the implementations being compared in alternating order
  (A B, then B A, …), after a warm-up of each, so that a slow phase of this shared machine
  falls on both sides; it keeps every run, and :class:`Timing` reports the median and the
  spread (max − min) of at least three, and each run's system time and minor page faults.
* :class:`Isolated` runs one implementation in a Python process of its own, so that what
  another left behind in the process (the allocator's state, a warm heap, threads) does
  not speed it up or slow it down; :func:`alternate` times it there.
* :class:`Cold` drops the files an implementation reads from the kernel's page cache before
  each of its runs (untimed), so that the run reads them from the disk, as a pipeline job
  does on another node or after other jobs; :func:`resident_fraction` checks it worked.
* :func:`peak_memory` runs one function in a fresh Python process and reports its peak
  resident set (``VmHWM``) above the baseline taken after the imports and the set-up,
  so that neither the interpreter, torch nor an earlier measurement is counted.
* :func:`use_threads` sets torch's intra-op threads to what the pipeline's job uses
  (Snakemake's ``threads:`` = ``runtime.workers``; 1 per worker process in the random walk).
* :func:`write_result` writes ``results/benchmarks/{name}.json`` with :func:`machine_info`;
  ``benchmarks/report.py`` turns those files into ``docs/benchmarks.md`` (``make bench``).

The benchmark scripts import this module as ``harness`` (Python puts a script's own folder
first on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import mmap
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from camflow.io import write_json

RESULTS = Path("results/benchmarks")
MIN_REPEATS = 3


@dataclass
class Timing:
    """Wall-clock seconds of every timed run of one implementation, with the kernel's share
    of each run: system CPU seconds and minor page faults of this process and of the child
    processes it reaped during the run (DataLoader workers)."""

    runs: list[float] = field(default_factory=list)
    system_s: list[float] = field(default_factory=list)
    minor_faults: list[int] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def spread(self) -> float:
        """max − min of the runs, in seconds."""
        return max(self.runs) - min(self.runs)

    def per(self, n: float) -> dict[str, float]:
        """Median and spread of a rate: ``n`` items per run → items per second."""
        rates = sorted(n / t for t in self.runs)
        return {"median": statistics.median(rates), "min": rates[0], "max": rates[-1]}

    @classmethod
    def pooled(cls, timings: list[Timing]) -> Timing:
        """The runs of several timings of one implementation as one (e.g. of several
        :class:`Isolated` processes: the distribution over processes, not one process's)."""
        return cls([s for t in timings for s in t.runs],
                   [s for t in timings for s in t.system_s],
                   [f for t in timings for f in t.minor_faults])

    def as_dict(self) -> dict[str, Any]:
        return {"median_s": self.median, "spread_s": self.spread, "runs_s": list(self.runs),
                "system_s": list(self.system_s), "minor_faults": list(self.minor_faults)}


def _kernel_usage() -> tuple[float, int]:
    """System CPU seconds and minor faults so far of this process and its reaped children."""
    own, children = (resource.getrusage(who)
                     for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_stime + children.ru_stime, own.ru_minflt + children.ru_minflt


def _measure(case: Callable[[], object]) -> tuple[float, float, int]:
    """One run of ``case``: wall seconds, system CPU seconds, minor faults (a :class:`Cold`
    case's files dropped from the page cache first, untimed)."""
    if isinstance(case, Isolated):
        return case.measure()
    if isinstance(case, Cold):
        case.evict()
    system, faults = _kernel_usage()
    start = time.perf_counter()
    case()
    seconds = time.perf_counter() - start
    system_after, faults_after = _kernel_usage()
    return seconds, system_after - system, faults_after - faults


def alternate(cases: dict[str, Callable[[], object]], repeats: int = 5,
              warmup: int = 1) -> dict[str, Timing]:
    """Time every case ``repeats`` times, alternating their order round by round.

    Each case first runs ``warmup`` times untimed (allocator, caches, lazy imports); then
    round r runs the cases in order if r is even, reversed if odd (ABBA…), so drifts of the
    machine's load weigh on both alike. ``repeats`` below 3 is refused: one run's noise on
    this machine is larger than most effects measured here. A case that is an
    :class:`Isolated` is timed in its own process (its wall time, system time and faults
    there); any other callable in this one.
    """
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be at least {MIN_REPEATS}, got {repeats}")
    names = list(cases)
    for name in names:
        for _ in range(warmup):
            _measure(cases[name])
    timings = {name: Timing() for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            seconds, system, faults = _measure(cases[name])
            timings[name].runs.append(seconds)
            timings[name].system_s.append(system)
            timings[name].minor_faults.append(faults)
    return timings


_SERVER = r"""
import json, os, sys
sys.path[:0] = [{folder!r}, {harness!r}]
import torch
torch.set_num_threads({threads})
import {module} as bench
from harness import _measure

kwargs = {kwargs!r}
state = bench.{function}_setup(**kwargs)
results = os.fdopen({fd}, "w")
for _ in sys.stdin:
    results.write(json.dumps(_measure(lambda: bench.{function}(state, **kwargs))) + "\n")
    results.flush()
"""


class Isolated:
    """``function(state, **kwargs)`` of the benchmark file ``script``, run in a Python
    process of its own with ``threads`` torch threads; ``{function}_setup(**kwargs)`` builds
    ``state`` there once, untimed.

    Each implementation being compared keeps one such process for the whole alternation,
    so it runs as it would on its own: measured with ResNet-50 CAMs, IRN's procedure faulted
    0.5–0.75 M pages per 500×375 image in a fresh process (glibc unmaps its large buffers
    after each use) and none after camflow's ``make_cams`` had run in the same process, so
    the same code timed 2.7 or 3.6 s per image depending on what ran before it.  The child's
    output goes to this process's stderr; it reports each run's wall time, system time and
    minor faults (its own and its reaped children's) through a pipe.  Use it as a context
    manager, or call :meth:`close`.
    """

    def __init__(self, script: str | Path, function: str, kwargs: dict[str, Any],
                 threads: int) -> None:
        script = Path(script).resolve()
        self.name = f"{script.name}:{function}{kwargs}"
        read_fd, write_fd = os.pipe()
        code = _SERVER.format(folder=str(script.parent), harness=str(Path(__file__).parent),
                              module=script.stem, function=function, kwargs=kwargs,
                              threads=threads, fd=write_fd)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        self._proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                      stdout=sys.stderr, text=True, env=env,
                                      pass_fds=(write_fd,))
        os.close(write_fd)
        self._results = os.fdopen(read_fd)

    def measure(self) -> tuple[float, float, int]:
        """One timed run in the child: (wall seconds, system CPU seconds, minor faults)."""
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write("run\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            pass  # the child died: the empty read below says so
        line = self._results.readline()
        if not line:
            raise RuntimeError(f"{self.name} failed in its own process (exit code "
                               f"{self._proc.wait()}); its error is above")
        seconds, system, faults = json.loads(line)
        return seconds, system, faults

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait()
        self._results.close()

    def __enter__(self) -> Isolated:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def evict_page_cache(paths: Iterable[Path]) -> None:
    """Drop the pages of ``paths`` from the kernel's page cache: ``fsync`` (dirty pages
    cannot be dropped), then ``posix_fadvise(DONTNEED)``; no privileges needed, unlike
    ``/proc/sys/vm/drop_caches``.  A file system that keeps its files in memory (tmpfs)
    ignores it: :func:`resident_fraction` tells."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


def resident_fraction(paths: Iterable[Path]) -> float:
    """The fraction of the pages of ``paths`` in the page cache: ``mincore`` over a read-only
    mapping of each file, which maps without reading (Python's ``mmap`` hands out no
    address)."""
    resident = total = 0
    page = mmap.PAGESIZE
    for path in paths:
        size = os.path.getsize(path)
        if not size:
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr in (None, _MAP_FAILED):
                raise OSError(ctypes.get_errno(), f"mmap of {path} failed")
            pages = (size + page - 1) // page
            vec = (ctypes.c_ubyte * pages)()
            try:
                if _libc.mincore(addr, size, vec) != 0:
                    raise OSError(ctypes.get_errno(), f"mincore of {path} failed")
            finally:
                _libc.munmap(addr, size)
        finally:
            os.close(fd)
        resident += sum(v & 1 for v in vec)
        total += pages
    return resident / total if total else 0.0


@dataclass
class Cold:
    """A case whose files ``paths`` are dropped from the page cache before each run
    (:func:`evict_page_cache`, untimed in :func:`alternate`): it reads them from the disk."""

    case: Callable[[], object]
    paths: list[Path]

    def evict(self) -> None:
        evict_page_cache(self.paths)

    def __call__(self) -> object:
        return self.case()


@contextlib.contextmanager
def use_threads(n: int) -> Iterator[None]:
    """torch intra-op threads = ``n`` inside the block (the pipeline job's count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_CHILD = r"""
import json, sys
sys.path.insert(0, {folder!r})
import torch
torch.set_num_threads({threads})
import {module} as bench


def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024


setup = getattr(bench, {function!r} + "_setup", None)
state = setup(**{kwargs!r}) if setup else None
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM (the peak) to the current VmRSS
baseline = status("VmRSS")
out = getattr(bench, {function!r})(state, **{kwargs!r}) if setup else \
    getattr(bench, {function!r})(**{kwargs!r})
peak = status("VmHWM")
print(json.dumps({{"baseline_mib": baseline, "peak_mib": peak,
                  "above_baseline_mib": peak - baseline,
                  "returned": out if isinstance(out, (int, float, str, dict, list)) else None}}))
"""


def peak_memory(script: str | Path, function: str, kwargs: dict[str, Any],
                threads: int) -> dict[str, Any]:
    """Peak resident memory of ``function(**kwargs)`` from the benchmark file ``script``,
    in a fresh process with ``threads`` torch threads.

    If the module defines ``{function}_setup(**kwargs)``, it runs first and its result is
    passed to ``function`` as the first argument, so inputs built for the measurement count
    in the baseline, not in the peak. The baseline is the resident set after imports and
    set-up; then the kernel's high-water mark is reset to it (``/proc/self/clear_refs``, Linux
    ≥ 4.0), so the peak after the call is the call's own, not an import's transient.
    """
    script = Path(script).resolve()
    code = _CHILD.format(folder=str(script.parent), module=script.stem, function=function,
                         kwargs=kwargs, threads=threads)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name}:{function}{kwargs} failed in its fresh process:\n"
                           f"{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0)
            if torch.cuda.is_available() else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_average_1_5_15": list(os.getloadavg())}


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write ``results/benchmarks/{name}.json`` (with :func:`machine_info`); returns its path."""
    path = RESULTS / f"{name}.json"
    write_json(path, {"benchmark": name, "machine": machine_info(), **result})
    return path
