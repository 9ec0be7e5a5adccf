"""Every command of the README runs as written: each `.venv/bin/snakemake ...` line of its
```bash blocks plans its DAG (a dry run; `--unlock` for real) and each `make ...` line names a
Makefile target — in a sandbox laid out like a checkout, with tiny VOC and COCO folders where
the overlays look for them."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fixtures import make_coco_fixture, make_voc_fixture

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
CHECKOUT = ["Snakefile", "Makefile", "config.yaml", "pyproject.toml", "camflow", "config", "docs",
            "envs", "profiles", "rules", "schemas", "workflow_scripts"]

pytestmark = pytest.mark.slow


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


COMMANDS = readme_commands()


def test_the_readme_shows_the_commands_a_user_needs() -> None:
    assert {"make demo", "make test", "make tables", ".venv/bin/snakemake --unlock"} <= set(
        COMMANDS)
    assert any("--configfile=config/voc12.yaml" in c for c in COMMANDS)
    assert any("--profile profiles/slurm" in c for c in COMMANDS)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("checkout")
    for name in CHECKOUT:
        (root / name).symlink_to(REPO / name)
    make_voc_fixture(root / "data")
    make_coco_fixture(root / "data").rename(root / "data" / "coco2014")
    (root / "my.yaml").write_text(yaml.safe_dump({"runtime": {"workers": 1}}))
    return root


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs(command: str, sandbox: Path) -> None:
    argv = shlex.split(command)
    if argv[0] == "make":
        proc = subprocess.run(["make", "-n", *argv[1:]], cwd=sandbox, capture_output=True,
                              text=True)
    else:
        assert argv[0] == ".venv/bin/snakemake", command
        dry = [] if "--unlock" in argv else ["-n"]
        proc = subprocess.run([SNAKEMAKE, *dry, *argv[1:]], cwd=sandbox, capture_output=True,
                              text=True)
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
