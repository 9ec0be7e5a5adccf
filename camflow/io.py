"""Small I/O helpers shared by every stage: atomic writes and image/mask reading.

Every output of the pipeline is written under a temporary name in the destination
directory and renamed into place, so an interrupted job never leaves a half-written
artifact that a later rule would trust.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError


class CamflowInputError(ValueError):
    """Bad input data or configuration; the message names the file, image id or key."""


def some_ids(ids: list[str], shown: int = 5) -> str:
    """The first ``shown`` ids, quoted, and how many more: for error messages."""
    text = ", ".join(repr(i) for i in ids[:shown])
    return text + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _open(path: Path, who: str) -> Image.Image:
    """Open and decode an image file; a missing or corrupt file is named in the error."""
    if not path.is_file():
        raise CamflowInputError(f"{who} does not exist")
    try:
        with Image.open(path) as im:
            im.load()
            return im
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise CamflowInputError(f"{who} is corrupt or unreadable: {exc}") from exc


def read_image(path: str | os.PathLike, image_id: str | None = None) -> np.ndarray:
    """Read an RGB image as ``uint8`` H×W×3; a missing or corrupt file names itself."""
    path = Path(path)
    im = _open(path, f"image {image_id!r} ({path})" if image_id else f"image {path}")
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def read_label_png(path: str | os.PathLike, image_id: str | None = None) -> np.ndarray:
    """Read a palette/greyscale label PNG as ``uint8`` H×W of class indices (255 = ignore)."""
    path = Path(path)
    who = f"mask of {image_id!r} ({path})" if image_id else f"mask {path}"
    im = _open(path, who)
    if im.mode not in ("P", "L"):
        raise CamflowInputError(
            f"{who} has mode {im.mode!r}; expected a palette (P) or greyscale (L) "
            "PNG of class indices"
        )
    return np.asarray(im, dtype=np.uint8)


@functools.cache
def _palette() -> tuple[int, ...]:
    return tuple(voc_palette())


def voc_palette() -> list[int]:
    """The PASCAL VOC colour map (256 entries, flattened RGB), used for every label PNG."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette.extend((r, g, b))
    return palette


def write_label_png(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write ``mask`` (uint8 class indices) as a VOC palette PNG, atomically."""
    im = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    im.putpalette(_palette())
    with atomic_path(path, ".png") as tmp:
        im.save(tmp, format="PNG")
