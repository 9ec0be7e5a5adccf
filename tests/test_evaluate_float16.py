"""The threshold sweep on the cache's stored float16 maps gives the float32 maps' matrices,
bit for bit: every float16 value at, below and above each threshold is tried."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_evaluate import CLASSES, InMemoryDataset

from camflow.cache import CamCache, CamCacheWriter
from camflow.evaluate import _float16_thresholds, _sweep_confusions, cam_to_seed, evaluate_cams

SWEEP = np.round(np.arange(0.05, 1.0, 0.05), 2)  # the default evaluation thresholds
EDGES = np.array([-70000.0, -0.3, 0.0, 1e-8, 2.0 ** -24, 1 / 3, 0.15, 0.5, 1.0, 1.0001,
                  65504.0, 65519.0, 65520.0, 70000.0])
THRESHOLDS = np.unique(np.concatenate([SWEEP, EDGES]))
# every finite float16 value
ALL16 = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
ALL16 = ALL16[np.isfinite(ALL16)]


def test_rounded_down_thresholds_compare_as_float32() -> None:
    t16 = _float16_thresholds(THRESHOLDS)
    assert t16.dtype == np.float16 and np.all(np.diff(t16.astype(np.float64)) >= 0)
    t32 = THRESHOLDS.astype(np.float32)
    np.testing.assert_array_equal(ALL16[:, None] > t16[None, :],
                                  ALL16.astype(np.float32)[:, None] > t32[None, :])
    # rounding to nearest is not exact (why the thresholds are rounded down)
    with np.errstate(over="ignore"):
        nearest = t32.astype(np.float16)
    assert ((ALL16[:, None] > nearest[None, :])
            != (ALL16.astype(np.float32)[:, None] > t32[None, :])).any()


def _maps_around_thresholds(rng: np.random.Generator, n_keys: int, h: int, w: int
                            ) -> np.ndarray:
    """float16 maps whose values are the float16 values at and next to every threshold (and
    random others), with ties between the maps."""
    with np.errstate(over="ignore"):
        t16 = THRESHOLDS.astype(np.float16)
        near = np.concatenate([t16, np.nextafter(t16, np.float16(np.inf)),
                               np.nextafter(t16, np.float16(-np.inf)),
                               _float16_thresholds(THRESHOLDS)])
    near = near[np.isfinite(near)]
    values = np.concatenate([near, rng.choice(ALL16[(ALL16 > -1) & (ALL16 < 2)], h * w)])
    maps = rng.choice(values, (n_keys, h, w)).astype(np.float16)
    if n_keys > 1:
        tie = rng.random((h, w)) < 0.2
        maps[1][tie] = maps[0][tie]
    return maps


@pytest.mark.parametrize("n_keys", [0, 1, 2, 3])
def test_sweep_on_float16_maps_equals_float32(n_keys: int) -> None:
    rng = np.random.default_rng(n_keys)
    h, w = 64, 50
    keys = np.sort(rng.choice([1, 2, 3, 4, 5], n_keys, replace=False))
    maps = _maps_around_thresholds(rng, n_keys, h, w)
    gt = rng.integers(0, 6, (h, w)).astype(np.uint8)
    gt[rng.random((h, w)) < 0.05] = 255
    got = _sweep_confusions(keys, maps, gt, THRESHOLDS, 6)
    want = _sweep_confusions(keys, maps.astype(np.float32), gt, THRESHOLDS, 6)
    np.testing.assert_array_equal(got, want)
    # and the float32 matrices are those of cam_to_seed at each threshold
    valid = gt != 255
    for j, t in enumerate(THRESHOLDS):
        seed = cam_to_seed(keys, maps.astype(np.float32), t)
        direct = np.zeros((6, 6), np.int64)
        np.add.at(direct, (gt[valid].astype(np.int64), seed[valid].astype(np.int64)), 1)
        np.testing.assert_array_equal(want[j], direct)


def test_evaluation_of_a_float16_cache_equals_its_float32_reading(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed evaluation reads the stored float16 maps; its record is the one it gave
    when it read float32 maps."""
    rng = np.random.default_rng(11)
    images, masks, cams = {}, {}, {}
    for k, (h, w) in enumerate([(40, 30), (33, 27), (24, 24), (30, 41)]):
        image_id = f"img{k}"
        masks[image_id] = rng.integers(0, 3, (h, w)).astype(np.uint8)
        images[image_id] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        keys = [np.array([1, 2]), np.array([2]), np.array([], np.int64), np.array([1])][k]
        maps = _maps_around_thresholds(rng, len(keys), h, w)
        cams[image_id] = (keys, np.clip(maps, -1, 2).astype(np.float32))
    with CamCacheWriter(tmp_path / "cams.h5", CLASSES, {}) as writer:
        for image_id, (keys, maps) in cams.items():
            writer.add(image_id, keys, maps[:, ::4, ::4], maps)
    dataset = InMemoryDataset(images, masks)
    thresholds = [float(t) for t in SWEEP] + [0.0, 1 / 3, 0.15, 1.0]
    dtypes = []
    iter_read = CamCache.iter_read

    def spy(self: CamCache, *args: object, dtype: object = "float32", **kw: object):
        dtypes.append(dtype)
        return iter_read(self, *args, dtype=dtype, **kw)

    monkeypatch.setattr(CamCache, "iter_read", spy)
    got = evaluate_cams(CamCache(tmp_path / "cams.h5"), dataset, "train", thresholds,
                        crf=None, progress=False)
    assert dtypes and set(dtypes) == {None}  # as stored: float16

    def as_float32(self: CamCache, *args: object, dtype: object = "float32", **kw: object):
        return iter_read(self, *args, dtype="float32", **kw)

    monkeypatch.setattr(CamCache, "iter_read", as_float32)
    want = evaluate_cams(CamCache(tmp_path / "cams.h5"), dataset, "train", thresholds,
                         crf=None, progress=False)
    assert got == want
