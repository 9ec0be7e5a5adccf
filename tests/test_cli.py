"""The `camflow` command: `camflow tables` lists every configured table with its target rule,
paper and result path; `camflow show` prints the tables of `targets` as built."""

from __future__ import annotations

from pathlib import Path

import pytest

from camflow.cli import load_config, main

REPO = Path(__file__).resolve().parents[1]


def test_tables_lists_every_table_with_its_paper_and_path(capsys, tmp_path: Path) -> None:
    built = tmp_path / "results/synthetic/tables/gslm_table1.csv"
    built.parent.mkdir(parents=True)
    built.write_text("x\n")
    assert main(["tables", "--directory", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[2:] if line and not line.startswith(
        ("Build", "Then"))}
    assert set(rows) == set(load_config([])["tables"])
    assert "GSLM (Mai et al.)" in rows["gslm_table1"] and rows["gslm_table1"].endswith("yes")
    assert "results/synthetic/tables/fullcam_table5.csv" in rows["fullcam_table5"]
    assert rows["fullcam_table5"].endswith("no")


def test_overlays_change_the_paths_and_bad_files_are_named(capsys) -> None:
    assert main(["tables", "--configfile", str(REPO / "config/voc12.yaml")]) == 0
    out = capsys.readouterr().out
    assert "results/voc12/tables/gslm_table1.csv" in out
    assert f"snakemake base_pipeline --configfile {REPO / 'config/voc12.yaml'}" in out
    assert main(["tables", "--configfile", "no/such.yaml"]) == 2
    assert "no/such.yaml" in capsys.readouterr().err


def test_show_prints_the_built_targets(capsys, tmp_path: Path) -> None:
    md = tmp_path / "results/demo/tables/cam_seeds.md"
    md.parent.mkdir(parents=True)
    md.write_text("### CAM seeds\n\n| a |\n")
    assert main(["show", "--configfile", str(REPO / "config/demo.yaml"),
                 "--directory", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "### CAM seeds" in out and "base_pipeline: not built yet" in out


@pytest.mark.parametrize("argv", [[], ["tablez"]])
def test_a_wrong_command_says_so(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
