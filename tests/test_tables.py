"""Table builders: rows in the paper's order, values taken from the right evaluation."""

from __future__ import annotations

from typing import Any

from camflow.figures import gslm_fig8_figure
from camflow.tables import build_table


def seed_eval(miou: float, crf: float | None = None) -> dict[str, Any]:
    ev: dict[str, Any] = {"best": {"miou": miou, "m_under": 1 - miou, "m_over": miou / 2},
                          "best_threshold": 0.15, "thresholds": [0.1, 0.15, 0.2],
                          "miou_curve": [miou - 0.01, miou, miou - 0.02]}
    if crf is not None:
        ev["crf"] = {"miou": crf}
    return ev


def test_gslm_table5_follows_the_paper_rows_and_check_marks() -> None:
    modules = {"gslm": {"CR": True, "SR": True, "L_cls": True},
               "no_cg": {"CR": False, "SR": True, "L_cls": True},
               "no_cls": {"CR": True, "SR": True, "L_cls": False}}
    spec = {"classifier": "c", "full": "gslm", "rows": ["no_cg", "no_cls"],
            "stages": {"gslm": 4, "no_cg": 2, "no_cls": 2}, "modules": modules}
    evals = [seed_eval(v, v + 0.05) for v in (0.40, 0.41, 0.42, 0.45, 0.50)]
    table = build_table("gslm_table5", evals, spec, "synthetic")
    assert table.columns[:5] == ["variant", "CR", "SR", "L_cls", "iter"]
    assert [row[:5] for row in table.rows] == [
        ["CAM (baseline)", "-", "-", "-", 0],
        ["no_cg", "", "x", "x", 1],
        ["no_cls", "x", "x", "", 1],
        ["gslm w/o iterations", "x", "x", "x", 1],
        ["gslm", "x", "x", "x", 3]]
    assert [round(row[5], 6) for row in table.rows] == [40, 41, 42, 45, 50]
    assert round(table.rows[-1][6], 6) == 55


def test_gslm_fig8_rows_and_figure(tmp_path) -> None:
    variants = {"thresholds": [["0.05/0.3", "gslm", 2], ["0.1/0.3", "gslm_bg0p1_fg0p3", 2]],
                "k": [["6", "gslm", 2]],
                "iterations": [["0", "gslm", 1], ["1", "gslm", 2], ["2", "gslm", 3]]}
    spec = {"classifier": "c", "base": "gslm", "sweep_stage": 2, "variants": variants}
    evals = [seed_eval(v) for v in (0.5, 0.4, 0.5, 0.3, 0.5, 0.6)]
    table = build_table("gslm_fig8", evals, spec, "synthetic")
    assert [row[:4] for row in table.rows] == [
        ["theta_bg/theta_fg", "0.05/0.3", "gslm", 2],
        ["theta_bg/theta_fg", "0.1/0.3", "gslm_bg0p1_fg0p3", 2],
        ["k", "6", "gslm", 2],
        ["iterations", "0", "gslm", 1], ["iterations", "1", "gslm", 2],
        ["iterations", "2", "gslm", 3]]
    assert [round(row[4], 6) for row in table.rows] == [50, 40, 50, 30, 50, 60]
    png = tmp_path / "fig8.png"
    gslm_fig8_figure(evals, spec, "synthetic", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
