"""Atomic outputs: the user's umask, and no hidden temporary left by a killed writer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from camflow.cache import CamCacheWriter
from camflow.io import atomic_dir, atomic_path, write_json
from camflow.runtime import save_checkpoint

CLASSES = ["background", "a"]


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_outputs_follow_the_umask(tmp_path: Path, umask: int) -> None:
    """mkstemp creates 0600 files; every output must get 0666 & ~umask like a plain open."""
    write_json(tmp_path / "eval.json", {"miou": 0.5})
    with CamCacheWriter(tmp_path / "cams.h5", CLASSES, {}) as writer:
        writer.add("x", np.array([1]), np.zeros((1, 2, 2)), np.zeros((1, 8, 8)))
    save_checkpoint(tmp_path / "model.pt", {"w": 1})
    with atomic_dir(tmp_path / "masks") as tmp:
        (tmp / "x.png").write_bytes(b"png")
    for name in ("eval.json", "cams.h5", "model.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    assert (tmp_path / "masks").stat().st_mode & 0o777 == 0o777 & ~umask


def test_stale_temporaries_of_the_same_output_are_removed(tmp_path: Path) -> None:
    stale_file = tmp_path / ".cams.h5.k3j_9x0a.h5"
    stale_dir = tmp_path / ".masks.q1w2e3r4"
    keep = [tmp_path / ".cams.h5.bak", tmp_path / ".scores.h5.k3j_9x0a.h5",
            tmp_path / ".cams.h5.k3j_9x0a.json"]
    for p in (stale_file, *keep):
        p.write_bytes(b"partial")
    stale_dir.mkdir()
    (stale_dir / "x.png").write_bytes(b"partial")
    with atomic_path(tmp_path / "cams.h5", ".h5") as tmp:
        tmp.write_bytes(b"new")
    with atomic_dir(tmp_path / "masks"):
        pass
    assert not stale_file.exists() and not stale_dir.exists()
    assert all(p.exists() for p in keep)
    assert (tmp_path / "cams.h5").read_bytes() == b"new"


def test_a_sigkilled_writer_leaves_nothing_after_the_rerun(tmp_path: Path) -> None:
    """SIGKILL runs no cleanup: the partial file stays hidden beside the output until the
    next writer of that output starts."""
    code = ("import os, signal, sys\n"
            "from camflow.io import atomic_path\n"
            "with atomic_path(sys.argv[1], '.h5') as tmp:\n"
            "    tmp.write_bytes(b'partial')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    out = tmp_path / "cams.h5"
    proc = subprocess.run([sys.executable, "-c", code, str(out)], check=False)
    assert proc.returncode == -signal.SIGKILL
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".cams.h5.") and not out.exists()
    with atomic_path(out, ".h5") as tmp:
        tmp.write_bytes(b"done")
    assert [p.name for p in tmp_path.iterdir()] == ["cams.h5"]
