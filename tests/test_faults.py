"""Hard kills: a SIGKILL (an OOM kill, SLURM's KILL) of a job in train_classifier, make_cams or
eval_cams, then the same command again, gives the tables and CAM arrays of an uninterrupted
run and leaves no hidden temporary file behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "data" / "tiny_config.yaml"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
TARGET = "results/synthetic/tables/cam_seeds.csv"
CACHE = "results/synthetic/resnet_small/cam/train/cams.h5"

pytestmark = pytest.mark.slow


def command(workdir: Path) -> list[str]:
    """cam_seeds on the tiny config, the classifier trained for 3 epochs (so that a kill can
    land after its first resume state)."""
    override = workdir / "three_epochs.yaml"
    override.write_text("classifiers:\n  resnet_small:\n    epochs: 3\n")
    return [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--cores", "2", TARGET, "--configfile", str(TINY), str(override)]


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def job_pid(snakemake_pid: int, rule: str) -> int | None:
    """The pid of the running script of ``rule`` started by this test's Snakemake."""
    for pid in children(snakemake_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if f".{rule}.py".encode() in cmdline:
            return pid
    return None


def arrays(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {f"{i}/{n}": f["images"][i][n][()] for i in f["images"] for n in f["images"][i]}


def hidden_temporaries(workdir: Path) -> list[str]:
    return sorted(str(p.relative_to(workdir)) for p in (workdir / "results").rglob(".*")
                  if p.name.count(".") >= 2)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("reference")
    subprocess.run(command(workdir), check=True, capture_output=True)
    return workdir


# When to kill: the job is running and, for the writers, its hidden temporary exists.
WHEN = {
    "train_classifier": "results/synthetic/resnet_small/classifier.resume.pt",
    "make_cams": "results/synthetic/resnet_small/cam/train/.cams.h5.*.h5",
    "eval_cams": None,
}


@pytest.mark.parametrize("rule", list(WHEN))
def test_sigkill_then_rerun_gives_the_uninterrupted_results(rule: str, reference: Path,
                                                            tmp_path: Path) -> None:
    proc = subprocess.Popen(command(tmp_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    killed = False
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        pid = job_pid(proc.pid, rule)
        ready = WHEN[rule] is None or any(tmp_path.glob(WHEN[rule]))
        if pid is not None and ready:
            for victim in (pid, *children(pid)):      # the job and its worker processes
                with contextlib.suppress(ProcessLookupError):
                    os.kill(victim, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.05)
    proc.wait(timeout=600)
    assert killed, f"{rule} finished before it could be killed"
    assert proc.returncode != 0
    assert not (tmp_path / TARGET).exists()

    rerun = subprocess.run(command(tmp_path), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    if rule == "train_classifier":    # killed after its first epoch: the rerun resumes there
        log = tmp_path / "results/logs/synthetic/resnet_small/train_classifier.log"
        assert "resuming" in log.read_text()
    assert (tmp_path / TARGET).read_text() == (reference / TARGET).read_text()
    ours, theirs = arrays(tmp_path / CACHE), arrays(reference / CACHE)
    assert ours.keys() == theirs.keys()
    assert all(np.array_equal(ours[k], theirs[k]) for k in ours)
    assert hidden_temporaries(tmp_path) == []
