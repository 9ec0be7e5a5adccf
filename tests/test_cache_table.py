"""The CAM cache's chunk table: reads without HDF5 per image, and every way it can go stale.

The writer records each map chunk's address beside the index and stamps the closed file's
size and mtime into it; readers decode the chunks at those addresses while the file is as the
writer left it, and read through HDF5 otherwise.  A table that went stale or was damaged must
give either the right maps or an error naming the file and the image, never other values.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import camflow.cache as cache_module
from camflow.cache import (
    CamCache,
    CamCacheWriter,
    LabelCache,
    LabelCacheWriter,
    SaliencyCache,
    SaliencyCacheWriter,
)
from camflow.io import CamflowInputError

CLASSES = ["background", "cat", "dog", "bird"]
Data = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]


def _images(n: int, seed: int = 3) -> Data:
    """``n`` images of 0, 1 and 2 classes; maps of two sizes, zero in their upper half and
    smooth below (CAM-like: Blosc compresses even the stride-4 maps, so it stores every chunk
    filtered)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        k = i % 3
        h, w = (48, 80) if i % 2 else (62, 44)
        keys = np.sort(rng.choice([1, 2, 3], size=k, replace=False))
        ramp = np.linspace(-1, 1, h * w, dtype=np.float32).clip(0).reshape(h, w)
        full = np.sqrt(ramp)[None] * rng.uniform(0.2, 1, (k, 1, 1)).astype(np.float32)
        out[f"img/{i}"] = (keys, full[:, ::4, ::4].copy(), full)
    return out


def _write(path: Path, data: Data, dtype: str = "float16") -> None:
    with CamCacheWriter(path, CLASSES, {}, dtype=dtype) as writer:
        for image_id, (keys, s4, full) in data.items():
            writer.add(image_id, keys, s4, full)


def _via_hdf5(path: Path, data: Data) -> dict[tuple[str, str], np.ndarray]:
    """Every map stack as HDF5's filter pipeline reads it (the reference)."""
    with h5py.File(path, "r") as f:
        return {(i, r): f["images"][cache_module._group_name(i)][r][()]
                for i in data for r in ("full", "stride4")}


def _assert_reads(cache: CamCache, data: Data, want: dict[tuple[str, str], np.ndarray]) -> None:
    for resolution in ("full", "stride4"):
        for image_id, (keys, _, _) in data.items():
            stored = want[image_id, resolution]
            got_keys, cams = cache.read(image_id, resolution)
            np.testing.assert_array_equal(got_keys, keys)
            assert cams.dtype == np.float32 and cams.shape == stored.shape
            np.testing.assert_array_equal(cams, stored.astype(np.float32))
            cams16 = cache.read(image_id, resolution, dtype="float16")[1]
            assert cams16.dtype == np.float16
            np.testing.assert_array_equal(cams16, stored.astype(np.float16))
            as_stored = cache.read(image_id, resolution, dtype=None)[1]
            assert as_stored.dtype == stored.dtype
            np.testing.assert_array_equal(as_stored, stored)
        bulk = {i: c for i, _, c in cache.iter_read(resolution=resolution, dtype=np.float16)}
        for image_id in data:
            np.testing.assert_array_equal(bulk[image_id], want[image_id, resolution])


def _keep_stamp(path: Path):
    """Context: modify ``path`` in place, then give it back its mtime (as if the modification
    had kept it) so that only the checks beyond the file stamp can notice."""
    class _Keep:
        def __enter__(self) -> None:
            self.stat = path.stat()

        def __exit__(self, *exc: object) -> None:
            os.utime(path, ns=(self.stat.st_atime_ns, self.stat.st_mtime_ns))

    return _Keep()


def test_writer_records_every_chunk_and_stamps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cams.h5"
    data = _images(7)
    _write(path, data)
    stat = path.stat()
    with h5py.File(path, "r") as f:
        table, shapes = f["index_chunks"], f["index_shapes"][()]
        assert table.attrs["dtype"] == "float16"
        assert table.attrs["file_stamp"].tolist() == [stat.st_size, stat.st_mtime_ns]
        chunks = table[()]
        assert (chunks >= 0).all()  # every map is one filtered Blosc chunk
        assert chunks.shape == (sum(len(d[0]) for d in data.values()), 2, 2)
        row = 0
        for i, (image_id, (keys, s4, full)) in enumerate(data.items()):
            assert shapes[i].tolist() == [list(full.shape[1:]), list(s4.shape[1:])]
            for r, name in enumerate(("full", "stride4")):
                dataset = f["images"][cache_module._group_name(image_id)][name].id
                want = [[c.byte_offset, c.size] for c in
                        map(dataset.get_chunk_info, range(len(keys)))]
                assert chunks[row:row + len(keys), r].tolist() == want
            row += len(keys)
    with CamCache(path) as cache:
        assert len(cache) == 7 and cache._table is not None


def test_reads_through_the_table_make_no_hdf5_call(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the index is read, a read is a pread and a Blosc decode per map: HDF5 is not
    asked for the image's datasets, and the maps equal HDF5's filter pipeline."""
    path = tmp_path / "cams.h5"
    data = _images(6)
    _write(path, data)
    want = _via_hdf5(path, data)
    with CamCache(path) as cache:
        assert len(cache) == 6 and cache._table is not None

        def no_hdf5(*args: object) -> None:
            raise AssertionError("an HDF5 dataset was opened")

        monkeypatch.setattr(h5py.h5d, "open", no_hdf5)
        _assert_reads(cache, data, want)


def test_float32_cache_has_a_table_too(tmp_path: Path) -> None:
    path = tmp_path / "cams.h5"
    data = _images(4)
    _write(path, data, dtype="float32")
    with h5py.File(path, "r") as f:
        assert f["index_chunks"].attrs["dtype"] == "float32"
    with CamCache(path) as cache:
        assert len(cache) == 4 and cache._table is not None
        for image_id, (_, s4, full) in data.items():
            np.testing.assert_array_equal(cache.read(image_id)[1], full)  # bit for bit
            np.testing.assert_array_equal(cache.read(image_id, "stride4")[1], s4)
            # float16 asked of float32 maps: rounded to nearest, as astype does
            np.testing.assert_array_equal(cache.read(image_id, dtype="float16")[1],
                                          full.astype(np.float16))
            assert cache.read(image_id, dtype=None)[1].dtype == np.float32


def test_files_without_the_table_read_through_hdf5(tmp_path: Path) -> None:
    """Files written before the table (or whose table was dropped) read as before."""
    path = tmp_path / "cams.h5"
    data = _images(5)
    _write(path, data)
    want = _via_hdf5(path, data)
    with h5py.File(path, "r+") as f:
        del f["index_chunks"], f["index_shapes"]
    with CamCache(path) as cache:
        assert len(cache) == 5 and cache._table is None
        _assert_reads(cache, data, want)


@pytest.mark.parametrize("how", ["copy", "edit in place", "rewrite, stamp forged"])
def test_a_stale_table_is_not_followed(tmp_path: Path, how: str) -> None:
    """A copy that changed the mtime, an in-place edit, a rewrite that moved every chunk
    (e.g. h5repack) with the stamp made to match: the maps come through HDF5, right."""
    path = tmp_path / "cams.h5"
    data = _images(6)
    _write(path, data)
    if how == "copy":
        target = tmp_path / "copy.h5"
        shutil.copy(path, target)  # new mtime: the table is not trusted (it would be right)
    elif how == "edit in place":
        target = path
        with h5py.File(path, "r+") as f:  # new values of one image; its old chunk remains
            full = f["images"][cache_module._group_name("img/4")]["full"]
            full[...] = full[()] / 2
            data["img/4"] = (data["img/4"][0], data["img/4"][1], data["img/4"][2] / 2)
    else:
        target = tmp_path / "rewritten.h5"
        with h5py.File(path, "r") as src, h5py.File(target, "w") as dst:
            dst.attrs.update(src.attrs)
            dst.create_group("images")
            for image_id in reversed(list(data)):  # every chunk lands elsewhere
                name = cache_module._group_name(image_id)
                src.copy(src["images"][name], dst["images"], name)
            for name in ("index", "index_keys", "index_keys_offsets", "index_chunks",
                         "index_shapes"):
                src.copy(src[name], dst, name)
        stat = target.stat()
        with _keep_stamp(target), h5py.File(target, "r+") as f:
            f["index_chunks"].attrs.modify("file_stamp", [stat.st_size, stat.st_mtime_ns])
        assert target.stat().st_size == stat.st_size
    want = _via_hdf5(target, data)
    np.testing.assert_allclose(want["img/4", "full"], data["img/4"][2], atol=2.0 ** -11)
    with CamCache(target) as cache:
        assert len(cache) == 6 and cache._table is None
        _assert_reads(cache, data, want)


def test_a_damaged_table_is_refused(tmp_path: Path) -> None:
    """A table whose checksum fails is refused as a whole, naming the file."""
    path = tmp_path / "cams.h5"
    _write(path, _images(4))
    with _keep_stamp(path), h5py.File(path, "r+") as f:
        f["index_chunks"][1, 0, 1] += 1
    with pytest.raises(CamflowInputError, match=rf"{path}: its chunk table does not match"):
        len(CamCache(path))


@pytest.mark.parametrize("damage", ["offset", "size", "past the end", "blosc header"])
def test_a_wrong_address_or_chunk_is_an_error_naming_the_image(tmp_path: Path,
                                                                damage: str) -> None:
    """Past the stamp and the checksum (a table forged to match), each chunk's Blosc header
    is checked against the map before decoding: the read fails naming file and image."""
    path = tmp_path / "cams.h5"
    data = _images(6)
    _write(path, data)
    with h5py.File(path, "r") as f:
        chunks, shapes = f["index_chunks"][()], f["index_shapes"][()]
    row = 3  # img/4's map (rows: img/1 → 0, img/2 → 1, 2, img/4 → 3, img/5 → 4, 5)
    offset = chunks[row, 0, 0]
    with _keep_stamp(path):
        if damage != "blosc header":
            if damage == "past the end":
                chunks[row, 0, 0] = path.stat().st_size - 10
            else:
                chunks[row, 0, 0 if damage == "offset" else 1] += 8
            with h5py.File(path, "r+") as f:
                f["index_chunks"][...] = chunks
                f["index_chunks"].attrs["crc32"] = cache_module._table_crc(chunks, shapes)
        else:
            with open(path, "r+b") as f:
                f.seek(int(offset) + 4)
                f.write((10**6).to_bytes(4, "little"))  # nbytes
    with CamCache(path) as cache:
        assert len(cache) == 6 and cache._table is not None
        cache.read("img/4", "stride4")
        cache.read("img/3")
        with pytest.raises(CamflowInputError,
                           match=rf"{path}: image 'img/4' is listed but unreadable"):
            cache.read("img/4")


def test_nan_through_the_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cams.h5"
    data = _images(3)
    _, s4, full = data["img/2"]
    full[1, 3, 3] = np.inf
    with CamCacheWriter(path, CLASSES, {}) as writer:  # a foreign writer: no validation
        for image_id, (keys, s, f) in data.items():
            writer._submit(image_id, keys, {
                name: (arr.astype(np.float16), {"chunks": (1, *arr.shape[1:]),
                                                **cache_module.MAP_FILTER} if len(keys) else {})
                for name, arr in (("stride4", s), ("full", f))})
    with CamCache(path) as cache:
        assert len(cache) == 3 and cache._table is not None
        for dtype in ("float32", "float16"):
            cache.read("img/2", "stride4", dtype=dtype)
            with pytest.raises(CamflowInputError, match="'img/2' has NaN or infinite values"):
                cache.read("img/2", dtype=dtype)


def test_dtype_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "cams.h5"
    _write(path, _images(2))
    with CamCache(path) as cache:
        for bad in ("float64", "int8", "half-ish"):
            with pytest.raises(CamflowInputError, match="read as one of"):
                cache.read("img/1", dtype=bad)  # type: ignore[arg-type]
            with pytest.raises(CamflowInputError, match="read as one of"):
                next(cache.iter_read(dtype=bad))  # type: ignore[arg-type]


def _child(cache: CamCache, queue: multiprocessing.Queue) -> None:
    cams = cache.read("img/2", dtype="float16")[1]
    queue.put((cache._table is not None, cams.tolist()))


def test_forked_reader_reads_the_index_of_its_own_handle(tmp_path: Path) -> None:
    """A child forked after the parent read the index reopens the file; if the path now holds
    another file (a cache rebuilt meanwhile), it reads that file's index and table."""
    path = tmp_path / "cams.h5"
    _write(path, _images(3, seed=1))
    cache = CamCache(path)
    before = cache.read("img/2", dtype="float16")[1]
    _write(path, _images(3, seed=2))  # replaced by rename: the parent keeps the old file
    np.testing.assert_array_equal(cache.read("img/2", dtype="float16")[1], before)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(cache, queue))
    child.start()
    has_table, got = queue.get(timeout=60)
    child.join()
    assert child.exitcode == 0 and has_table
    with CamCache(path) as fresh:
        np.testing.assert_array_equal(np.array(got, np.float16),
                                      fresh.read("img/2", dtype="float16")[1])
    cache.close()


def test_label_and_saliency_caches(tmp_path: Path) -> None:
    """The label cache keeps no table (its score maps are read through HDF5); the saliency
    cache, a CAM cache, has one."""
    labels = np.zeros((8, 9), np.uint8)
    scores = np.random.default_rng(0).random((2, 8, 9), dtype=np.float32)
    with LabelCacheWriter(tmp_path / "labels.h5", CLASSES, {}) as writer:
        writer.add("a", np.array([1]), labels, scores)
    with LabelCache(tmp_path / "labels.h5") as cache:
        assert len(cache) == 1 and cache._table is None
        np.testing.assert_allclose(cache.read_scores("a"), scores, atol=2.0 ** -11)
    saliency = np.linspace(0, 1, 72, dtype=np.float32).reshape(8, 9)
    with SaliencyCacheWriter(tmp_path / "sal.h5", {}) as writer:
        writer.add("a", saliency)
    with SaliencyCache(tmp_path / "sal.h5") as cache:
        assert len(cache) == 1 and cache._table is not None
        np.testing.assert_allclose(cache.saliency("a"), saliency, atol=2.0 ** -11)


def test_maps_blosc_left_unfiltered_read_through_hdf5(tmp_path: Path) -> None:
    """Blosc gives up on maps too small to compress (HDF5 then stores the chunk unfiltered):
    the table marks them (-1) and such an image is read through HDF5, the others not."""
    path = tmp_path / "cams.h5"
    data = _images(3)
    noise = np.random.default_rng(0).random((1, 3, 5), dtype=np.float32)
    data["tiny"] = (np.array([2]), noise[:, :1, :2], noise)
    _write(path, data)
    with h5py.File(path, "r") as f:
        chunks = f["index_chunks"][()]
    assert (chunks[-1] == -1).all() and (chunks[:-1] >= 0).all()
    with CamCache(path) as cache:
        assert len(cache) == 4 and cache._table is not None
        _assert_reads(cache, data, _via_hdf5(path, data))
