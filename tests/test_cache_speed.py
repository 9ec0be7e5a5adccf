"""The CAM cache's fast paths: background writer, bulk reads, and files of the earlier filter."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

import camflow.cache as cache_module
from camflow.cache import CamCache, CamCacheWriter, MissingImageError
from camflow.io import CamflowInputError

CLASSES = ["background", "cat", "dog", "bird"]


def _images(n: int) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(5)
    out = {}
    for i in range(n):
        k = i % 3  # 0, 1 and 2 classes
        keys = np.sort(rng.choice([1, 2, 3], size=k, replace=False))
        out[f"img{i}"] = (keys, rng.random((k, 4, 5), dtype=np.float32),
                          rng.random((k, 13, 17), dtype=np.float32))
    return out


def _write(path: Path, data: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    with CamCacheWriter(path, CLASSES, {}) as writer:
        for image_id, (keys, s4, full) in data.items():
            writer.add(image_id, keys, s4, full)


def test_bulk_read_equals_per_image_reads(tmp_path: Path) -> None:
    path = tmp_path / "cams.h5"
    data = _images(7)
    _write(path, data)
    with CamCache(path) as cache:
        for resolution in ("full", "stride4"):
            bulk = list(cache.iter_read(resolution=resolution))
            assert [image_id for image_id, _, _ in bulk] == list(data)
            for image_id, keys, cams in bulk:
                want_keys, want_cams = cache.read(image_id, resolution)
                assert keys.dtype == want_keys.dtype and cams.dtype == want_cams.dtype
                np.testing.assert_array_equal(keys, want_keys)
                np.testing.assert_array_equal(cams, want_cams)
        # a subset in any order comes back in file order
        got = [image_id for image_id, _, _ in cache.iter_read(["img5", "img0", "img3"])]
        assert got == ["img0", "img3", "img5"]


def test_bulk_read_names_every_missing_id(tmp_path: Path) -> None:
    path = tmp_path / "cams.h5"
    _write(path, _images(2))
    with CamCache(path) as cache, \
            pytest.raises(MissingImageError, match=rf"2 image\(s\).*{path}.*'x'.*'y'"):
        list(cache.iter_read(["img0", "x", "y"]))


def test_bulk_read_raises_a_damaged_image_at_its_place(tmp_path: Path) -> None:
    path = tmp_path / "cams.h5"
    _write(path, _images(4))
    with h5py.File(path, "r+") as f:
        del f["images"]["img2"]["full"]
    with CamCache(path) as cache:
        reader = cache.iter_read()
        assert [next(reader)[0], next(reader)[0]] == ["img0", "img1"]
        with pytest.raises(cache_module.CamflowInputError, match="'img2' is listed but unreadable"):
            next(reader)


def test_writer_copies_the_arrays(tmp_path: Path) -> None:
    """add() returns before the background thread stores the maps: a caller that refills
    its buffers for the next image at once must not change what is stored."""
    path = tmp_path / "cams.h5"
    full = np.empty((1, 6, 6), np.float32)
    s4 = np.empty((1, 2, 2), np.float32)
    for dtype in ("float16", "float32"):
        with CamCacheWriter(path, CLASSES, {}, dtype=dtype) as writer:
            for i in range(40):
                full[...] = s4[...] = i / 64
                writer.add(f"i{i}", [1], s4, full)
        with CamCache(path) as cache:
            for image_id, _, cams in cache.iter_read():
                assert (cams == int(image_id[1:]) / 64).all()


def test_background_failure_names_file_and_image(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """An error inside the writer thread surfaces in the caller, naming the file and the
    image; the temporary file is removed and an existing file is left untouched."""
    path = tmp_path / "cams.h5"
    _write(path, _images(2))
    before = path.read_bytes()
    monkeypatch.setattr(cache_module, "MAP_FILTER", {"compression": 31999})  # no such filter
    with pytest.raises(RuntimeError, match=rf"{path}: writing image 'img1' failed") as err:
        _write(path, _images(5))
    assert err.value.__cause__ is not None
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cams.h5"]


def test_background_failure_stops_the_next_add(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "MAP_FILTER", {"compression": 31999})
    cams = np.zeros((1, 3, 3), np.float32)
    added = []
    with pytest.raises(RuntimeError, match="writing image 'a' failed"):
        with CamCacheWriter(tmp_path / "c.h5", CLASSES, {}) as writer:
            writer.add("a", [1], cams, cams)
            for i in range(200):
                writer.add(f"more{i}", [1], cams, cams)
                added.append(i)
    # the queue holds WRITE_QUEUE images: once it is full, 'a' has been tried and failed
    assert len(added) <= cache_module.WRITE_QUEUE + 1
    assert list(tmp_path.iterdir()) == []


def test_file_of_the_earlier_filter_still_reads(tmp_path: Path) -> None:
    """Caches written before the Blosc filter (gzip level 4 + shuffle, same layout and
    format_version 1) read as before: the filter is recorded per dataset."""
    path = tmp_path / "old.h5"
    data = _images(3)
    with h5py.File(path, "w") as f:
        f.attrs["format_version"] = 1
        f.attrs["kind"] = "cams"
        f.attrs["class_names"] = json.dumps(CLASSES)
        f.attrs["provenance"] = json.dumps({"method": "irn"})
        images = f.create_group("images")
        for image_id, (keys, s4, full) in data.items():
            group = images.create_group(image_id)
            group.create_dataset("keys", data=keys.astype(np.int16))
            for name, arr in (("stride4", s4), ("full", full)):
                options = ({"chunks": (1, *arr.shape[1:]), "compression": "gzip",
                            "compression_opts": 4, "shuffle": True} if len(keys) else {})
                group.create_dataset(name, data=arr.astype(np.float16), **options)
        f.create_dataset("index", data=np.array(list(data), dtype=object),
                         dtype=h5py.string_dtype("utf-8"))
    with CamCache(path) as cache:
        assert cache.provenance == {"method": "irn"}
        for (image_id, keys, cams), (want_keys, _, full) in zip(cache.iter_read(),
                                                               data.values(), strict=True):
            np.testing.assert_array_equal(keys, want_keys)
            np.testing.assert_allclose(cams, full, atol=2.0 ** -12)
            np.testing.assert_array_equal(cache.read(image_id)[1], cams)


def test_keys_table_and_raw_chunk_reads(tmp_path: Path) -> None:
    """The writer adds a keys table beside the index; the reader's raw Blosc chunk decoding
    gives exactly what HDF5's filter pipeline gives, and files without the table (written
    before it) read the per-image keys."""
    path = tmp_path / "cams.h5"
    data = _images(5)
    _write(path, data)
    with h5py.File(path, "r") as f:
        assert f["index_keys"].dtype == np.int16
        offsets = f["index_keys_offsets"][()]
        np.testing.assert_array_equal(offsets, np.cumsum([0, *(len(d[0]) for d in data.values())]))
        np.testing.assert_array_equal(f["index_keys"][()], np.concatenate(
            [d[0] for d in data.values()]))
        via_hdf5 = {i: f["images"][i]["full"][()].astype(np.float32) for i in data}
    with CamCache(path) as cache:
        for image_id, (keys, _, _) in data.items():
            got_keys, cams = cache.read(image_id)
            np.testing.assert_array_equal(got_keys, keys)
            np.testing.assert_array_equal(cams, via_hdf5[image_id])
            got_keys[...] = 0  # a copy: the next read is unchanged
            np.testing.assert_array_equal(cache.read(image_id)[0], keys)
    with h5py.File(path, "r+") as f:
        del f["index_keys"], f["index_keys_offsets"]
    with CamCache(path) as cache:
        for (_, keys, _cams), (want_keys, _, _) in zip(cache.iter_read(), data.values(),
                                                      strict=True):
            np.testing.assert_array_equal(keys, want_keys)


def test_damaged_chunk_or_keys_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cams.h5"
    ramp = np.linspace(0, 1, 2 * 64 * 64, dtype=np.float32).reshape(2, 64, 64)
    maps = np.sqrt(ramp)  # compressible: Blosc keeps its chunks (filter_mask 0)
    _write(path, {"img0": (np.array([2, 3]), maps, maps), "img1": (np.array([1, 3]), maps, maps)})
    with h5py.File(path, "r") as f:
        chunk = f["images"]["img1"]["full"].id.get_chunk_info(0)
        assert chunk.filter_mask == 0
        offset = chunk.byte_offset
        want = f["images"]["img1"]["full"][()].astype(np.float32)
    with CamCache(path) as cache:  # the raw chunk decoding equals HDF5's filter pipeline
        np.testing.assert_array_equal(cache.read("img1")[1], want)
    raw = bytearray(path.read_bytes())
    raw[offset + 4:offset + 8] = (10**9).to_bytes(4, "little")  # Blosc header: nbytes
    path.write_bytes(bytes(raw))
    with CamCache(path) as cache:
        cache.read("img1", "stride4")
        with pytest.raises(CamflowInputError, match="image 'img1' is listed but unreadable"):
            cache.read("img1", "full")
    with h5py.File(path, "r+") as f:
        f["index_keys_offsets"][-1] = 99
    with pytest.raises(CamflowInputError, match="keys table does not match its index"):
        len(CamCache(path))


@pytest.mark.parametrize(("values", "finite"), [
    ([0.0, 0.5, 65504.0], True), ([-1.0, 0.5], True), ([0.5, np.nan], False),
    ([np.inf, 0.0], False), ([-np.inf, 0.5], False), ([-np.nan, 0.5], False)])
def test_all_finite(values: list[float], finite: bool) -> None:
    for dtype in (np.float16, np.float32):
        assert cache_module._all_finite(np.array(values, dtype)) is finite


def test_float32_maps_read_through_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "cams.h5"
    data = _images(3)
    with CamCacheWriter(path, CLASSES, {}, dtype="float32") as writer:
        for image_id, (keys, s4, full) in data.items():
            writer.add(image_id, keys, s4, full)
    with CamCache(path) as cache:
        for image_id, (_, s4, full) in data.items():
            np.testing.assert_array_equal(cache.read(image_id)[1], full)
            np.testing.assert_array_equal(cache.read(image_id, "stride4")[1], s4)
