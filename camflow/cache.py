"""The CAM cache: one HDF5 file holding the class activation maps of every image.

Layout (``format_version`` 1)::

    /                 attrs: format_version=1,
                             class_names (JSON list, background first),
                             provenance  (JSON object given by the writer)
    /images/<id>      one group per image; ``<id>`` is the image id percent-escaped
                      (``urllib.parse.quote(id, safe="")``) so that ``/`` cannot nest groups
        keys          int16 (n_keys,): foreground class indices 1..K of the image's
                      present classes, in the order of the maps below
        stride4       float16 (n_keys, h4, w4): CAMs at output stride 4 (random walk)
        full          float16 (n_keys, H, W):  CAMs at image resolution (evaluation)
                      (float32 for both where the writer was asked for it)
    /index            variable-length UTF-8 strings: the image ids, in insertion order,
                      written when the writer closes successfully
    /index_keys       int16: every image's ``keys``, concatenated in the order of ``/index``
    /index_keys_offsets  int64 (n_images + 1,): image i's keys are
                      ``index_keys[offsets[i]:offsets[i + 1]]``; both written with the index
                      (files written before them read the per-image ``keys``)
    /index_chunks     int64 (n_maps, 2, 2): the chunk table of the CAM (and saliency) cache,
                      rows as ``/index_keys``: ``[row, r] = (byte offset, size)`` in the file
                      of that map's chunk at resolution r (0 "full", 1 "stride4"), -1 where
                      the map is not one filtered Blosc chunk; attributes ``dtype`` (of the
                      stored maps), ``crc32`` (of this table and ``/index_shapes``) and
                      ``file_stamp`` (the size and mtime in ns of the file the writer closed)
    /index_shapes     int64 (n_images, 2, 2): ``[i, r] = (h, w)`` of image i's maps

The maps are compressed with Blosc's LZ4 codec over byte-shuffled values (:data:`MAP_FILTER`,
HDF5 filter 32001, registered by ``hdf5plugin``), one chunk per class map, so reading an image
decompresses exactly its own maps.  Files written before with gzip level 4 + shuffle have the
same layout and ``format_version`` and read unchanged: HDF5 records the filter per dataset.
The file is written under a temporary name and renamed into place
(:func:`camflow.io.atomic_path`): a file without ``/index`` can only come from a foreign or
damaged file and is refused.

Why this filter (``benchmarks/cam_cache.py``: synthetic CAM-like maps of 500×375, two classes
per image on average, float16, page cache warm, 2 shared CPU cores; medians of alternated
runs): the aim was reads as fast as IRN's per-image float32 ``.npy`` files at no more than a
quarter of their bytes. (The filter timings here are reads through HDF5's filter pipeline in an
earlier, busier run, where ``np.load`` took 0.6 ms.) gzip reads in 4.4–5.0 ms per image at
every level 1–9 (zlib's inflate is the cost, not the bytes; the level trades 14–78 ms of
writing for 8 % of size), lzf in 3.8–4.5 ms, Zstd (plain, Blosc, Blosc2) in 1.9–2.5 ms, LZ4
(plain, Blosc, Blosc2) in 1.1–1.9 ms; uncompressed maps read in 0.9 ms but are only 2.0×
smaller than npy. LZ4 needs a byte shuffle to stay under a quarter (3.7× smaller without, 5.1×
with; bitshuffle 3.7–4.0× on float16 maps); Blosc's own shuffle reads faster than HDF5's
shuffle filter in front of plain LZ4 (1.5 against 1.7 ms), Blosc2 writes slower, Blosc's LZ4
levels 1–9 and LZ4HC read alike (1.4–1.7 ms, within the runs' spread) but LZ4HC's 13 % fewer
bytes cost 3× the write time (16 ms), and chunks of 64 rows or one per image change nothing.
Hence Blosc LZ4 level 9 + shuffle: 5.1× smaller than npy (the earlier gzip: 6.0×), 5 ms per
image to compress.  The filter table of ``docs/benchmarks.md`` (reads through :class:`CamCache`
of files without the chunk table: HDF5 finds the chunks, camflow decodes Blosc's) agrees:
Blosc LZ4 + shuffle 0.99–1.02 ms at 4.7–5.1× (levels 1–9), the same without the shuffle
0.81 ms but 3.7×, Zstd 1.3–1.7, gzip 3.0–3.4, lzf 2.6–3.1, uncompressed maps 0.68–0.71 at
2.0×; chunks of 64 rows or one per image change nothing (1.06 and 1.02 against 0.99 ms).  On
real CAMs of the demo's 128×128 images every filter compresses less (gzip 4: 3.6×, this filter
3.2× smaller than npy): small maps are less smooth per pixel.

Reading.  Before the chunk table a read, profiled (µs of ~650), spent 190–250 in Blosc's LZ4
decoding, 140–200 widening float16 into a new float32 array (which a float32 ``.npy`` file
does not need), 100–150 in HDF5's dataset open and chunk look-up (cold per image: each image is
read once), 55 in the ``pread`` and 20–30 in the finiteness check: 2–2.5× ``np.load``.  So the
writer records where each map's chunk is (its background thread asks HDF5's
``get_chunk_info`` once a dataset is written: a written chunk does not move) and writes
``/index_chunks`` and ``/index_shapes`` with the index, and a read
(:meth:`_H5Reader._table_maps`) makes no HDF5 call: per map one ``pread`` on HDF5's own file
descriptor, a check of the chunk's Blosc header against the map's size and type and the
recorded size (the decoder writes as many bytes as the header says), python-blosc's decoder
into the new array and the finiteness check while the map is in the CPU's cache
(:func:`_all_finite`: one pass over the float16 bits, non-negative finite values being the bit
patterns below +inf; the exact min/max only for maps with a negative or non-finite value).
``dtype="float16"`` (or None: as stored) hands the decoded maps back as they are; float32, the
default, widens the stack with torch (F16C, :func:`_cast`).  The keys come from
``/index_keys``, read once with the index.

Measured (``benchmarks/cam_cache.py``, 300 images, two runs; medians of 5 alternated runs,
spreads in brackets, ms per image): float16 reads take 0.30 (0.01) and 0.31 (0.01), in bulk
(:meth:`CamCache.iter_read`) 0.30 (0.03) and 0.32 (0.03), against 0.41 (0.11) and 0.43 (0.01)
for ``np.load`` of the float32 ``.npy`` files, at 5.09× fewer bytes.  float32 reads take 0.66
(0.13) and 0.61 (0.01), in bulk 0.56 (0.13) and 0.59 (0.03): decoding (~120 µs per map) and
widening (60–150 µs per map) alone take what ``np.load`` takes, and a 1.5 MB array per image
can cost ~100 page faults when the caller still holds the previous image and glibc has trimmed
its heap (``np.load``'s arrays alike: 0.45 against 0.33 ms in that pattern).  Read from the disk
instead (each store's pages dropped from the page cache before every run, as for a job on a
cluster node or after other jobs have filled the memory; ``harness.Cold``), the bytes decide:
float32 reads take 0.53 (0.01) ms, float16 0.36 (0.19), against 1.32 (0.25) for ``np.load``
(2.5× and 3.6× faster; the same run, warm: 0.48, 0.30 and 0.31).  Without the table (files
written before it, or a copy with a new mtime) a read takes 0.89 (0.09) and 0.88 (0.04),
through HDF5's filter pipeline 0.88 (0.08) and 0.91 (0.13).  The stage that reads every image
therefore takes float16: the seed evaluation's threshold sweep (:mod:`camflow.evaluate`) reads
the stored maps and rounds its thresholds down into float16, which gives bit for bit the
matrices of the float32 maps (rounding to nearest would not: 0.15 → 0.15002 moves pixels of
exactly that value to background); reading and sweeping an image takes 5.60 (0.32) and 5.92
(0.21) ms, against 5.97 (0.28) and 5.99 (0.45) reading float32 and 6.51 (1.24) and 6.20 (0.73)
from ``.npy`` files: a gain of 1–6 %, within the runs' spreads, which an A/B of 11 alternated
runs on 150 images confirms (6.16 against 6.39 ms; 8 of the 11 float16 runs faster than the
fastest float32 one).

The table is followed only while it describes the file (:meth:`_H5Reader._chunk_table`).  The
writer stamps the closed file's size and mtime (ns) into it before renaming it into place (it
overwrites an attribute that exists already, so the size stays, and sets the mtime back); a
reader compares the stamp with ``fstat`` of the descriptor it reads (a cache rebuilt under its
path meanwhile is read from the reader's own, old file, and a forked worker reads the index of
the file it reopens), checks the table's CRC-32 and shape against the index (a mismatch is an
error naming the file) and compares the first and last image's first chunk with
``get_chunk_info``.  An in-place edit (h5py ``r+``: a rewritten chunk may move, a deleted
dataset's bytes stay), a rewrite (h5repack, h5copy: every chunk moves) or a copy gives the file
a new mtime, and its maps are read through HDF5: right, ~0.25 ms slower.  Copies that keep the
mtime (``cp -p``, ``rsync -a``) keep the bytes, hence the fast path.  Not caught: an edit that
keeps size and mtime (set back on purpose, or within the file system's timestamp granularity
of the writer's close) and moves neither the first nor the last image's chunk; then each
chunk's header check still refuses an address that is not a chunk of that map's size and type,
naming the file and the image.  Without the table, a read opens the dataset through h5py's
low-level API and decodes its raw chunks alike (:meth:`_H5Reader._maps`) if they are stored as
the writer stores them; anything else (gzip-era files, chunks HDF5 stored unfiltered because
they did not shrink) goes through HDF5's filter pipeline.

Bulk reads are the same reads in file order (a cold page cache is read front to back).  One
``pread`` for the chunks of several images would save system calls only (a map's ``pread``,
15–35 µs, is the copy of its bytes), and a thread decoding ahead needs a second core that the
pipeline's jobs do not declare (it measured no faster on the 2 shared cores before the table):
neither is done.  Measured no faster (A/B medians, ms per image unless µs): widening each map
from a scratch map while it is in cache (0.525 against 0.505 for widening the stack), HDF5
``libver="latest"`` or paged file space (0.72–0.76 against 0.68, before the table), reusing the
read buffers (0.720 against 0.725), two Blosc threads (0.684 against 0.685: a chunk is one
Blosc block), torch's ``split``/``_foreach_copy_`` for the widening (141–144 against 147 µs);
one whole-array torch copy is 65 µs when the machine is idle but 7.6 ms under load (its
intra-op threads), hence the slices.  ``mmap`` instead of ``pread`` was not tried: a file
truncated under a mapping kills the reader with SIGBUS.

Writing validates and converts in ``add`` and leaves the compression to a background thread
(:class:`_H5Writer`), which also records the chunk addresses: behind a simulated 10 ms GPU
step per image the caller spends 1.2 ms per image on the cache (two runs; 1.5–1.6 ms in
earlier ones without the table), against 3.8–4.4 ms with the filter on its own thread,
11.6–12.3 ms with the earlier gzip and 2.5–2.7 ms for ``np.save``.  Compressing in worker
processes and writing the raw chunks (``write_direct_chunk``) measured no better in a one-off
prototype (2.0 against 2.25 ms above the GPU step; 5.8 against 4.6 ms per image with no GPU
step).  The background thread codes each map with python-blosc, which releases the GIL, and
writes the frame as the chunk (``write_direct_chunk``; a map Blosc cannot shrink is stored
raw with the filter skipped, as HDF5 stores it), rather than letting HDF5 run the filter
inside h5py, which holds the GIL: the same bytes for HDF5 and any reader, but on a GPU the
main thread and the DataLoader's pinning thread no longer wait for the coding.  On an H100
(256 images of 320² per run, three classes each; two machine starts, whose host side ran at
different speeds) the writer alone went from 282 to 366 images/s and ``make_cams`` from 131
to 180 (``benchmarks/cam_inference.py --sections cuda``; what is left: the docstring of
:func:`camflow.methods.cam.make_cams`).

The *label cache* (``kind`` "labels", :class:`LabelCacheWriter` / :class:`LabelCache`) has
the same root attributes, index and atomic writing, and per image::

    /images/<id>
        keys          int16 (n_keys,): the image's foreground classes (as in the CAM cache)
        labels        uint8 (H, W): class indices 0..K (0 background) and 255 (ignore),
                      e.g. the affinity labels of IRN / PSA (camflow/refine/affinity_labels.py)
        scores        optional float16 (C, H, W): the score maps the labels were taken from,
                      where a consumer needs them (PSA: the two CRF score stacks, which
                      AffinityNet's training reduces to stride 8 itself), compressed like
                      the CAM maps, one chunk per map

The *saliency cache* (``kind`` "saliency", :class:`SaliencyCacheWriter` /
:class:`SaliencyCache`) is the CAM cache's layout with one map per image (key 1 of the
classes ``background``, ``salient``): a saliency map at full resolution and its stride-4
average (P-NOC's C²AM-H, David et al. Sec. 4, or maps from an external detector).

A root attribute ``kind`` ("cams", "labels" or "saliency"; absent means "cams") keeps one
from being opened as another.

Readers open the file lazily and once per process: a :class:`CamCache` handed to a forked
DataLoader or ``multiprocessing`` worker reopens its own HDF5 handle there instead of sharing
the parent's, and pickling it carries only the path.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NamedTuple, Self
from urllib.parse import quote

import blosc
import h5py
import hdf5plugin
import numpy as np

from camflow.data.base import IGNORE_INDEX
from camflow.io import CamflowInputError, atomic_path, rebuild_hint, some_ids

FORMAT_VERSION = 1
RESOLUTIONS = ("full", "stride4")
_FLOAT16_MAX = float(np.finfo(np.float16).max)

Resolution = Literal["full", "stride4"]
MapDtype = Literal["float32", "float16"]
MAP_DTYPES = ("float32", "float16")
SALIENCY_CLASSES = ("background", "salient")

# The filter of every float map (CAMs, label scores): Blosc's LZ4 over byte-shuffled values,
# one chunk per map (module doc: why).  hdf5plugin registers the filter with HDF5 on import.
MAP_CODEC = {"cname": "lz4", "clevel": 9, "shuffle": hdf5plugin.Blosc.SHUFFLE}
MAP_FILTER: dict[str, Any] = dict(hdf5plugin.Blosc(**MAP_CODEC))
# python-blosc's coder runs without the GIL: the writer thread compresses while the caller's
# thread (a GPU loop, a DataLoader's pinning thread) goes on (_blosc_chunks_of)
blosc.set_releasegil(True)
# Images the background writer may hold queued before add() waits (bounds the memory).
WRITE_QUEUE = 8


class MissingImageError(CamflowInputError, KeyError):
    """An image id is not in the cache (a :class:`KeyError` and a :class:`CamflowInputError`)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _group_name(image_id: str) -> str:
    """HDF5 group name of ``image_id``: percent-escaped so that ``/`` and ``.`` stay literal."""
    return quote(image_id, safe="")


# torch runs a copy of at most this many elements on the calling thread (ATen's GRAIN_SIZE);
# a larger one it splits over its intra-op threads, which on a busy machine or in a pool
# worker costs milliseconds of waiting (a 2×375×500 map: 7 ms instead of 0.1 ms).
_SERIAL_COPY = 32768


def _cast(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A new C-contiguous array holding ``arr`` in ``dtype``; always a copy (the background
    writer stores it after ``add`` has returned, when the caller may reuse ``arr``).

    float16 ↔ float32 goes through torch's hardware conversion (F16C), correctly rounded
    like numpy's ``astype`` but 3.5× faster (0.1 ms against 0.35 ms for two 375×500 maps),
    in slices that keep it on this thread (:data:`_SERIAL_COPY`)."""
    out = np.empty(arr.shape, dtype)
    if {arr.dtype, out.dtype} != {np.dtype(np.float16), np.dtype(np.float32)}:
        out[...] = arr
        return out
    import torch

    src = torch.from_numpy(np.ascontiguousarray(arr).reshape(-1))
    dst = torch.from_numpy(out.reshape(-1))
    for start in range(0, out.size, _SERIAL_COPY):
        dst[start:start + _SERIAL_COPY].copy_(src[start:start + _SERIAL_COPY])
    return out


def _all_finite(arr: np.ndarray) -> bool:
    """Whether ``arr`` holds no NaN and no infinity.  For float16 one pass over the bits
    decides the common case: non-negative finite values are exactly the bit patterns below
    that of +inf (0x7c00); maps with a negative value (or a non-finite one) get the exact
    check (:func:`_value_range`)."""
    if arr.dtype == np.float16 and arr.size and int(arr.view(np.uint16).max()) < 0x7C00:
        return True
    return all(map(math.isfinite, _value_range(arr)))


def _value_range(arr: np.ndarray) -> tuple[float, float]:
    """``(min, max)`` of ``arr`` ((0, 0) if empty); NaN if it holds a NaN (min and max
    propagate it), ±inf if it holds one.  Two reductions without a temporary array: the
    writer's validation in a seventh of ``isfinite().all()`` + ``abs().max()``."""
    if not arr.size:
        return 0.0, 0.0
    return float(arr.min()), float(arr.max())


def _out_dtype(dtype: np.dtype | None, stored: np.dtype) -> np.dtype:
    """The dtype a read hands back: ``dtype``, or for None the stored one if it is float16 or
    float32 (else float32)."""
    if dtype is not None:
        return dtype
    return stored if stored in (np.dtype(np.float16), np.dtype(np.float32)) else np.dtype(
        np.float32)


def _blosc_chunks(dataset: h5py.h5d.DatasetID) -> list[tuple[int, int]] | None:
    """``(byte offset, size)`` in the file of every chunk of ``dataset``, map by map, if it is
    stored as the writer stores maps: float16 or float32 (n, h, w), n > 0, one chunk per
    map, Blosc its only filter, every chunk written and filtered; else None."""
    shape = dataset.shape
    if (len(shape) != 3 or not shape[0]
            or dataset.dtype not in (np.dtype(np.float16), np.dtype(np.float32))):
        return None
    plist = dataset.get_create_plist()
    if (plist.get_layout() != h5py.h5d.CHUNKED or plist.get_chunk() != (1, *shape[1:])
            or plist.get_nfilters() != 1 or plist.get_filter(0)[0] != hdf5plugin.BLOSC_ID
            or dataset.get_num_chunks() != shape[0]):
        return None
    chunks = sorted((dataset.get_chunk_info(j) for j in range(shape[0])),
                    key=lambda c: c.chunk_offset[0])
    if any(c.filter_mask or c.byte_offset is None for c in chunks) or [
            c.chunk_offset[0] for c in chunks] != list(range(shape[0])):
        return None
    return [(int(c.byte_offset), int(c.size)) for c in chunks]


def _blosc_chunks_of(maps: np.ndarray) -> list[tuple[bytes, int]]:
    """Each map of ``maps`` (n, h, w) as HDF5 stores it through :data:`MAP_FILTER`:
    ``(bytes, filter mask)``, the Blosc frame (mask 0), or the raw map (mask 1) where Blosc
    cannot shrink it (HDF5 then skips the optional filter).  Coded by python-blosc, which
    releases the GIL; HDF5's filter, called through h5py, holds it (4–7 ms per image that a
    GPU loop's thread would wait for)."""
    chunks = []
    for m in maps:
        frame = blosc.compress_ptr(m.ctypes.data, m.size, m.itemsize, MAP_CODEC["clevel"],
                                   MAP_CODEC["shuffle"], MAP_CODEC["cname"])
        chunks.append((frame, 0) if len(frame) < m.nbytes else (m.tobytes(), 1))
    return chunks


def _table_crc(chunks: np.ndarray, shapes: np.ndarray) -> int:
    """CRC-32 of the chunk table (``/index_chunks`` then ``/index_shapes``, little-endian
    int64), kept with it: a damaged table is refused, not followed to wrong bytes."""
    crc = zlib.crc32(np.ascontiguousarray(chunks, "<i8").tobytes())
    return zlib.crc32(np.ascontiguousarray(shapes, "<i8").tobytes(), crc)


class _ChunkTable(NamedTuple):
    """The chunk table of a CAM cache as read (module doc), in lists for per-read lookups."""

    dtype: np.dtype  # of the stored maps
    chunks: list[list[list[int]]]  # [map row][resolution] = [byte offset, size]
    shapes: list[list[list[int]]]  # [image][resolution] = [h, w]
    rows: list[int]  # image i's maps are rows rows[i]:rows[i + 1] (= /index_keys_offsets)


class _H5Writer:
    """Atomic HDF5 writer of per-image groups plus an ``/index``; a context manager.

    The file appears at ``path`` only when the ``with`` block exits without an exception;
    otherwise the temporary file is removed and an existing file at ``path`` is left untouched.

    ``add`` validates an image and copies its arrays in the caller's thread, so a bad image
    fails there, naming its id; a background thread (started by the first ``add``, after any
    worker pool the caller forked) creates the datasets and runs the compression filters, so
    the caller — a GPU loop — does not wait for them.  At most :data:`WRITE_QUEUE` images wait
    for it.  If writing an image fails there, the next ``add`` or the end of the ``with``
    block raises a :class:`RuntimeError` naming the file and the image id (the cause chained).
    """

    kind = "cams"
    label = "CAM cache"
    # whether the file gets the chunk table (/index_chunks, /index_shapes; module doc)
    chunk_table = False
    dtype = np.dtype(np.float16)  # of the stored float maps

    def __init__(
        self,
        path: str | os.PathLike,
        class_names: list[str] | tuple[str, ...],
        provenance: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.class_names = [str(name) for name in class_names]
        if len(self.class_names) < 2:
            raise CamflowInputError(
                f"{self.label} {self.path}: class_names needs background and at least one "
                f"foreground class, got {self.class_names}"
            )
        self.provenance = dict(provenance or {})
        self._ids: list[str] = []
        self._keys: list[np.ndarray] = []
        self._seen: set[str] = set()
        self._stack: contextlib.ExitStack | None = None
        self._h5: h5py.File | None = None
        self._queue: queue.Queue[tuple[str, Callable[[], None]] | None] = queue.Queue(
            WRITE_QUEUE)
        self._thread: threading.Thread | None = None
        self._cancelled = False
        self._failure: tuple[str, BaseException] | None = None
        # per image: {resolution: ((h, w), [(byte offset, size) per map] or None)}
        self._chunks: dict[str, dict[str, tuple[tuple[int, int], list[tuple[int, int]] | None]]]
        self._chunks = {}
        # dataset creation properties by dtype and create_dataset options (_dataset)
        self._create_plists: dict[tuple, h5py.h5p.PropDCID] = {}
        self._stamp_pending = False

    def __enter__(self) -> Self:
        stack = contextlib.ExitStack()
        tmp = stack.enter_context(atomic_path(self.path, ".h5"))
        # runs after the HDF5 file is closed and before it is renamed into place
        stack.callback(self._stamp, tmp)
        try:
            self._h5 = stack.enter_context(h5py.File(tmp, "w"))
            self._h5.attrs["format_version"] = FORMAT_VERSION
            self._h5.attrs["kind"] = self.kind
            self._h5.attrs["class_names"] = json.dumps(self.class_names)
            self._h5.attrs["provenance"] = json.dumps(self.provenance, sort_keys=True)
            self._h5.create_group("images")
        except BaseException as exc:
            stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._stack = stack
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        stack, self._stack = self._stack, None
        if stack is None:
            return False
        try:
            self._cancelled = exc_type is not None
            self._join()
            if exc_type is None:
                self._raise_failure()
                self._write_index()
        except BaseException as err:
            self._h5 = None
            stack.__exit__(type(err), err, err.__traceback__)
            raise
        self._h5 = None
        return bool(stack.__exit__(exc_type, exc, tb))

    def __len__(self) -> int:
        return len(self._ids)

    def _write_index(self) -> None:
        assert self._h5 is not None
        self._h5.create_dataset(
            "index", data=np.array(self._ids, dtype=object), dtype=h5py.string_dtype("utf-8")
        )
        offsets = np.cumsum([0, *map(len, self._keys)], dtype=np.int64)
        self._h5.create_dataset("index_keys", data=np.concatenate(
            [np.zeros(0, np.int16), *self._keys]).astype(np.int16))
        self._h5.create_dataset("index_keys_offsets", data=offsets)
        if self.chunk_table:
            self._write_chunk_table(int(offsets[-1]))

    def _write_chunk_table(self, n_maps: int) -> None:
        """``/index_chunks`` and ``/index_shapes`` (module doc) from the chunk addresses the
        background thread recorded; the file stamp is filled in after the file is closed."""
        assert self._h5 is not None
        chunks = np.full((n_maps, len(RESOLUTIONS), 2), -1, np.int64)
        shapes = np.zeros((len(self._ids), len(RESOLUTIONS), 2), np.int64)
        row = 0
        for i, (image_id, keys) in enumerate(zip(self._ids, self._keys, strict=True)):
            for r, name in enumerate(RESOLUTIONS):
                shape, image_chunks = self._chunks[image_id][name]
                shapes[i, r] = shape
                if image_chunks is not None:
                    chunks[row:row + keys.size, r] = image_chunks
            row += keys.size
        table = self._h5.create_dataset("index_chunks", data=chunks)
        table.attrs["dtype"] = self.dtype.name
        table.attrs["crc32"] = _table_crc(chunks, shapes)
        table.attrs["file_stamp"] = np.zeros(2, np.int64)  # (size, mtime_ns): _stamp
        self._h5.create_dataset("index_shapes", data=shapes)
        self._stamp_pending = True

    def _stamp(self, tmp: Path) -> None:
        """Record the closed file's size and mtime in ``/index_chunks``; readers trust the
        chunk table only while the file still has both (module doc).  The attribute exists
        already, so the value is overwritten in place (the size stays); the mtime that
        writing it gave the file is then set back to the recorded one."""
        if not self._stamp_pending:
            return
        self._stamp_pending = False
        before = os.stat(tmp)
        with h5py.File(tmp, "r+") as h5:
            h5["index_chunks"].attrs.modify(
                "file_stamp", np.array([before.st_size, before.st_mtime_ns], np.int64))
        after = os.stat(tmp)
        os.utime(tmp, ns=(after.st_atime_ns, before.st_mtime_ns))

    def _check_keys(self, image_id: str, keys: np.ndarray) -> tuple[str, np.ndarray]:
        """Validate a new image id and its foreground ``keys``; returns (who, keys array)."""
        if self._h5 is None:
            raise RuntimeError(f"{type(self).__name__}.add() called outside its 'with' block")
        self._raise_failure()
        who = f"{self.label} {self.path}: image {image_id!r}"
        if image_id in self._seen:
            raise CamflowInputError(f"{who} was already added")
        keys_arr = np.asarray(keys)
        if keys_arr.ndim != 1 or (keys_arr.size and not np.issubdtype(keys_arr.dtype, np.integer)):
            raise CamflowInputError(
                f"{who}: keys must be a 1-D integer array, got dtype {keys_arr.dtype} "
                f"shape {keys_arr.shape}"
            )
        n_fg = len(self.class_names) - 1
        if keys_arr.size and (keys_arr.min() < 1 or keys_arr.max() > n_fg):
            raise CamflowInputError(
                f"{who}: keys {keys_arr.tolist()} outside the foreground classes 1..{n_fg}"
            )
        if len(np.unique(keys_arr)) != keys_arr.size:
            raise CamflowInputError(f"{who}: keys {keys_arr.tolist()} contain duplicates")
        return who, keys_arr

    def _submit(self, image_id: str, keys: np.ndarray,
                datasets: dict[str, tuple[np.ndarray, dict[str, Any]]]) -> None:
        """Queue the group of ``image_id``: its ``keys`` and ``datasets`` (name → (array,
        h5py ``create_dataset`` options)), written in order by the background thread."""
        keys16 = keys.astype(np.int16)

        def write() -> None:
            assert self._h5 is not None
            group = self._h5["images"].create_group(_group_name(image_id))
            self._dataset(group, "keys", keys16, {})
            chunks = {}
            for name, (arr, options) in datasets.items():
                dataset = self._dataset(group, name, arr, options)
                if self.chunk_table and name in RESOLUTIONS:
                    # the chunks are in the file once written: their addresses are final
                    chunks[name] = (arr.shape[1:], _blosc_chunks(dataset))
            self._chunks[image_id] = chunks

        self._ids.append(image_id)
        self._keys.append(keys16)
        self._seen.add(image_id)
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, daemon=True,
                                            name=f"camflow writer {self.path.name}")
            self._thread.start()
        self._queue.put((image_id, write))

    def _dataset(self, group: h5py.Group, name: str, arr: np.ndarray,
                 options: dict[str, Any]) -> h5py.h5d.DatasetID:
        """Create and fill the dataset ``name`` of ``group`` with ``arr`` (h5py
        ``create_dataset`` ``options``); in the background thread.

        A map dataset, one chunk per map under :data:`MAP_FILTER`, gets its chunks coded
        here and written as they are (:func:`_blosc_chunks_of`).  A dataset whose creation
        properties do not depend on its shape (explicit ``chunks``, or none: contiguous)
        is created through HDF5's own call with the properties h5py gave the first of its
        kind (:attr:`_create_plists`): h5py's ``create_dataset`` builds them anew each time,
        in Python, holding the GIL (63 µs against 22 per dataset here)."""
        key = None
        if "chunks" in options or not options:
            key = (arr.dtype.str, tuple(sorted((k, repr(v)) for k, v in options.items())))
        plist = self._create_plists.get(key) if key is not None else None
        direct = (options.get("compression") == MAP_FILTER["compression"] and arr.shape[0]
                  and options.get("chunks") == (1, *arr.shape[1:]))
        if plist is None:
            dataset = group.create_dataset(name, arr.shape, arr.dtype, **options).id
            if key is not None:
                self._create_plists[key] = dataset.get_create_plist()
        else:
            dataset = h5py.h5d.create(group.id, name.encode(), h5py.h5t.py_create(arr.dtype),
                                      h5py.h5s.create_simple(arr.shape), dcpl=plist)
        if direct:
            for j, (chunk, mask) in enumerate(_blosc_chunks_of(arr)):
                dataset.write_direct_chunk((j, 0, 0), chunk, mask)
        elif arr.size:
            dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(arr))
        return dataset

    def _drain(self) -> None:
        """The background thread: write queued images until ``None``; after a failure or a
        cancel it only empties the queue, so that ``add`` never blocks on a dead writer."""
        while (item := self._queue.get()) is not None:
            image_id, write = item
            if self._failure is None and not self._cancelled:
                try:
                    write()
                except BaseException as exc:  # re-raised in the caller's thread
                    self._failure = (image_id, exc)

    def _join(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _raise_failure(self) -> None:
        if self._failure is not None:
            image_id, exc = self._failure
            raise RuntimeError(f"{self.label} {self.path}: writing image {image_id!r} failed: "
                               f"{type(exc).__name__}: {exc}") from exc


class CamCacheWriter(_H5Writer):
    """Write a CAM cache atomically; use as a context manager.

    >>> with CamCacheWriter("cams.h5", class_names, {"method": "irn"}) as writer:
    ...     writer.add("2007_000032", keys, cams_stride4, cams_full)

    ``dtype`` is the stored precision: float16 (default; max-normalised maps in [0, 1] lose at
    most 2⁻¹² ≈ 2.4e-4) or float32 (bit for bit what was computed, twice the size).
    """

    chunk_table = True

    def __init__(self, path: str | os.PathLike, class_names: list[str] | tuple[str, ...],
                 provenance: dict[str, Any] | None = None, dtype: str = "float16") -> None:
        if dtype not in ("float16", "float32"):
            raise CamflowInputError(f"CAM cache {path}: dtype must be float16 or float32, "
                                    f"got {dtype!r}")
        super().__init__(path, class_names, provenance)
        self.dtype = np.dtype(dtype)

    def add(self, image_id: str, keys: np.ndarray, stride4: np.ndarray, full: np.ndarray) -> None:
        """Store the CAMs of ``image_id``.

        ``keys`` are the foreground class indices (1..K) of the maps, in order; ``stride4`` and
        ``full`` have shapes ``(len(keys), h4, w4)`` and ``(len(keys), H, W)``.  An image with
        no foreground class has ``len(keys) == 0`` and arrays of shape ``(0, h, w)``.  Values
        must be finite and representable in float16.  Any violation, or an id already added,
        raises :class:`CamflowInputError` naming the image id.  The arrays are copied: the
        caller may reuse them as soon as ``add`` returns.
        """
        who, keys_arr = self._check_keys(image_id, keys)
        maps = {"stride4": np.asarray(stride4), "full": np.asarray(full)}
        for name, arr in maps.items():
            if arr.ndim != 3 or arr.shape[0] != keys_arr.size or 0 in arr.shape[1:]:
                raise CamflowInputError(
                    f"{who}: {name} has shape {arr.shape}; expected "
                    f"({keys_arr.size}, h, w) with h, w > 0 (one map per key)"
                )
            if arr.dtype == np.float16 and _all_finite(arr):
                continue  # finite float16 values are within its range
            lo, hi = _value_range(arr)
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise CamflowInputError(f"{who}: {name} contains NaN or infinite values")
            if max(-lo, hi) > _FLOAT16_MAX:
                raise CamflowInputError(
                    f"{who}: {name} has values beyond the float16 range (±{_FLOAT16_MAX:g}); "
                    "normalise the CAMs before caching"
                )
        self._submit(image_id, keys_arr, {
            name: (_cast(arr, self.dtype),
                   {"chunks": (1, *arr.shape[1:]), **MAP_FILTER} if arr.shape[0] else {})
            for name, arr in maps.items()})


class LabelCacheWriter(_H5Writer):
    """Write a label cache (per-image uint8 label maps with their class keys) atomically."""

    kind = "labels"
    label = "label cache"

    def add(self, image_id: str, keys: np.ndarray, labels: np.ndarray,
            scores: np.ndarray | None = None) -> None:
        """Store the label map (H×W: 0..K, 255 = ignore) of ``image_id``, its ``keys`` and,
        optionally, the score maps (C×H×W, finite, within float16) behind the labels."""
        who, keys_arr = self._check_keys(image_id, keys)
        labels = np.asarray(labels)
        if labels.ndim != 2 or 0 in labels.shape:
            raise CamflowInputError(f"{who}: labels must be a non-empty H×W map, got "
                                    f"shape {labels.shape}")
        if scores is not None:
            scores = np.asarray(scores)
            if scores.ndim != 3 or scores.shape[1:] != labels.shape or not scores.shape[0]:
                raise CamflowInputError(f"{who}: scores have shape {scores.shape}; expected "
                                        f"(C, {labels.shape[0]}, {labels.shape[1]}), C > 0")
            lo, hi = _value_range(scores)
            if not (math.isfinite(lo) and math.isfinite(hi)) or max(-lo, hi) > _FLOAT16_MAX:
                raise CamflowInputError(f"{who}: scores must be finite and within float16")
        n_fg = len(self.class_names) - 1
        values = np.unique(labels)
        bad = values[((values < 0) | (values > n_fg)) & (values != IGNORE_INDEX)]
        if bad.size:
            raise CamflowInputError(f"{who}: labels {bad.tolist()} outside 0..{n_fg} "
                                    f"(255 = ignore)")
        datasets = {"labels": (labels.astype(np.uint8),
                               {"compression": "gzip", "compression_opts": 4})}
        if scores is not None:
            datasets["scores"] = (_cast(scores, np.dtype(np.float16)),
                                  {"chunks": (1, *scores.shape[1:]), **MAP_FILTER})
        self._submit(image_id, keys_arr, datasets)


class _H5Reader:
    """Lazy reader of a file written by an :class:`_H5Writer` of the same ``kind``.

    The HDF5 file is opened on first access and reopened whenever the object is used from
    another process (a forked DataLoader/``multiprocessing`` worker), so one instance may be
    shared with workers.  Pickling keeps only the path.
    """

    kind = "cams"
    label = "CAM cache"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._h5: h5py.File | None = None
        self._pid: int | None = None
        self._images: h5py.h5g.GroupID | None = None
        self._ids: list[str] | None = None
        self._position: dict[str, int] = {}
        self._fd: int | None = None
        self._keys: np.ndarray | None = None
        self._keys_offsets: np.ndarray | None = None
        self._table: _ChunkTable | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])

    def _file(self) -> h5py.File:
        if self._h5 is not None and self._pid == os.getpid():
            return self._h5
        # A handle inherited through fork is never used: HDF5 handles must not be shared
        # between processes, so this process opens its own, and reads the index again from
        # it (the chunk table holds addresses in the file that this handle reads).
        self._h5 = None
        self._ids, self._position, self._table = None, {}, None
        self._keys = self._keys_offsets = None
        if not self.path.is_file():
            raise CamflowInputError(f"{self.label} {self.path} does not exist")
        try:
            h5 = h5py.File(self.path, "r")
        except OSError as exc:
            raise CamflowInputError(
                f"{self.label} {self.path} is not a readable HDF5 file "
                f"(corrupt or truncated): {exc}; {rebuild_hint(self.path)}"
            ) from exc
        version = h5.attrs.get("format_version")
        kind = str(h5.attrs.get("kind", "cams"))
        problem = None
        if version is None:
            problem = "has no format_version attribute (not a camflow cache file)"
        elif int(version) != FORMAT_VERSION:
            problem = f"has format_version {version}; this camflow reads {FORMAT_VERSION}"
        elif kind != self.kind:
            problem = f"holds {kind}, not {self.kind}"
        elif "index" not in h5 or "images" not in h5:
            problem = "is incomplete (no /index or /images; its writer did not finish)"
        if problem:
            h5.close()
            raise CamflowInputError(f"{self.label} {self.path} {problem}; "
                                    f"{rebuild_hint(self.path)}")
        self._h5, self._pid, self._images = h5, os.getpid(), h5["images"].id
        self._fd = None
        if hasattr(os, "preadv"):  # HDF5's own descriptor of the file (sec2 driver): raw chunks
            with contextlib.suppress(TypeError, ValueError, RuntimeError, OSError):
                self._fd = int(h5.id.get_vfd_handle())
        return h5

    def _index(self) -> list[str]:
        h5 = self._file()
        if self._ids is None:
            ids = [str(i) for i in h5["index"].asstr()[()]]
            if "index_keys" in h5 and "index_keys_offsets" in h5:
                keys = h5["index_keys"][()].astype(np.int64)
                offsets = h5["index_keys_offsets"][()].astype(np.int64)
                if (offsets.shape != (len(ids) + 1,) or offsets[0] != 0
                        or offsets[-1] != keys.size or np.any(np.diff(offsets) < 0)):
                    raise CamflowInputError(
                        f"{self.label} {self.path}: its keys table does not match its index "
                        f"(corrupt file?); {rebuild_hint(self.path)}")
                self._keys, self._keys_offsets = keys, offsets
                self._table = self._chunk_table(h5, ids)
            self._position = {image_id: i for i, image_id in enumerate(ids)}
            self._ids = ids
        return self._ids

    def _chunk_table(self, h5: h5py.File, ids: list[str]) -> _ChunkTable | None:
        """The chunk table (module doc) if the file has one and it still describes the file:
        the file's size and mtime are those the writer recorded after closing it, and the
        first and the last image's first full-resolution chunk are where HDF5 has them.
        Otherwise None: the maps are read through HDF5 (a copy that changed the mtime, a
        file rewritten by e.g. h5repack or edited in place).  A table that does not match
        the index or its checksum is refused (a damaged file)."""
        if self._fd is None or "index_chunks" not in h5 or "index_shapes" not in h5:
            return None
        assert self._keys is not None and self._keys_offsets is not None
        dataset = h5["index_chunks"]
        stamp = np.asarray(dataset.attrs.get("file_stamp", []), np.int64).tolist()
        stat = os.fstat(self._fd)
        if stamp != [stat.st_size, stat.st_mtime_ns]:
            return None
        chunks, shapes = dataset[()], h5["index_shapes"][()]
        dtype = np.dtype(str(dataset.attrs.get("dtype", "")))
        if (chunks.shape != (self._keys.size, len(RESOLUTIONS), 2)
                or shapes.shape != (len(ids), len(RESOLUTIONS), 2)
                or dtype not in (np.dtype(np.float16), np.dtype(np.float32))
                or int(dataset.attrs.get("crc32", -1)) != _table_crc(chunks, shapes)):
            raise CamflowInputError(
                f"{self.label} {self.path}: its chunk table does not match its index or its "
                f"checksum (corrupt file?); {rebuild_hint(self.path)}")
        table = _ChunkTable(dtype, chunks.tolist(), shapes.tolist(),
                            self._keys_offsets.tolist())
        with_maps = np.flatnonzero(np.diff(self._keys_offsets))
        for i in with_maps[[0, -1]] if with_maps.size else ():
            row = chunks[self._keys_offsets[i], 0]
            if row[0] < 0:
                continue
            try:
                dataset_id = h5py.h5d.open(
                    self._images, f"{_group_name(ids[i])}/full".encode())
                recorded = _blosc_chunks(dataset_id)
            except (KeyError, OSError, RuntimeError, ValueError):
                recorded = None
            if recorded is None or list(recorded[0]) != row.tolist():
                return None
        return table

    def _unreadable(self, image_id: str, exc: BaseException) -> CamflowInputError:
        return CamflowInputError(
            f"{self.label} {self.path}: image {image_id!r} is listed but unreadable "
            f"(corrupt file?): {exc}; {rebuild_hint(self.path)}")

    def _image_keys(self, image_id: str) -> np.ndarray:
        """The int64 classes of ``image_id`` (known to be in the file): from the keys table
        read with the index (files written before it: the image's ``keys`` dataset)."""
        self._index()
        if self._keys is None or self._keys_offsets is None:
            return self._array(image_id, "keys").astype(np.int64)
        i = self._position[image_id]
        return self._keys[self._keys_offsets[i]:self._keys_offsets[i + 1]].copy()

    def _maps(self, image_id: str, name: str, dtype: np.dtype | None
              ) -> tuple[np.ndarray, bool]:
        """Map stack ``name`` of ``image_id`` in ``dtype`` (None: :func:`_out_dtype`), found
        through HDF5, and whether its stored values are all finite.

        Maps stored as the writer stores them (one Blosc chunk per map) are decoded from
        their raw chunks (:meth:`_decode_chunks`), bypassing HDF5's filter pipeline (module
        doc); any other dataset (gzip-era files) is read through HDF5.
        """
        self._file()
        try:
            dataset = h5py.h5d.open(self._images, f"{_group_name(image_id)}/{name}".encode())
            chunks = _blosc_chunks(dataset) if self._fd is not None else None
            if chunks is not None:
                return self._decode_chunks(chunks, dataset.shape, dataset.dtype, dtype)
            stored = np.empty(dataset.shape, dataset.dtype)
            dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, stored)
        except (KeyError, OSError, RuntimeError, ValueError) as exc:
            raise self._unreadable(image_id, exc) from exc
        finite = _all_finite(stored)
        dtype = _out_dtype(dtype, stored.dtype)
        return (stored if stored.dtype == dtype else _cast(stored, dtype)), finite

    def _table_maps(self, image_id: str, name: str, dtype: np.dtype | None
                    ) -> tuple[np.ndarray, bool] | None:
        """:meth:`_maps` through the chunk table (module doc): no HDF5 call, the image's
        chunks decoded at the addresses the writer recorded; None without a table or for an
        image whose maps are not in it."""
        table = self._table
        if table is None:
            return None
        i, r = self._position[image_id], RESOLUTIONS.index(name)
        chunks = [row[r] for row in table.chunks[table.rows[i]:table.rows[i + 1]]]
        if any(offset < 0 for offset, _ in chunks):
            return None
        try:
            return self._decode_chunks(chunks, (len(chunks), *table.shapes[i][r]),
                                       table.dtype, dtype)
        except (OSError, RuntimeError, ValueError) as exc:
            raise self._unreadable(image_id, exc) from exc

    def _decode_chunks(self, chunks: list[tuple[int, int]] | list[list[int]],
                       shape: tuple[int, ...], stored: np.dtype, dtype: np.dtype | None
                       ) -> tuple[np.ndarray, bool]:
        """Maps of ``shape`` in ``dtype`` from their raw Blosc chunks (``(byte offset, size)``
        per map, stored as ``stored``), and whether they are all finite.

        One ``pread`` per chunk on HDF5's own descriptor and python-blosc's decoder, after
        checking the chunk's Blosc header against the map's size and type (the decoder
        writes as many bytes as the header says); maps stored in another precision than
        ``dtype`` are then converted (:func:`_cast`)."""
        assert self._fd is not None
        stack = np.empty(shape, stored)
        nbytes = stack[0].nbytes if shape[0] else 0
        finite = True
        for j, (offset, size) in enumerate(chunks):
            raw = np.empty(size, np.uint8)
            if os.preadv(self._fd, [raw], offset) != size:
                raise OSError(f"short read of map {j}'s chunk ({size} bytes at {offset})")
            if (size < 16 or raw[3] != stored.itemsize
                    or blosc.get_cbuffer_sizes(raw)[:2] != (nbytes, size)):
                raise OSError(f"map {j} of {shape} has a damaged Blosc header (at {offset})")
            blosc.decompress_ptr(raw, stack[j].ctypes.data)
            finite = finite and _all_finite(stack[j])
        dtype = _out_dtype(dtype, stored)
        return (stack if dtype == stored else _cast(stack, dtype)), finite

    def _array(self, image_id: str, name: str) -> np.ndarray:
        """Dataset ``name`` of ``image_id``'s group, as stored (dtype of the file).

        Opens it by path through h5py's low-level API and reads it into a new array: a third
        of the high-level ``file["images"][id][name][()]``'s overhead (module doc).  A missing
        id must have been refused before; a damaged group raises :class:`CamflowInputError`.
        """
        self._file()
        try:
            dataset = h5py.h5d.open(self._images, f"{_group_name(image_id)}/{name}".encode())
            out = np.empty(dataset.shape, dataset.dtype)
            dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
        except (KeyError, OSError) as exc:
            raise self._unreadable(image_id, exc) from exc
        return out

    @property
    def ids(self) -> list[str]:
        """Image ids in the cache, in the order they were written."""
        return list(self._index())

    @property
    def class_names(self) -> list[str]:
        """Class names, background first."""
        return list(json.loads(self._file().attrs["class_names"]))

    @property
    def provenance(self) -> dict[str, Any]:
        """The provenance dictionary given to the writer."""
        return dict(json.loads(self._file().attrs["provenance"]))

    def __len__(self) -> int:
        return len(self._index())

    def __contains__(self, image_id: object) -> bool:
        self._index()
        return image_id in self._position

    def require(self, ids: list[str], where: str) -> None:
        """Fail unless every id of ``ids`` (the images of ``where``, e.g. "voc12/train") is in
        the file; the error names the missing ids and the file."""
        missing = [i for i in ids if i not in self]
        if missing:
            raise CamflowInputError(
                f"{len(missing)} image(s) of {where} are not in {self.label} {self.path}: "
                f"{some_ids(missing)}")

    def close(self) -> None:
        """Close this process's HDF5 handle; the next access reopens it."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None
        self._pid = None
        self._images = None
        self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


class CamCache(_H5Reader):
    """Lazy, fork-safe reader of a CAM cache written by :class:`CamCacheWriter`."""

    def read(self, image_id: str, resolution: Resolution = "full",
             dtype: MapDtype | np.dtype | None = "float32") -> tuple[np.ndarray, np.ndarray]:
        """``(keys, cams)`` of ``image_id``: int64 class indices and maps in ``dtype``.

        ``cams`` has shape ``(len(keys), H, W)`` for ``resolution="full"`` and
        ``(len(keys), h4, w4)`` for ``"stride4"``.  ``dtype`` "float16" hands back maps stored
        in float16 as they are, without widening them (faster; module doc), and rounds maps
        stored in float32; None: the maps as stored (float16 or float32; maps of another
        type as float32).  A missing id raises :class:`MissingImageError` naming the id and
        the cache file.
        """
        self._check_resolution(resolution)
        out_dtype = self._check_dtype(dtype)
        if image_id not in self:
            raise MissingImageError(f"image {image_id!r} is not in {self.label} {self.path}")
        return self._load(image_id, resolution, out_dtype)

    def iter_read(self, ids: Iterable[str] | None = None, resolution: Resolution = "full",
                  dtype: MapDtype | np.dtype | None = "float32"
                  ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """``(image_id, keys, cams)`` of every id of ``ids`` (default: every image), as
        :meth:`read` gives them, in the order the images are stored in the file.

        For a stage that reads many images: one membership check for all of them (the error
        names every missing id and the file), then the images in file order, so that a cold
        page cache is read front to back instead of seeking; each image is read as by
        :meth:`read` (module doc: why neither a thread decoding ahead nor one ``pread`` for
        several images).  ``dtype`` as for :meth:`read`.
        """
        self._check_resolution(resolution)
        out_dtype = self._check_dtype(dtype)
        self._index()
        wanted = self.ids if ids is None else list(ids)
        missing = [i for i in wanted if i not in self._position]
        if missing:
            raise MissingImageError(f"{len(missing)} image(s) are not in {self.label} "
                                    f"{self.path}: {some_ids(missing)}")
        for image_id in sorted(wanted, key=self._position.__getitem__):
            yield (image_id, *self._load(image_id, resolution, out_dtype))

    def _check_resolution(self, resolution: str) -> None:
        if resolution not in RESOLUTIONS:
            raise CamflowInputError(
                f"{self.label} {self.path}: unknown resolution {resolution!r}; use one of "
                f"{RESOLUTIONS}"
            )

    def _check_dtype(self, dtype: MapDtype | np.dtype | None) -> np.dtype | None:
        if dtype is None:
            return None
        try:
            out = np.dtype(dtype)
        except TypeError:
            out = None
        if out is None or out.name not in MAP_DTYPES:
            raise CamflowInputError(f"{self.label} {self.path}: maps are read as one of "
                                    f"{MAP_DTYPES}, not {dtype!r}")
        return out

    def _load(self, image_id: str, resolution: Resolution, dtype: np.dtype | None
              ) -> tuple[np.ndarray, np.ndarray]:
        """``read`` of an id known to be in the cache."""
        keys = self._image_keys(image_id)
        cams, finite = (self._table_maps(image_id, resolution, dtype)
                        or self._maps(image_id, resolution, dtype))
        if cams.ndim != 3 or cams.shape[0] != keys.size:
            raise self._unreadable(image_id, ValueError(
                f"its {resolution} maps have shape {cams.shape} for {keys.size} keys"))
        if not finite:
            raise CamflowInputError(
                f"{self.label} {self.path}: image {image_id!r} has NaN or infinite values in "
                f"its {resolution} maps (the writer refuses them: written by another program, "
                f"or damaged); {rebuild_hint(self.path)}")
        return keys, cams


class LabelCache(_H5Reader):
    """Lazy, fork-safe reader of a label cache written by :class:`LabelCacheWriter`."""

    kind = "labels"
    label = "label cache"

    def read(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, labels)`` of ``image_id``: int64 classes and the uint8 H×W label map."""
        if image_id not in self:
            raise MissingImageError(f"image {image_id!r} is not in {self.label} {self.path}")
        return self._image_keys(image_id), self._array(image_id, "labels")

    def read_scores(self, image_id: str) -> np.ndarray | None:
        """The float32 C×H×W score maps stored with ``image_id``'s labels, or None."""
        if image_id not in self:
            raise MissingImageError(f"image {image_id!r} is not in {self.label} {self.path}")
        if "scores" not in self._file()["images"][_group_name(image_id)]:
            return None
        return self._maps(image_id, "scores", np.dtype(np.float32))[0]


class SaliencyCacheWriter(CamCacheWriter):
    """Write a *saliency cache* atomically: the CAM cache's layout and conventions with
    ``kind`` "saliency" and one map per image (key 1 of the classes ``background``,
    ``salient``), at full resolution and at stride 4 (for the random walk's labels).

    >>> with SaliencyCacheWriter("saliency.h5", {"method": "c2am"}) as writer:
    ...     writer.add("2007_000032", saliency)          # float H×W in [0, 1]
    """

    kind = "saliency"
    label = "saliency cache"

    def __init__(self, path: str | os.PathLike, provenance: dict[str, Any] | None = None,
                 dtype: str = "float16") -> None:
        super().__init__(path, SALIENCY_CLASSES, provenance, dtype)

    def add(self, image_id: str, saliency: np.ndarray) -> None:  # type: ignore[override]
        """Store the H×W saliency map of ``image_id`` (and its stride-4 average pooling)."""
        sal = np.asarray(saliency, dtype=np.float32)
        if sal.ndim != 2:
            raise CamflowInputError(f"{self.label} {self.path}: image {image_id!r}: saliency "
                                    f"has shape {sal.shape}; expected H×W")
        h, w = sal.shape
        padded = np.zeros((-(-h // 4) * 4, -(-w // 4) * 4), dtype=np.float32)
        padded[:h, :w] = sal
        stride4 = padded.reshape(padded.shape[0] // 4, 4, padded.shape[1] // 4, 4).mean((1, 3))
        super().add(image_id, np.array([1]), stride4=stride4[None], full=sal[None])


class SaliencyCache(CamCache):
    """Lazy, fork-safe reader of a saliency cache (:class:`SaliencyCacheWriter`)."""

    kind = "saliency"
    label = "saliency cache"

    def saliency(self, image_id: str, resolution: Resolution = "full") -> np.ndarray:
        """The float32 saliency map of ``image_id`` (H×W, or the stride-4 grid)."""
        return self.read(image_id, resolution)[1][0]


def open_cache(path: str | os.PathLike) -> CamCache | LabelCache:
    """A :class:`CamCache`, :class:`LabelCache` or :class:`SaliencyCache`, whichever
    ``kind`` the file holds."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as h5:
            kind = str(h5.attrs.get("kind", "cams"))
    except OSError as exc:
        raise CamflowInputError(f"cache {path} is missing or not a readable HDF5 file: "
                                f"{exc}") from exc
    readers: dict[str, type[CamCache] | type[LabelCache]] = {
        LabelCache.kind: LabelCache, SaliencyCache.kind: SaliencyCache}
    return readers.get(kind, CamCache)(path)
