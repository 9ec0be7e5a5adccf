"""Seed evaluation: metrics from hand-computed confusion matrices, seeds, the threshold sweep."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from camflow.cache import CamCache, CamCacheWriter
from camflow.data.base import SegmentationDataset
from camflow.evaluate import (
    ConfusionMatrix,
    cam_to_seed,
    evaluate_cams,
    evaluation_record,
    segmentation_metrics,
    write_eval,
)
from camflow.io import CamflowInputError

CLASSES = ("background", "a", "b")


class InMemoryDataset(SegmentationDataset):
    """A tiny dataset held in memory (module level, so worker processes can unpickle it)."""

    name = "memory"

    def __init__(self, images: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> None:
        super().__init__(".")
        self.images, self.masks = images, masks

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASSES

    def splits(self) -> tuple[str, ...]:
        return ("train",)

    def _split_ids(self, split: str) -> list[str]:
        return list(self.masks)

    def load_image(self, image_id: str) -> np.ndarray:
        return self.images[image_id]

    def load_mask(self, image_id: str, split: str) -> np.ndarray:
        return self.masks[image_id]

    def _split_labels(self, split: str) -> dict[str, tuple[int, ...]]:
        return {
            i: tuple(int(c) for c in np.unique(m) if 0 < c < len(CLASSES))
            for i, m in self.masks.items()
        }

    def source_files(self, split: str) -> list[Path]:
        return []


# --- metrics against hand-computed confusion matrices -------------------------------------

# conf[g, p]; rows = ground truth (background, a, b), columns = prediction
CONF_3 = np.array(
    [
        [50, 5, 5],
        [10, 20, 0],
        [0, 10, 30],
    ]
)
# TP = (50, 20, 30); FP = column sums − TP = (60−50, 35−20, 35−30) = (10, 15, 5);
# FN = row sums − TP = (60−50, 30−20, 40−30) = (10, 10, 10).


def test_metrics_three_classes() -> None:
    m = segmentation_metrics(CONF_3, CLASSES)
    iou = [50 / 70, 20 / 45, 30 / 45]
    assert [r["iou"] for r in m["per_class"]] == pytest.approx(iou)
    assert m["miou"] == pytest.approx((5 / 7 + 4 / 9 + 2 / 3) / 3)  # 0.608466
    assert m["miou"] == pytest.approx(0.6084656, abs=1e-7)
    assert [r["precision"] for r in m["per_class"]] == pytest.approx([50 / 60, 20 / 35, 30 / 35])
    assert [r["recall"] for r in m["per_class"]] == pytest.approx([50 / 60, 20 / 30, 30 / 40])
    # m_under = mean(FN/TP) over a, b = (10/20 + 10/30) / 2; m_over = (15/20 + 5/30) / 2
    assert m["m_under"] == pytest.approx(0.4166667, abs=1e-7)
    assert m["m_over"] == pytest.approx(0.4583333, abs=1e-7)
    assert m["excluded_classes"] == []
    assert [(r["tp"], r["fp"], r["fn"]) for r in m["per_class"]] == [
        (50, 10, 10),
        (20, 15, 10),
        (30, 5, 10),
    ]
    json.dumps(m)  # JSON-friendly


def test_metrics_absent_and_missed_classes() -> None:
    names = ("background", "a", "b", "c")
    conf = np.array(
        [
            [10, 2, 0, 0],
            [3, 5, 0, 0],
            [0, 4, 0, 0],  # b is in the ground truth but never predicted: TP_b = 0
            [0, 0, 0, 0],  # c is absent: union 0
        ]
    )
    m = segmentation_metrics(conf, names)
    # IoU: bg 10/15, a 5/14, b 0/4; c undefined and left out of the mean
    assert [r["iou"] for r in m["per_class"]] == pytest.approx([10 / 15, 5 / 14, 0.0, None])
    assert m["miou"] == pytest.approx((2 / 3 + 5 / 14 + 0) / 3)  # 0.341270
    assert m["per_class"][2]["precision"] is None and m["per_class"][2]["recall"] == 0.0
    # only a has TP > 0: m_under = FN_a/TP_a = 3/5, m_over = FP_a/TP_a = 6/5
    assert m["m_under"] == pytest.approx(0.6)
    assert m["m_over"] == pytest.approx(1.2)
    assert m["excluded_classes"] == ["b", "c"]


def test_metrics_no_foreground_hit() -> None:
    m = segmentation_metrics(np.array([[4, 0, 0], [2, 0, 0], [0, 0, 0]]), CLASSES)
    assert m["m_under"] is None and m["m_over"] is None
    assert m["miou"] == pytest.approx((4 / 6 + 0) / 2)


def test_confusion_ignores_255() -> None:
    gt = np.array([[0, 1, 255], [2, 255, 1]], dtype=np.uint8)
    pred = np.array([[0, 1, 2], [2, 0, 2]], dtype=np.uint8)
    conf = ConfusionMatrix(3).update(pred, gt).matrix
    expected = np.zeros((3, 3), np.int64)
    expected[0, 0] = expected[1, 1] = expected[2, 2] = expected[1, 2] = 1
    np.testing.assert_array_equal(conf, expected)
    assert conf.sum() == 4


def test_confusion_streaming_equals_one_update() -> None:
    rng = np.random.default_rng(1)
    preds = [rng.integers(0, 3, (5, 7)) for _ in range(4)]
    gts = [np.where(rng.random((5, 7)) < 0.1, 255, rng.integers(0, 3, (5, 7))) for _ in range(4)]
    streamed = ConfusionMatrix(3)
    for p, g in zip(preds[:2], gts[:2], strict=True):
        streamed.update(p, g)
    other = ConfusionMatrix(3)
    for p, g in zip(preds[2:], gts[2:], strict=True):
        other.update(p, g)
    streamed.merge(other)
    once = ConfusionMatrix(3).update(np.concatenate(preds), np.concatenate(gts))
    np.testing.assert_array_equal(streamed.matrix, once.matrix)


def test_confusion_rejects_out_of_range() -> None:
    with pytest.raises(CamflowInputError, match="ground truth"):
        ConfusionMatrix(3).update(np.zeros((2, 2)), np.full((2, 2), 7))


# --- seeds ----------------------------------------------------------------------------------


def test_cam_to_seed_hand_made() -> None:
    keys = np.array([2, 1])  # channel 1 is class 2, channel 2 is class 1
    cams = np.array(
        [
            [[0.9, 0.2], [0.5, 0.3]],  # class 2
            [[0.1, 0.6], [0.5, 0.3]],  # class 1
        ],
        dtype=np.float32,
    )
    # (1,0): a tie between the classes goes to the earlier map; (1,1): a tie with the
    # background score goes to background
    seed = cam_to_seed(keys, cams, 0.3)
    assert seed.dtype == np.uint8
    np.testing.assert_array_equal(seed, [[2, 1], [2, 0]])
    np.testing.assert_array_equal(cam_to_seed(keys, cams, 0.5), [[2, 1], [0, 0]])
    np.testing.assert_array_equal(cam_to_seed(keys, cams, 0.95), [[0, 0], [0, 0]])


def test_cam_to_seed_no_keys() -> None:
    seed = cam_to_seed(np.array([], dtype=np.int64), np.zeros((0, 3, 4), np.float32), 0.1)
    np.testing.assert_array_equal(seed, np.zeros((3, 4)))


# --- evaluate_cams over a cache -------------------------------------------------------------


def _fixture(
    tmp_path: Path, drop_from_cache: str | None = None
) -> tuple[CamCache, InMemoryDataset]:
    """Five images of different sizes; CAM values on a 1/8 grid so thresholds hit ties."""
    rng = np.random.default_rng(7)
    images, masks, cams = {}, {}, {}
    for k, (h, w) in enumerate([(12, 16), (10, 10), (9, 14), (16, 12), (8, 8)]):
        image_id = f"img{k}"
        mask = np.zeros((h, w), np.uint8)
        mask[h // 3 :, : w // 2] = 1
        mask[: h // 2, w // 2 :] = 2
        mask[rng.random((h, w)) < 0.05] = 255
        keys = [np.array([1, 2]), np.array([2]), np.array([], dtype=np.int64)][k % 3]
        maps = np.round(rng.random((len(keys), h, w)) * 8) / 8
        images[image_id] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        masks[image_id] = mask
        cams[image_id] = (keys, maps)
    with CamCacheWriter(tmp_path / "cams.h5", CLASSES, {"test": True}) as writer:
        for image_id, (keys, maps) in cams.items():
            if image_id != drop_from_cache:
                writer.add(image_id, keys, maps[:, ::4, ::4], maps)
    return CamCache(tmp_path / "cams.h5"), InMemoryDataset(images, masks)


def _single_threshold_conf(cache: CamCache, dataset: InMemoryDataset, t: float) -> np.ndarray:
    conf = ConfusionMatrix(len(CLASSES))
    for image_id in dataset.ids("train"):
        keys, cams = cache.read(image_id)
        conf.update(cam_to_seed(keys, cams, t), dataset.load_mask(image_id, "train"))
    return conf.matrix


def test_sweep_equals_separate_thresholds(tmp_path: Path) -> None:
    cache, dataset = _fixture(tmp_path)
    thresholds = [0.5, 0.25, 0.1, 0.375, 0.0, 0.9]
    result = evaluate_cams(cache, dataset, "train", thresholds, crf=None, progress=False)
    sweep = result["sweep"]
    assert sweep["thresholds"] == sorted(thresholds)
    assert result["n_images"] == 5 and result["crf"] is None and result["kind"] == "seeds"
    for t, miou in zip(sweep["thresholds"], sweep["miou"], strict=True):
        alone = evaluate_cams(cache, dataset, "train", [t], crf=None, progress=False)
        expected = segmentation_metrics(_single_threshold_conf(cache, dataset, t), CLASSES)
        assert {k: alone[k] for k in expected} == expected
        assert miou == pytest.approx(expected["miou"])
    best = int(np.argmax(sweep["miou"]))
    assert result["threshold"] == sweep["thresholds"][best]
    expected = segmentation_metrics(
        _single_threshold_conf(cache, dataset, result["threshold"]), CLASSES
    )
    assert {k: result[k] for k in expected} == expected


def test_crf_pass_parallel_equals_serial(tmp_path: Path) -> None:
    cache, dataset = _fixture(tmp_path)
    serial = evaluate_cams(cache, dataset, "train", [0.25, 0.5], crf={}, progress=False)
    assert len(cache) == 5  # the parent has the file open before the workers fork
    parallel = evaluate_cams(
        cache, dataset, "train", [0.25, 0.5], crf={"iters": 10}, workers=2, progress=False
    )
    assert serial == parallel
    crf = serial["crf"]
    assert crf["params"]["gt_prob"] == 0.7 and crf["params"]["bi_sxy"] == 50
    assert 0.0 <= crf["miou"] <= 1.0
    assert sum(r["tp"] + r["fn"] for r in crf["per_class"]) == sum(
        r["tp"] + r["fn"] for r in serial["per_class"]
    )


def test_unknown_crf_parameter(tmp_path: Path) -> None:
    cache, dataset = _fixture(tmp_path)
    with pytest.raises(CamflowInputError, match="sigma"):
        evaluate_cams(cache, dataset, "train", [0.2], crf={"sigma": 1}, progress=False)


def test_missing_id_in_cache(tmp_path: Path) -> None:
    cache, dataset = _fixture(tmp_path, drop_from_cache="img3")
    with pytest.raises(CamflowInputError) as info:
        evaluate_cams(cache, dataset, "train", [0.2], crf=None, progress=False)
    assert "'img3'" in str(info.value) and str(cache.path) in str(info.value)


def test_write_eval(tmp_path: Path) -> None:
    cache, dataset = _fixture(tmp_path)
    result = evaluate_cams(cache, dataset, "train", [0.25, 0.5], crf={}, progress=False)
    write_eval(result, tmp_path / "out" / "eval.json", tmp_path / "out" / "eval.csv", CLASSES)
    assert json.loads((tmp_path / "out" / "eval.json").read_text()) == result
    with open(tmp_path / "out" / "eval.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == [*CLASSES, "mean"]
    assert list(rows[0]) == ["class", "iou", "precision", "recall", "crf_iou"]
    assert float(rows[-1]["iou"]) == pytest.approx(result["miou"])
    assert float(rows[-1]["crf_iou"]) == pytest.approx(result["crf"]["miou"])
    assert float(rows[1]["iou"]) == pytest.approx(result["per_class"][1]["iou"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["eval.csv", "eval.json"]


def test_degenerate_ratios_and_an_edge_threshold_are_flagged(caplog) -> None:
    """Class b has 1 true positive against 500 false negatives: its FN/TP of 500 swamps
    m_under (the mean of 0.1 and 500), so the record says so; the best threshold at the
    low end of the sweep is flagged too.  Class a, hit fairly, is not."""
    conf = np.array([[1000, 5, 0],
                     [10, 100, 0],
                     [500, 0, 1]])
    metrics = segmentation_metrics(conf, CLASSES)
    assert metrics["m_under"] == pytest.approx((10 / 100 + 500 / 1) / 2)
    sweep = {"thresholds": [0.05, 0.1, 0.15]}
    with caplog.at_level("WARNING", logger="camflow.evaluate"):
        record = evaluation_record("seeds", "train", 3, metrics, {}, threshold=0.05,
                                   sweep=sweep)
    assert len(record["warnings"]) == 2
    assert "class 'b'" in record["warnings"][0] and "FN/TP 500" in record["warnings"][0]
    assert "lowest of the sweep" in record["warnings"][1]
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]
    fair = evaluation_record("seeds", "train", 3, segmentation_metrics(
        np.array([[1000, 5, 0], [10, 100, 0], [5, 0, 50]]), CLASSES), {}, threshold=0.1,
        sweep=sweep)
    assert fair["warnings"] == []
