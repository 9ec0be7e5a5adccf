"""P-NOC's class properties (David et al., Tables 1 and 3) on a hand-made 3-image dataset,
the tercile groups, Pearson's ρ, and the table rows built from them."""

from __future__ import annotations

import numpy as np
import pytest

from camflow.class_properties import class_groups, class_properties, pearson, tercile_groups
from camflow.tables import PnocClassTable


class ThreeImages:
    """Image a: class 1 on 4 of 16 pixels; b: classes 1 (2 px) and 2 (8 px); c: class 2 on
    all 16 pixels but 4 ignored (255)."""

    class_names = ("background", "cat", "dog", "cow")
    num_classes = 3

    def __init__(self) -> None:
        a = np.zeros((4, 4), np.uint8)
        a[:2, :2] = 1
        b = np.zeros((4, 4), np.uint8)
        b[0, :2] = 1
        b[2:, :] = 2
        c = np.full((4, 4), 2, np.uint8)
        c[0] = 255
        self.masks = {"a": a, "b": b, "c": c}

    def ids(self, split: str) -> list[str]:
        return ["a", "b", "c"]

    def image_labels(self, split: str) -> dict[str, tuple[int, ...]]:
        return {"a": (1,), "b": (1, 2), "c": (2,)}

    def load_mask(self, image_id: str, split: str) -> np.ndarray:
        return self.masks[image_id]


def test_class_properties_of_three_images() -> None:
    props = class_properties(ThreeImages(), "train", progress=False)
    assert props["cat"] == {"O": 2.0, "%S": pytest.approx((4 / 16 + 2 / 16) / 2),
                            "%C": 0.5, "L": 1.5}
    assert props["dog"] == {"O": 2.0, "%S": pytest.approx((8 / 16 + 12 / 16) / 2),
                            "%C": 0.5, "L": 1.5}
    assert props["cow"] == {"O": 0.0, "%S": None, "%C": None, "L": None}
    # background: over every image, ignored pixels count in the image's size, not its own
    assert props["background"]["%S"] == pytest.approx((12 / 16 + 6 / 16 + 0) / 3)
    assert props["background"]["O"] is None


def test_tercile_groups_and_pearson() -> None:
    groups = tercile_groups({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0, "f": 6.0},
                            ["low", "mid", "high"])
    assert groups == {"low": ["a", "b"], "mid": ["c", "d"], "high": ["e", "f"]}
    assert pearson([1, 2, 3, None], [2, 4, 6, 1]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1, 2], [1, 2]) is None            # fewer than 3 pairs
    assert pearson([1, 1, 1], [1, 2, 3]) is None      # no spread
    voc = class_groups({}, "voc12", [])
    assert voc["group"]["singleton"] == ["aeroplane", "bird", "boat", "sheep", "train"]


def seeds(ious: dict[str, float], miou: float) -> dict:
    return {"miou": miou, "per_class": [{"class": c, "iou": v} for c, v in ious.items()]}


def test_pnoc_table_rows_average_replicates_and_correlate() -> None:
    """Cells are replicate means, the overall row the mean mIoU with the runs' spread, group
    rows the mean over their classes, and ρ the correlation over the foreground classes."""
    names = ["background", "a", "b", "c", "d", "e", "f"]
    table = PnocClassTable({"strategies": {"X": "x", "Y": "y"}, "per_class": True,
                            "properties": True, "source": "cam",
                            "replicates": {"X": ["x", "x_seed1"], "Y": ["y"]}})
    size = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4, "e": 0.5, "f": 0.6}
    props = {"background": {"O": None, "%S": 0.5, "%C": None, "L": None},
             **{c: {"O": 10.0 * (i + 1), "%S": size[c], "%C": 0.1 * (6 - i), "L": 1.0 + i}
                for i, c in enumerate(names[1:])}}
    x0 = {c: 0.1 * i for i, c in enumerate(names)}          # rises with size
    x1 = {c: 0.1 * i + 0.02 for i, c in enumerate(names)}
    y = {c: 0.6 - 0.1 * i for i, c in enumerate(names)}     # falls with size
    records = {"X/r0": seeds(x0, 0.30), "X/r1": seeds(x1, 0.34), "Y/r0": seeds(y, 0.40),
               "properties": {"format": "synthetic", "classes": props}}
    columns, rows = table.rows(records)
    assert columns == ["class", "O", "%S", "%C", "L", "X", "Y"]
    by = {r[0]: r for r in rows}
    assert by["b"][5] == pytest.approx(100 * (0.2 + 0.22) / 2)
    assert by["b"][2] == pytest.approx(20.0)                       # %S in percent
    assert by["overall μ"][5:] == pytest.approx([32.0, 40.0])
    assert by["overall σ (runs)"][5] == pytest.approx(100 * np.std([0.30, 0.34], ddof=1))
    assert by["size: small"][5] == pytest.approx(100 * np.mean([0.11, 0.21]))
    assert by["ρ %S"][5:] == pytest.approx([100.0, -100.0])
    assert by["ρ %S"][2] == pytest.approx(100.0)
