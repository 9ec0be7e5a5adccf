"""The HDF5 CAM cache: round trip, validation, atomic writes, per-process reopening."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest

from camflow.cache import MAP_FILTER, CamCache, CamCacheWriter, MissingImageError
from camflow.io import CamflowInputError

CLASSES = ["background", "cat", "dog", "bird"]


def _cams(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    return rng.random((n, h, w), dtype=np.float32)


def _write_two(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    data = {
        "2007_000032": (np.array([3, 1]), _cams(rng, 2, 3, 4), _cams(rng, 2, 11, 13)),
        "train/img 1.jpg": (np.array([], dtype=np.int64), _cams(rng, 0, 2, 2), _cams(rng, 0, 7, 5)),
    }
    with CamCacheWriter(path, CLASSES, {"method": "irn", "seed": 3}) as writer:
        for image_id, (keys, s4, full) in data.items():
            writer.add(image_id, keys, s4, full)
    return data


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "cams.h5"
    data = _write_two(path)
    with CamCache(path) as cache:
        assert cache.ids == list(data)
        assert len(cache) == 2
        assert "2007_000032" in cache and "nope" not in cache
        assert cache.class_names == CLASSES
        assert cache.provenance == {"method": "irn", "seed": 3}
        for image_id, (keys, s4, full) in data.items():
            for resolution, expected in (("stride4", s4), ("full", full)):
                got_keys, cams = cache.read(image_id, resolution)
                assert got_keys.dtype == np.int64 and cams.dtype == np.float32
                assert got_keys.tolist() == keys.tolist()  # order kept: [3, 1]
                assert cams.shape == expected.shape
                np.testing.assert_allclose(cams, expected, atol=1e-3)


def test_precision_float16_error_and_float32_bit_exact(tmp_path: Path) -> None:
    """float16 keeps maps in [0, 1] within 2⁻¹² (docs/fidelity.md); float32 is exact."""
    cams = np.random.default_rng(1).random((2, 64, 64), dtype=np.float32)
    for dtype in ("float16", "float32"):
        path = tmp_path / f"{dtype}.h5"
        with CamCacheWriter(path, CLASSES, {}, dtype=dtype) as writer:
            writer.add("a", np.array([1, 2]), cams[:, ::4, ::4], cams)
        with CamCache(path) as cache:
            _, got = cache.read("a")
        error = np.abs(got - cams).max()
        if dtype == "float32":
            assert error == 0
        else:
            assert 1e-4 < error <= 2.0 ** -12
    with pytest.raises(CamflowInputError, match="float16 or float32"):
        CamCacheWriter(tmp_path / "x.h5", CLASSES, {}, dtype="float64")


def test_layout(tmp_path: Path) -> None:
    path = tmp_path / "cams.h5"
    _write_two(path)
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 1
        assert [s.decode() for s in f["index"][()]] == ["2007_000032", "train/img 1.jpg"]
        group = f["images"]["2007_000032"]
        assert group["keys"].dtype == np.int16
        full = group["full"]
        assert full.dtype == np.float16
        assert full.chunks == (1, 11, 13)
        plist = full.id.get_create_plist()  # Blosc LZ4 + byte shuffle (camflow/cache.py)
        assert plist.get_nfilters() == 1
        filter_id, _, options, _ = plist.get_filter(0)
        assert filter_id == MAP_FILTER["compression"] == hdf5plugin.BLOSC_ID
        assert options[4:] == MAP_FILTER["compression_opts"][4:]  # clevel, shuffle, lz4
        assert f["images"]["train%2Fimg%201.jpg"]["full"].shape == (0, 7, 5)


def test_duplicate_id(tmp_path: Path) -> None:
    cams = np.zeros((1, 2, 2), np.float32)
    with pytest.raises(CamflowInputError, match="'a' was already added"):
        with CamCacheWriter(tmp_path / "c.h5", CLASSES, {}) as writer:
            writer.add("a", [1], cams, cams)
            writer.add("a", [2], cams, cams)
    assert not (tmp_path / "c.h5").exists()


@pytest.mark.parametrize(
    ("keys", "s4", "full", "message"),
    [
        ([1, 2], (2, 2, 2), (1, 4, 4), "full has shape"),
        ([1], (2, 2), (1, 4, 4), "stride4 has shape"),
        ([], (1, 2, 2), (0, 4, 4), "stride4 has shape"),
        ([4], (1, 2, 2), (1, 4, 4), "outside the foreground classes"),
        ([1, 1], (2, 2, 2), (2, 4, 4), "duplicates"),
    ],
)
def test_bad_shapes_name_the_id(
    tmp_path: Path, keys: list[int], s4: tuple[int, ...], full: tuple[int, ...], message: str
) -> None:
    with CamCacheWriter(tmp_path / "c.h5", CLASSES, {}) as writer:
        with pytest.raises(CamflowInputError, match=f"'img7'.*{message}"):
            writer.add("img7", keys, np.zeros(s4, np.float32), np.zeros(full, np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rejected(tmp_path: Path, dtype: type, bad: float) -> None:
    """float16 maps (make_cams hands them over in the cache's precision) are checked on
    their bits (_all_finite), float32 ones on their range: both refuse NaN and ±inf."""
    full = np.zeros((1, 3, 3), dtype)
    full[0, 1, 1] = bad
    with CamCacheWriter(tmp_path / "c.h5", CLASSES, {}) as writer:
        with pytest.raises(CamflowInputError, match="'img9'.*NaN"):
            writer.add("img9", [2], np.zeros((1, 2, 2), dtype), full)


def test_non_finite_maps_are_refused_on_read(tmp_path: Path) -> None:
    """A foreign writer (or damage) can put NaN in a cache; reading names the image."""
    path = tmp_path / "cams.h5"
    _write_two(path)
    with h5py.File(path, "r+") as f:
        full = f["images"]["2007_000032"]["full"]
        values = full[()]
        values[0, :5] = np.nan
        full[...] = values
    with CamCache(path) as cache:
        cache.read("2007_000032", "stride4")                     # the other maps are fine
        with pytest.raises(CamflowInputError,
                           match=r"image '2007_000032' has NaN or infinite values in its full"):
            cache.read("2007_000032", "full")


def test_failed_write_keeps_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "cams.h5"
    _write_two(path)
    before = path.read_bytes()
    cams = np.zeros((1, 2, 2), np.float32)
    with pytest.raises(RuntimeError, match="boom"):
        with CamCacheWriter(path, CLASSES, {"run": 2}) as writer:
            writer.add("other", [1], cams, cams)
            raise RuntimeError("boom")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cams.h5"]
    assert CamCache(path).provenance == {"method": "irn", "seed": 3}


def test_missing_id_names_id_and_file(tmp_path: Path) -> None:
    path = tmp_path / "cams.h5"
    _write_two(path)
    cache = CamCache(path)
    with pytest.raises(MissingImageError, match=f"'ghost'.*{path}") as info:
        cache.read("ghost")
    assert isinstance(info.value, KeyError)
    with pytest.raises(CamflowInputError, match="resolution"):
        cache.read("2007_000032", "stride8")  # type: ignore[arg-type]


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CamflowInputError, match="missing.h5 does not exist"):
        len(CamCache(tmp_path / "missing.h5"))
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(CamflowInputError, match="corrupt.h5 is not a readable HDF5") as err:
        len(CamCache(corrupt))
    # the message says how to recover, naming the file
    assert f"delete it (or run `snakemake --force {corrupt}`)" in str(err.value)
    assert "snakemake --unlock" in str(err.value)
    incomplete = tmp_path / "incomplete.h5"
    with h5py.File(incomplete, "w") as f:
        f.attrs["format_version"] = 1
        f.create_group("images")
    with pytest.raises(CamflowInputError, match=r"incomplete.h5 is incomplete.*--force"):
        len(CamCache(incomplete))


def _child_read(cache: CamCache, queue: multiprocessing.Queue) -> None:
    keys, cams = cache.read("2007_000032", "stride4")
    queue.put((keys.tolist(), float(cams.sum())))


def test_read_in_forked_child_after_parent(tmp_path: Path) -> None:
    path = tmp_path / "cams.h5"
    _write_two(path)
    cache = CamCache(path)
    keys, cams = cache.read("2007_000032", "stride4")  # parent opens the file first
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_read, args=(cache, queue))
    child.start()
    got = queue.get(timeout=20)
    child.join(timeout=20)
    assert child.exitcode == 0
    assert got == (keys.tolist(), pytest.approx(float(cams.sum())))
    # the parent's handle still works after the child is gone
    assert cache.read("2007_000032", "stride4")[0].tolist() == [3, 1]


def test_pickles_as_path(tmp_path: Path) -> None:
    path = tmp_path / "cams.h5"
    _write_two(path)
    cache = CamCache(path)
    assert len(cache) == 2
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.path == path and clone.ids == cache.ids


def _creation(dataset: h5py.Dataset) -> tuple:
    plist = dataset.id.get_create_plist()
    filters = [plist.get_filter(i) for i in range(plist.get_nfilters())]
    chunk = plist.get_chunk() if plist.get_layout() == h5py.h5d.CHUNKED else None
    return (plist.get_layout(), chunk, filters, plist.get_fill_time(), plist.get_alloc_time(),
            plist.fill_value_defined(), plist.get_obj_track_times())


def test_datasets_after_the_first_of_their_kind_have_h5pys_creation_properties(
        tmp_path: Path) -> None:
    """The writer creates a map or keys dataset like one already made by h5py's
    create_dataset through HDF5's own call with that one's properties (``_dataset``): each
    has exactly the properties create_dataset would have given it, sizes and key counts
    varying, and reads back its values."""
    rng = np.random.default_rng(2)
    images = {f"i{j}": (np.arange(1, 1 + n), _cams(rng, n, h // 4, w // 4), _cams(rng, n, h, w))
              for j, (n, h, w) in enumerate([(2, 16, 20), (1, 16, 20), (3, 16, 20), (0, 16, 20),
                                             (2, 24, 8), (1, 24, 8)])}
    path = tmp_path / "cams.h5"
    with CamCacheWriter(path, CLASSES, {}) as writer:
        for image_id, (keys, s4, full) in images.items():
            writer.add(image_id, keys, s4, full)
    arrays = {(image_id, name): arr for image_id, (keys, s4, full) in images.items()
              for name, arr in (("keys", keys.astype(np.int16)), ("stride4", s4),
                                ("full", full))}
    with h5py.File(tmp_path / "ref.h5", "w") as ref:
        for (image_id, name), arr in arrays.items():
            options = ({"chunks": (1, *arr.shape[1:]), **MAP_FILTER}
                       if name != "keys" and arr.shape[0] else {})
            ref.create_dataset(f"{image_id}/{name}", arr.shape,
                               np.int16 if name == "keys" else np.float16, **options)
    # compared as stored: a live dataset's list differs from the one read back (track times)
    with h5py.File(path, "r") as f, h5py.File(tmp_path / "ref.h5", "r") as ref:
        for (image_id, name), arr in arrays.items():
            dataset = f["images"][image_id][name]
            assert _creation(dataset) == _creation(ref[image_id][name]), (image_id, name)
            np.testing.assert_allclose(dataset[()], arr, atol=1e-3)
