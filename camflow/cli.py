"""The ``camflow`` command: ``camflow tables`` lists every paper table of the configuration —
its target rule, the paper it reproduces, what it shows, where it lands and whether it is built;
``camflow show`` prints the tables of ``targets`` as built (what ``make demo`` ends with).

The configuration is ``config.yaml`` with the ``--configfile`` overlays merged over it as
Snakemake merges them (nested blocks key by key), so the list is what ``snakemake`` would build.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from camflow.io import CamflowInputError

if TYPE_CHECKING:
    from camflow.workflow import Workflow

REPO = Path(__file__).resolve().parents[1]


def load_config(overlays: list[str]) -> dict[str, Any]:
    """``config.yaml`` with ``overlays`` merged over it in order (Snakemake's merge)."""
    from snakemake.utils import update_config

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for path in overlays:
        try:
            update_config(config, yaml.safe_load(Path(path).read_text()) or {})
        except (OSError, yaml.YAMLError) as exc:
            raise CamflowInputError(f"config file {path}: {exc}") from exc
    return config


def checked_workflow(args: argparse.Namespace) -> Workflow:
    """The workflow glue over ``config.yaml`` and the command's overlays, validated."""
    from camflow.workflow import Workflow

    wf = Workflow(load_config(args.configfile))
    wf.check()
    return wf


def table_rows(wf: Workflow, workdir: Path) -> list[list[str]]:
    """One row per configured table: name, paper, title, target path, built or not."""
    from camflow.tables import table_class

    rows = []
    for name in wf.config["tables"]:
        about = table_class(name).about()
        target = wf.table_targets(name)[0]
        built = "yes" if (workdir / target).exists() else "no"
        rows.append([name, about["short"], about["title"], target, built])
    return rows


def print_tables(args: argparse.Namespace) -> None:
    rows = table_rows(checked_workflow(args), Path(args.directory))
    header = ["target rule", "paper", "table", "result", "built"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    # targets first: --configfile takes every value after it (and a second one replaces it)
    overlay = f" --configfile {' '.join(args.configfile)}" if args.configfile else ""
    print(f"\nBuild one table with its figures: .venv/bin/snakemake {rows[0][0]}{overlay}"
          if rows else "\nNo tables are configured.")
    print("Then the HTML report of what is built: make report (snakemake --report)")


def show_tables(args: argparse.Namespace) -> None:
    wf = checked_workflow(args)
    for name in wf.config["targets"]:
        md = Path(args.directory) / wf.table_targets(name)[1]
        print(md.read_text() if md.exists() else f"### {name}: not built yet ({md})\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="camflow", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    tables = commands.add_parser("tables", help="list every paper table and its target")
    tables.set_defaults(run=print_tables)
    show = commands.add_parser("show", help="print the tables of `targets` as built")
    show.set_defaults(run=show_tables)
    for command in (tables, show):
        command.add_argument("--configfile", action="append", default=[], metavar="FILE",
                             help="a config overlay, as for snakemake (repeatable)")
        command.add_argument("--directory", default=".",
                             help="the working directory of the runs")
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except CamflowInputError as exc:
        print(f"camflow: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
