"""Benchmark the HDF5 CAM cache (``camflow/cache.py``) against per-image float32 ``.npy`` files.

The ``.npy`` store is the common practice: IRN saves one ``{"keys", "cam", "high_res"}`` dict
per image with ``np.save`` (float32; ``cam`` at stride 4, ``high_res`` at full resolution).
Both stores hold the same synthetic CAM-like maps at VOC size (500×375: 1–3 classes per image,
smooth blobs on a stride-16 grid with noise, ReLU, bilinearly upsampled and max-normalised to
[0, 1] — what a classifier's CAMs look like; fixed seed), so the benchmark needs no data set
or trained network and runs anywhere.  Measured:

* ``bytes_per_image`` of both stores;
* ``read``: ms per image for per-image reads (``CamCache.read`` / ``np.load``) and bulk
  reads (``CamCache.iter_read``), each handing back float32 maps (as ``np.load`` of the
  float32 ``.npy`` files does) and the stored float16 maps (``dtype="float16"``); the same
  file read without its chunk table (HDF5 finds each image's chunks: files written before
  the table, or copied with a new mtime) and through HDF5's filter pipeline (camflow's reader
  before it decoded the raw Blosc chunks itself); the previous cache (gzip 4 + shuffle
  through h5py's high-level API, as camflow read it before); and reads while a consumer
  scores every image (the evaluation's threshold sweep,
  ``camflow.evaluate._sweep_confusions``);
* ``read_cold``: the per-image and bulk reads and ``np.load`` with every store read from the
  disk (below);
* ``write``: ms per image of the caller for ``np.save`` and for the cache writer (filters
  on its background thread) against the same filter, and the previous gzip, on the caller's
  thread — with no other work, and behind a simulated GPU step per image (``time.sleep``,
  which releases the GIL as CUDA work does);
* ``filters``: the filter and chunk choices behind ``camflow.cache.MAP_FILTER`` (bytes,
  per-image read ms, write ms on the caller's thread).

Every timing alternates the implementations after a warm-up (``harness.alternate``); medians
and spreads (max − min) of the runs.  Page cache: warm — every store is read right after it
is written, and once more untimed, before it is timed; no store is read from disk — except
in ``read_cold``, where every run reads its store from the disk (``harness.Cold``: the files
dropped from the page cache before each run), as a job does on a cluster node or after
other jobs have filled the memory.

    .venv/bin/python benchmarks/cam_cache.py --images 300
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np
from harness import Cold, alternate, evict_page_cache, resident_fraction, write_result

from camflow.cache import MAP_FILTER, CamCache, CamCacheWriter, _cast, _value_range
from camflow.evaluate import _sweep_confusions

H, W = 375, 500
CLASSES = ["background", *(f"class{i}" for i in range(1, 21))]
THRESHOLDS = np.round(np.arange(0.05, 1.0, 0.05), 2)  # the default evaluation sweep
Maps = list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]  # (id, keys, stride4, full)

_B, _B2 = hdf5plugin.Blosc, hdf5plugin.Blosc2
GZIP = {"compression": "gzip", "compression_opts": 4, "shuffle": True}  # camflow before
FILTERS: dict[str, dict[str, Any]] = {
    "none (contiguous)": {},
    "none (chunked)": {"chunks": True},
    **{f"gzip {lvl} + shuffle": {"compression": "gzip", "compression_opts": lvl,
                                 "shuffle": True} for lvl in range(1, 10)},
    "gzip 4": {"compression": "gzip", "compression_opts": 4},
    "lzf": {"compression": "lzf"},
    "lzf + shuffle": {"compression": "lzf", "shuffle": True},
    **{f"blosc lz4 {lvl} + shuffle": dict(_B("lz4", lvl, _B.SHUFFLE)) for lvl in (1, 5, 9)},
    "blosc lz4 9": dict(_B("lz4", 9, _B.NOSHUFFLE)),
    "blosc lz4 9 + bitshuffle": dict(_B("lz4", 9, _B.BITSHUFFLE)),
    "blosc lz4hc 5 + shuffle": dict(_B("lz4hc", 5, _B.SHUFFLE)),
    "blosc blosclz 5 + shuffle": dict(_B("blosclz", 5, _B.SHUFFLE)),
    "blosc zstd 1 + shuffle": dict(_B("zstd", 1, _B.SHUFFLE)),
    "blosc zstd 5 + shuffle": dict(_B("zstd", 5, _B.SHUFFLE)),
    "blosc zstd 5 + bitshuffle": dict(_B("zstd", 5, _B.BITSHUFFLE)),
    "blosc2 lz4 9 + shuffle": dict(_B2("lz4", 9, _B2.SHUFFLE)),
    "blosc2 lz4 9 + bitshuffle": dict(_B2("lz4", 9, _B2.BITSHUFFLE)),
    "blosc2 zstd 1 + shuffle": dict(_B2("zstd", 1, _B2.SHUFFLE)),
    "zstd 1": dict(hdf5plugin.Zstd(1)),
    "zstd 1 + shuffle": {**hdf5plugin.Zstd(1), "shuffle": True},
    "zstd 3 + shuffle": {**hdf5plugin.Zstd(3), "shuffle": True},
    "lz4": dict(hdf5plugin.LZ4()),
    "lz4 + shuffle": {**hdf5plugin.LZ4(), "shuffle": True},
    "bitshuffle + lz4": dict(hdf5plugin.Bitshuffle(cname="lz4")),
    "bitshuffle + zstd": dict(hdf5plugin.Bitshuffle(cname="zstd")),
}
# chunk layouts tried for the filters that matter: one chunk per class map (camflow's), blocks
# of 64 rows of a map, one chunk per image and resolution
CHUNKINGS = {"map": lambda s: (1, *s[1:]), "64 rows": lambda s: (1, min(64, s[1]), s[2]),
             "image": lambda s: s}
CHUNK_FILTERS = ("none (chunked)", "gzip 1 + shuffle", "lzf + shuffle", "blosc lz4 9 + shuffle",
                 "blosc zstd 1 + shuffle", "blosc2 lz4 9 + shuffle", "lz4 + shuffle")


def _interpolation(n_out: int, n_in: int) -> np.ndarray:
    """Bilinear upsampling weights (half-pixel centres, as ``align_corners=False``)."""
    x = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    weights = np.zeros((n_out, n_in))
    weights[np.arange(n_out), lo] += 1 - (x - lo)
    weights[np.arange(n_out), hi] += x - lo
    return weights


def synthetic_cams(n: int, seed: int = 0) -> Maps:
    """``n`` images of CAM-like maps (module doc), float32, stride 4 and full resolution."""
    rng = np.random.default_rng(seed)
    gh, gw = -(-H // 16), -(-W // 16)
    h4, w4 = -(-H // 4), -(-W // 4)
    up_full = (_interpolation(H, gh), _interpolation(W, gw))
    up_s4 = (_interpolation(h4, gh), _interpolation(w4, gw))
    yy, xx = np.mgrid[0:gh, 0:gw]
    out = []
    for i in range(n):
        k = int(rng.choice([1, 2, 2, 3]))
        keys = np.sort(rng.choice(np.arange(1, 21), size=k, replace=False))
        full = np.empty((k, H, W), np.float32)
        s4 = np.empty((k, h4, w4), np.float32)
        for c in range(k):
            grid = np.zeros((gh, gw))
            for _ in range(rng.integers(1, 4)):
                cy, cx = rng.uniform(0, gh), rng.uniform(0, gw)
                sy, sx = rng.uniform(2, 7, size=2)
                grid += rng.uniform(0.5, 1) * np.exp(-((yy - cy) ** 2 / (2 * sy**2)
                                                       + (xx - cx) ** 2 / (2 * sx**2)))
            grid += 0.08 * rng.standard_normal(grid.shape)
            grid = np.maximum(grid - 0.15 * grid.max(), 0)
            peak = max(float((up_full[0] @ grid @ up_full[1].T).max()), 1e-5)
            full[c] = up_full[0] @ grid @ up_full[1].T / peak
            s4[c] = np.clip(up_s4[0] @ grid @ up_s4[1].T / peak, 0, 1)
        out.append((f"{i:06d}", keys, s4, full))
    return out


def write_npy(folder: Path, maps: Maps) -> None:
    folder.mkdir(exist_ok=True)
    for image_id, keys, s4, full in maps:
        np.save(folder / f"{image_id}.npy", {"keys": keys, "cam": s4, "high_res": full})


def write_h5(path: Path, maps: Maps, options: dict[str, Any],
             chunking: Callable[[tuple[int, ...]], tuple[int, ...]] = CHUNKINGS["map"]) -> None:
    """A cache file of camflow's layout with ``options`` for every map, written on the
    caller's thread through h5py (the synchronous baseline and the filter table)."""
    with h5py.File(path, "w") as h5:
        h5.attrs.update({"format_version": 1, "kind": "cams", "provenance": "{}",
                         "class_names": json.dumps(CLASSES)})
        images = h5.create_group("images")
        for image_id, keys, s4, full in maps:
            group = images.create_group(image_id)
            group.create_dataset("keys", data=keys.astype(np.int16))
            for name, arr in (("stride4", s4), ("full", full)):
                extra = ({k: v for k, v in options.items() if k != "chunks"}
                         | {"chunks": chunking(arr.shape)} if options else {})
                group.create_dataset(name, data=arr.astype(np.float16), **extra)
        h5.create_dataset("index", data=np.array([m[0] for m in maps], dtype=object),
                          dtype=h5py.string_dtype("utf-8"))


def write_cache(path: Path, maps: Maps, gpu_s: float = 0.0) -> None:
    """camflow's writer, each image after a simulated GPU step of ``gpu_s`` seconds."""
    with CamCacheWriter(path, CLASSES, {}) as writer:
        for image_id, keys, s4, full in maps:
            time.sleep(gpu_s)
            writer.add(image_id, keys, s4, full)


def read_per_image(path: Path, consume: Callable[..., object] | None = None,
                   dtype: str = "float32", table: bool = True) -> None:
    """``CamCache.read`` of every image; ``table=False``: as for a file without the chunk
    table (HDF5 finds each image's chunks, which are then decoded alike)."""
    with CamCache(path) as cache:
        ids = cache.ids
        if not table:
            cache._table = None
        for image_id in ids:
            keys, cams = cache.read(image_id, "full", dtype=dtype)
            if consume:
                consume(keys, cams)


def read_bulk(path: Path, consume: Callable[..., object] | None = None,
              dtype: str = "float32") -> None:
    with CamCache(path) as cache:
        for _, keys, cams in cache.iter_read(resolution="full", dtype=dtype):
            if consume:
                consume(keys, cams)


def read_filter_pipeline(path: Path, consume: Callable[..., object] | None = None) -> None:
    """camflow's reader before the raw chunk decoding (4c82f7c): keys and maps through HDF5's
    low-level API and its Blosc filter, torch's widening, a min/max finiteness check."""
    def array(group: Any, name: bytes) -> np.ndarray:
        dataset = h5py.h5d.open(group, name)
        out = np.empty(dataset.shape, dataset.dtype)
        dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
        return out

    with h5py.File(path, "r") as h5:
        images = h5["images"].id
        for image_id in h5["index"].asstr()[()]:
            keys = array(images, f"{image_id}/keys".encode()).astype(np.int64)
            cams = _cast(array(images, f"{image_id}/full".encode()), np.dtype(np.float32))
            _value_range(cams)
            if consume:
                consume(keys, cams)


def read_before(path: Path) -> None:
    """How camflow read a cache before (h5py's high-level API, numpy's float16 astype)."""
    with h5py.File(path, "r") as h5:
        for image_id in h5["index"].asstr()[()]:
            group = h5["images"][image_id]
            group["keys"][()].astype(np.int64)
            cams = group["full"][()].astype(np.float32)
            np.isfinite(cams).all()


def read_npy(folder: Path, ids: list[str], consume: Callable[..., object] | None = None) -> None:
    for image_id in ids:
        data = np.load(folder / f"{image_id}.npy", allow_pickle=True).item()
        if consume:
            consume(data["keys"], data["high_res"])


def _ms(timing: Any, n: int) -> dict[str, float]:
    return {"median_ms": 1e3 * timing.median / n, "spread_ms": 1e3 * timing.spread / n}


def filter_table(tmp: Path, maps: Maps, repeats: int) -> list[dict[str, Any]]:
    """Bytes, per-image read ms and write ms of every filter × chunking setting (reads through
    ``CamCache.read``: Blosc maps chunked per map decoded from their raw chunks, any other
    setting through HDF5's filter pipeline)."""
    settings = [(name, "map") for name in FILTERS] + [
        (name, chunking) for name in CHUNK_FILTERS for chunking in CHUNKINGS if chunking != "map"]
    rows, cases = [], {}
    for i, (name, chunking) in enumerate(settings):
        path = tmp / f"filter{i}.h5"
        start = time.perf_counter()
        write_h5(path, maps, FILTERS[name], CHUNKINGS[chunking])
        write_ms = 1e3 * (time.perf_counter() - start) / len(maps)
        rows.append({"filter": name, "chunks": chunking if FILTERS[name] else "contiguous",
                     "bytes_per_image": path.stat().st_size / len(maps),
                     "write_ms_caller_thread": write_ms})
        cases[f"{name} | {chunking}"] = lambda p=path: read_per_image(p)
    timings = alternate(cases, repeats=repeats)
    for row, timing in zip(rows, timings.values(), strict=True):
        row["read_ms"] = _ms(timing, len(maps))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300, help="images of the comparison")
    parser.add_argument("--table-images", type=int, default=100,
                        help="images per filter setting of the filter table (0: no table)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gpu-ms", type=float, default=10.0,
                        help="simulated GPU time per image for the write timing")
    args = parser.parse_args(argv)
    maps = synthetic_cams(args.images)
    n = len(maps)
    ids = [m[0] for m in maps]
    gt = np.random.default_rng(1).integers(0, len(CLASSES), (H, W)).astype(np.uint8)

    def sweep(keys: np.ndarray, cams: np.ndarray) -> None:
        _sweep_confusions(keys, cams, gt, THRESHOLDS, len(CLASSES))

    result: dict[str, Any] = {
        "images": n, "size": [H, W], "classes_per_image": float(np.mean([len(m[1]) for m in maps])),
        "repeats": args.repeats, "stored_dtype": "float16 (npy: float32)",
        "returned_dtype": "float32 (as np.load of IRN's float32 npy files) unless a row says "
                          "float16 (the stored maps, not widened)",
        "cache_reader": "chunk table read with the index: per map one pread and python-blosc's "
                        "decoder, no HDF5 call per image",
        "page_cache": "warm: every store read right after it is written and once untimed "
                      "before timing",
        "cache_filter": {"filter": "Blosc (hdf5plugin) lz4, clevel 9, byte shuffle",
                         "chunks": "one per class map", "h5py_options": repr(MAP_FILTER)}}
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        npy, cache, before = tmp / "npy", tmp / "cams.h5", tmp / "before.h5"
        write_npy(npy, maps)
        write_cache(cache, maps)
        write_h5(before, maps, GZIP)
        npy_bytes = sum((npy / f"{i}.npy").stat().st_size for i in ids) / n
        result["bytes_per_image"] = {"npy": npy_bytes, "cache": cache.stat().st_size / n,
                                     "before (gzip 4 + shuffle)": before.stat().st_size / n}
        result["bytes_npy_over_cache"] = npy_bytes / result["bytes_per_image"]["cache"]

        reads = alternate({
            "npy (np.load)": lambda: read_npy(npy, ids),
            "cache per-image float32 (read)": lambda: read_per_image(cache),
            "cache per-image float16 (read, dtype='float16')":
                lambda: read_per_image(cache, dtype="float16"),
            "cache bulk float32 (iter_read)": lambda: read_bulk(cache),
            "cache bulk float16 (iter_read, dtype='float16')":
                lambda: read_bulk(cache, dtype="float16"),
            "cache float32, no chunk table (HDF5 finds the chunks; reader of af4c0e6)":
                lambda: read_per_image(cache, table=False),
            "cache float32, HDF5 filter pipeline (reader of 4c82f7c)":
                lambda: read_filter_pipeline(cache),
            "before: gzip file, this reader": lambda: read_per_image(before),
            "before: gzip file, previous reader": lambda: read_before(before),
        }, repeats=args.repeats)
        result["read_ms_per_image"] = {name: _ms(t, n) for name, t in reads.items()}
        npy_files = [npy / f"{i}.npy" for i in ids]
        evict_page_cache([cache, *npy_files])
        result["page_cache_cold"] = {
            "how": "each store's files dropped from the page cache before every run "
                   "(fsync + posix_fadvise DONTNEED, untimed): read from the disk",
            "resident_after_eviction": resident_fraction([cache, *npy_files])}
        cold = alternate({
            "npy (np.load)": Cold(lambda: read_npy(npy, ids), npy_files),
            "cache per-image float32 (read)": Cold(lambda: read_per_image(cache), [cache]),
            "cache per-image float16 (read, dtype='float16')":
                Cold(lambda: read_per_image(cache, dtype="float16"), [cache]),
            "cache bulk float32 (iter_read)": Cold(lambda: read_bulk(cache), [cache]),
        }, repeats=args.repeats)
        result["read_cold_ms_per_image"] = {name: _ms(t, n) for name, t in cold.items()}
        consumed = alternate({
            "npy (np.load) + sweep": lambda: read_npy(npy, ids, sweep),
            "cache per-image float32 + sweep": lambda: read_per_image(cache, sweep),
            "cache bulk float32 + sweep (the evaluation before)": lambda: read_bulk(cache, sweep),
            "cache bulk float16 + sweep (the evaluation: the same matrices)":
                lambda: read_bulk(cache, sweep, dtype=None),
            "cache float32, HDF5 filter pipeline + sweep":
                lambda: read_filter_pipeline(cache, sweep),
        }, repeats=args.repeats)
        result["read_and_sweep_ms_per_image"] = {name: _ms(t, n) for name, t in consumed.items()}

        write: dict[str, Any] = {}
        for gpu_ms in (0.0, args.gpu_ms):
            gpu_s = gpu_ms / 1e3

            def npy_writes(s: float = gpu_s) -> None:
                (tmp / "npy_w").mkdir(exist_ok=True)
                for image_id, keys, s4, full in maps:
                    time.sleep(s)
                    np.save(tmp / "npy_w" / f"{image_id}.npy",
                            {"keys": keys, "cam": s4, "high_res": full})

            def caller_thread(options: dict[str, Any], s: float = gpu_s) -> None:
                with h5py.File(tmp / "sync.h5", "w") as h5:
                    for image_id, keys, s4, full in maps:
                        time.sleep(s)
                        group = h5.create_group(image_id)
                        group.create_dataset("keys", data=keys.astype(np.int16))
                        for name, arr in (("stride4", s4), ("full", full)):
                            group.create_dataset(name, data=arr.astype(np.float16),
                                                 chunks=(1, *arr.shape[1:]), **options)

            timings = alternate({
                "npy (np.save)": npy_writes,
                "cache (background writer)": lambda s=gpu_s: write_cache(tmp / "w.h5", maps, s),
                "same filter on the caller's thread": lambda: caller_thread(MAP_FILTER),
                "before: gzip on the caller's thread": lambda: caller_thread(GZIP),
            }, repeats=args.repeats)
            write[f"gpu_{gpu_ms:g}ms"] = {
                name: {**_ms(t, n), "above_gpu_ms": 1e3 * t.median / n - gpu_ms}
                for name, t in timings.items()}
        result["write_ms_per_image"] = write
        if args.table_images:
            subset = maps[: args.table_images]
            subset_npy = sum((npy / f"{m[0]}.npy").stat().st_size for m in subset) / len(subset)
            result["filters"] = filter_table(tmp, subset, args.repeats)
            for row in result["filters"]:
                row["bytes_npy_over"] = subset_npy / row["bytes_per_image"]
    path = write_result("cam_cache", result)
    _print(result)
    print(f"wrote {path}")


def _print(result: dict[str, Any]) -> None:
    b = result["bytes_per_image"]
    print(f"{result['images']} images of {result['size'][1]}x{result['size'][0]}, "
          f"{result['classes_per_image']:.2f} classes each; page cache warm except where "
          "read from the disk")
    print("bytes/image  " + "  ".join(f"{k} {v:,.0f}" for k, v in b.items())
          + f"  (npy / cache {result['bytes_npy_over_cache']:.2f})")
    for section, title in (("read_ms_per_image", "read, page cache warm"),
                           ("read_cold_ms_per_image", "read from the disk"),
                           ("read_and_sweep_ms_per_image", "read + threshold sweep")):
        print(f"-- {title}")
        for name, t in result[section].items():
            print(f"{name:50s} {t['median_ms']:7.3f} ms/image (spread {t['spread_ms']:.3f})")
    for gpu, rows in result["write_ms_per_image"].items():
        for name, t in rows.items():
            print(f"write {gpu:10s} {name:38s} {t['median_ms']:7.3f} ms/image "
                  f"(spread {t['spread_ms']:.3f}; above the GPU step {t['above_gpu_ms']:.3f})")
    for row in result.get("filters", []):
        r = row["read_ms"]
        print(f"{row['filter']:28s} {row['chunks']:10s} {row['bytes_per_image']:10,.0f} B  "
              f"npy/x {row['bytes_npy_over']:5.2f}  read {r['median_ms']:6.3f} "
              f"({r['spread_ms']:.3f})  write {row['write_ms_caller_thread']:6.2f}")


if __name__ == "__main__":
    main()
