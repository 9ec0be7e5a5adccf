"""The repository reads whole in a user's clone: nothing refers to files outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"\.\./shared|/work/|[Ss]eed 00\d|seeds/00\d")


def test_no_tracked_file_refers_outside_the_repository() -> None:
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    offenders = []
    for name in files:
        path = REPO / name
        if path.suffix in {".png", ".jpg", ".h5", ".pt"} or name == "tests/test_repository.py":
            continue
        text = path.read_text(errors="ignore")
        offenders += [f"{name}:{n}" for n, line in enumerate(text.splitlines(), 1)
                      if OUTSIDE.search(line)]
    assert offenders == []
