"""Generator of the embedded synthetic WSSS benchmark (a small VOC-like dataset).

The benchmark is built to provoke the two failure modes class activation maps are known
for, with exact ground truth to measure them:

* **part dominance → under-activation.** Every object is a large textured *body* with a
  small *part* on its boundary. Body textures are shared by several classes and also
  appear on unlabelled *distractor* blobs, so only the part (class-unique shape and
  colour) identifies the class. A classifier learns to look at the part; its CAM covers
  the part and misses most of the body.
* **context co-occurrence → over-activation.** The first ``num_context_classes`` classes
  usually come with a typical background context (water, grass, ...) that is labelled
  background; a CAM leaks onto it.

Layout written under ``root`` (see ``docs/synthetic.md``)::

    JPEGImages/{id}.jpg                 RGB images
    SegmentationClass/{id}.png          VOC palette masks (0 background, 1..K classes)
    ImageSets/Segmentation/{train_aug,train,val}.txt  (train ⊂ train_aug, as in VOC)
    cls_labels.json                     id -> sorted foreground classes visible in the mask
    meta.json                           class names + config; written last (completion marker)

Every image is drawn from ``np.random.default_rng([seed, split_code, index])``, so the
output does not depend on the number of worker processes.

Run ``python -m camflow.data.synthetic_generator --help`` for the command line.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from camflow.io import CamflowInputError, atomic_path, write_json, write_label_png, write_text
from camflow.runtime import parallel_map

FORMAT_VERSION = 1

#: Foreground class names (truncated to ``num_classes``); index i is class i + 1.
CLASS_NAMES: tuple[str, ...] = (
    "frog", "deer", "crab", "fox", "owl", "bee",
    "fish", "snail", "bat", "seal", "moth", "newt",
)
#: Class-unique part shape of class i + 1.
PART_SHAPES: tuple[str, ...] = (
    "circle", "triangle", "square", "star", "cross", "diamond",
    "ring", "hexagon", "crescent", "saltire", "halfdisc", "tee",
)
#: Class-unique part colour (RGB) of class i + 1.
PART_COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 25), (255, 225, 0), (0, 215, 235), (235, 0, 200),
    (255, 120, 0), (30, 70, 255), (255, 255, 255), (10, 10, 10),
    (150, 255, 0), (255, 140, 180), (130, 0, 200), (0, 160, 110),
)
#: Body textures, shared among classes: class i + 1 uses texture i % num_body_textures.
BODY_TEXTURES: tuple[str, ...] = ("stripes", "checker", "dots", "waves", "rings", "grid")
#: Base colour pair (dark, light) of each body texture.
TEXTURE_COLOURS: tuple[tuple[tuple[int, int, int], tuple[int, int, int]], ...] = (
    ((120, 80, 40), (215, 175, 120)),
    ((60, 60, 70), (175, 175, 185)),
    ((95, 110, 55), (225, 215, 170)),
    ((150, 60, 55), (225, 150, 125)),
    ((70, 50, 90), (190, 160, 200)),
    ((40, 80, 80), (150, 200, 190)),
)
#: Background contexts; context i goes with class i + 1 (for i < num_context_classes).
CONTEXTS: tuple[str, ...] = ("water", "grass", "sand", "snow")

SPLIT_CODES: dict[str, int] = {"train": 0, "val": 1}

# Layout acceptance: each labelled object must keep this much of its part and body visible
# after occlusion, else the layout is re-drawn (up to _MAX_LAYOUT_TRIES times).
_MIN_PART_VISIBLE = 0.5
_MIN_BODY_VISIBLE = 0.3
_MAX_LAYOUT_TRIES = 50
_PART_EXTENT = 1.2  # max extent of any (rotated) unit part shape, for in-frame placement
_PART_JITTER = (0.75, 1.35)  # per-object multiplier of part_scale
_TEXTURE_PERIOD = 0.075  # base texture period as a fraction of the image side


def _knob(default: int | float, help_text: str) -> Any:
    """A config field with a default and its ``--help`` text."""
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class SyntheticConfig:
    """Every knob of the synthetic benchmark; ``asdict(cfg)`` is stored in ``meta.json``."""

    num_classes: int = _knob(8, f"number K of foreground classes (1..{len(CLASS_NAMES)})")
    image_size: int = _knob(128, "side of the square images in pixels (>= 32)")
    num_train: int = _knob(3000, "number of training images (split train_aug)")
    num_train_eval: int = _knob(
        500, "the first N training images (at most num_train), also listed as split train "
        "for seed evaluation, as VOC's train is a subset of train_aug")
    num_val: int = _knob(500, "number of validation images")
    seed: int = _knob(0, "master random seed; image i of a split uses rng([seed, split, i])")
    max_objects: int = _knob(3, "objects per image are drawn uniformly from 1..max_objects")
    max_distractors: int = _knob(
        1, "unlabelled textured blobs per image, drawn uniformly from 0..max_distractors")
    num_body_textures: int = _knob(
        4, f"distinct body textures (1..{len(BODY_TEXTURES)}); foreground class c (1..K) uses "
        "texture (c - 1) % num_body_textures, so classes share textures")
    body_size_min: float = _knob(
        0.30, "smallest body size (equivalent diameter) as a fraction of the image side")
    body_size_max: float = _knob(
        0.55, "largest body size (equivalent diameter) as a fraction of the image side")
    body_aspect_min: float = _knob(
        0.65, "smallest body aspect ratio (short axis / long axis); elongated bodies "
        "(e.g. 0.3) reach beyond a part's receptive field along their long axis")
    body_aspect_max: float = _knob(1.0, "largest body aspect ratio (<= 1)")
    part_scale: float = _knob(
        0.11, "mean part area as a fraction of the body area (jittered x0.75..x1.35)")
    part_offset: float = _knob(
        0.25, "radial offset of the part's centre from the body boundary, in units of the "
        "part's size: positive outside the body (a head on a boundary), negative inside it "
        "(a face on the object; at about -1.3 the whole part lies on the body)")
    part_missing_prob: float = _knob(
        0.5, "probability that an object shows no part (a bird with its head turned away): "
        "then only its weakly informative body texture tells the class, so bodies get a "
        "moderate activation while parts dominate, as in real CAMs")
    max_decoys: int = _knob(
        0, "part-like decoys in the background per image, drawn uniformly from "
        "0..max_decoys: one class's part shape in another class's part colour, labelled "
        "background, under every object; they give the background a floor of weak, "
        "class-spread activation, as clutter does in real photographs")
    decoy_scale: float = _knob(
        0.02, "mean decoy area as a fraction of the image area (jittered x0.75..x1.35)")
    num_context_classes: int = _knob(
        2, f"classes 1..n that come with a background context ({', '.join(CONTEXTS)})")
    context_prob: float = _knob(0.8, "probability a context appears when its class is present")
    context_false_prob: float = _knob(
        0.1, "probability a context appears when its class is absent")
    noise_std: float = _knob(4.0, "std of the per-pixel Gaussian noise (0..255 scale)")
    jpeg_quality: int = _knob(95, "JPEG quality of the images (1..100, 4:4:4 chroma)")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            ok = isinstance(value, int) and not isinstance(value, bool)
            if isinstance(f.default, float):
                ok = ok or isinstance(value, float)
            if not ok:
                raise CamflowInputError(
                    f"synthetic config: {f.name} must be a {type(f.default).__name__}, "
                    f"got {value!r}"
                )
        self._check_range("num_classes", 1, len(CLASS_NAMES))
        self._check_range("image_size", 32, 4096)
        self._check_range("num_train", 0, 10**7)
        self._check_range("num_val", 0, 10**7)
        self._check_range("num_train_eval", 0, 10**7)
        self._check_range("max_objects", 1, 64)
        self._check_range("max_distractors", 0, 64)
        self._check_range("num_body_textures", 1, len(BODY_TEXTURES))
        self._check_range("body_size_min", 0.05, 1.0)
        self._check_range("body_size_max", self.body_size_min, 1.0)
        self._check_range("body_aspect_min", 0.1, 1.0)
        self._check_range("body_aspect_max", self.body_aspect_min, 1.0)
        self._check_range("part_scale", 0.005, 0.5)
        self._check_range("part_offset", -3.0, 2.0)
        self._check_range("part_missing_prob", 0.0, 1.0)
        self._check_range("max_decoys", 0, 64)
        self._check_range("decoy_scale", 0.001, 0.25)
        if self.max_decoys and self.num_classes < 2:
            raise CamflowInputError("synthetic config: max_decoys needs num_classes >= 2 "
                                    "(a decoy's colour comes from another class than its shape)")
        self._check_range("num_context_classes", 0, min(self.num_classes, len(CONTEXTS)))
        self._check_range("context_prob", 0.0, 1.0)
        self._check_range("context_false_prob", 0.0, 1.0)
        self._check_range("noise_std", 0.0, 64.0)
        self._check_range("jpeg_quality", 1, 100)

    def _check_range(self, name: str, lo: float, hi: float) -> None:
        value = getattr(self, name)
        if not lo <= value <= hi:
            raise CamflowInputError(
                f"synthetic config: {name}={value!r} is outside [{lo}, {hi}]"
            )


def class_names(cfg: SyntheticConfig) -> list[str]:
    """``["background", <K foreground names>]`` for ``cfg``."""
    return ["background", *CLASS_NAMES[: cfg.num_classes]]


def image_id(split: str, index: int) -> str:
    """Image id of image ``index`` of ``split``, e.g. ``train_00042``."""
    return f"{split}_{index:05d}"


# --------------------------------------------------------------------------- geometry


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Read-only pixel-centre coordinates ``(x, y)``, float32 ``size × size``."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + np.float32(0.5)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _window(size: int, cx: float, cy: float, half: float) -> tuple[slice, slice]:
    """Row and column slices covering the square of half-side ``half`` around ``(cx, cy)``."""
    def span(c: float) -> slice:
        lo = min(max(int(math.floor(c - half)), 0), size)
        return slice(lo, min(max(int(math.ceil(c + half)), lo), size))

    return span(cy), span(cx)


def _rotate(x: np.ndarray, y: np.ndarray, cx: float, cy: float,
            angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates relative to ``(cx, cy)`` in a frame rotated by ``angle`` radians."""
    c, s = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    dx, dy = x - np.float32(cx), y - np.float32(cy)
    return dx * c + dy * s, dy * c - dx * s


@dataclass(frozen=True)
class _Blob:
    """A smooth star-convex blob: a perturbed circle squashed into an ellipse and rotated."""

    cx: float
    cy: float
    radius: float
    aspect: float
    angle: float
    amps: tuple[float, ...]
    phases: tuple[float, ...]

    _HARMONICS = (2, 3, 4)

    def radius_at(self, theta: np.ndarray | float) -> np.ndarray | float:
        """Radius (in the un-squashed frame) at polar angle ``theta``."""
        r = 1.0
        for k, a, p in zip(self._HARMONICS, self.amps, self.phases, strict=True):
            r = r + a * np.cos(k * theta + p)
        return self.radius * r

    @property
    def area(self) -> float:
        """Exact area in pixels, including any part outside the frame."""
        return math.pi * self.radius**2 * self.aspect * (1 + 0.5 * sum(a * a for a in self.amps))

    def window(self, size: int) -> tuple[slice, slice]:
        """Row and column slices of the frame that contain the whole blob."""
        half = self.radius * (1 + sum(self.amps)) + 1
        return _window(size, self.cx, self.cy, half)

    def mask(self, size: int) -> np.ndarray:
        """Boolean ``size × size`` mask of the blob clipped to the frame."""
        out = np.zeros((size, size), bool)
        rows, cols = self.window(size)
        x, y = _grid(size)
        u, v = _rotate(x[rows, cols], y[rows, cols], self.cx, self.cy, self.angle)
        v = v / np.float32(self.aspect)
        rho = np.hypot(u, v)
        inv = np.float32(1.0) / np.maximum(rho, np.float32(1e-6))
        c1, s1 = u * inv, v * inv  # cos and sin of the polar angle, no arctan needed
        c2, s2 = c1 * c1 - s1 * s1, 2 * c1 * s1
        c3, s3 = c2 * c1 - s2 * s1, s2 * c1 + c2 * s1
        c4, s4 = c2 * c2 - s2 * s2, 2 * c2 * s2
        r = np.float32(1.0)
        for (ck, sk), a, p in zip(((c2, s2), (c3, s3), (c4, s4)), self.amps, self.phases,
                                  strict=True):
            r = r + np.float32(a * math.cos(p)) * ck - np.float32(a * math.sin(p)) * sk
        out[rows, cols] = rho <= np.float32(self.radius) * r
        return out

    def boundary_point(self, theta: float, offset: float) -> tuple[float, float]:
        """Image point ``offset`` pixels outside the boundary along polar angle ``theta``."""
        rho = float(self.radius_at(theta)) + offset
        u, v = rho * math.cos(theta), rho * math.sin(theta) * self.aspect
        c, s = math.cos(self.angle), math.sin(self.angle)
        return self.cx + u * c - v * s, self.cy + u * s + v * c


def _sample_blob(rng: np.random.Generator, cfg: SyntheticConfig) -> _Blob:
    """A random body-sized blob somewhere in (or partly out of) the frame."""
    size = cfg.image_size
    diameter = rng.uniform(cfg.body_size_min, cfg.body_size_max) * size
    aspect = rng.uniform(cfg.body_aspect_min, cfg.body_aspect_max)
    amps = tuple(float(a) for a in rng.uniform(0.0, 0.1, 3))
    phases = tuple(float(p) for p in rng.uniform(0.0, 2 * math.pi, 3))
    norm = 1 + 0.5 * sum(a * a for a in amps)
    radius = diameter / 2 / math.sqrt(aspect * norm)  # so that the area is pi (d/2)^2
    cx, cy = rng.uniform(0.1, 0.9, 2) * size
    return _Blob(float(cx), float(cy), radius, float(aspect),
                 float(rng.uniform(0, math.pi)), amps, phases)


# --------------------------------------------------------------------------- part shapes

_SQRT3 = math.sqrt(3.0)


def _shape_mask(kind: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Membership of unit-scale shape ``kind`` at coordinates ``(a, b)`` (b points down)."""
    r2 = a * a + b * b
    aa, ab = np.abs(a), np.abs(b)
    if kind == "circle":
        return r2 <= 1.0
    if kind == "triangle":
        return (b <= 0.5) & (b >= -1.0 + _SQRT3 * aa)
    if kind == "square":
        return np.maximum(aa, ab) <= 0.85
    if kind == "star":
        t = (np.arctan2(b, a) * (5 / (2 * math.pi))) % 1.0
        return np.sqrt(r2) <= 0.42 + 0.58 * np.abs(2 * t - 1)
    if kind == "cross":
        return ((aa <= 0.33) & (ab <= 1.0)) | ((ab <= 0.33) & (aa <= 1.0))
    if kind == "diamond":
        return aa + ab <= 1.1
    if kind == "ring":
        return (r2 <= 1.0) & (r2 >= 0.25)
    if kind == "hexagon":
        h1 = np.abs(0.5 * a + 0.5 * _SQRT3 * b)
        h2 = np.abs(0.5 * a - 0.5 * _SQRT3 * b)
        return np.maximum(aa, np.maximum(h1, h2)) <= 0.9
    if kind == "crescent":
        return (r2 <= 1.0) & ((a - 0.6) ** 2 + b * b > 0.75**2)
    if kind == "saltire":
        return _shape_mask("cross", (a + b) / math.sqrt(2), (a - b) / math.sqrt(2))
    if kind == "halfdisc":
        return (r2 <= 1.0) & (b >= -0.1)
    if kind == "tee":
        return ((np.abs(b + 0.7) <= 0.3) & (aa <= 1.0)) | ((aa <= 0.3) & (ab <= 1.0))
    raise ValueError(f"unknown part shape {kind!r}")


@functools.cache
def _unit_area(kind: str) -> float:
    """Area of unit-scale shape ``kind`` (numerically, on a fine grid)."""
    n, half = 401, 1.3
    step = 2 * half / n
    coords = (np.arange(n, dtype=np.float64) + 0.5) * step - half
    b, a = np.meshgrid(coords, coords, indexing="ij")
    return float(_shape_mask(kind, a, b).sum() * step * step)


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class SyntheticObject:
    """One blob of an image, in paint order.

    ``class_index`` is 1..K for an object and 0 for a distractor (no part). ``body`` and
    ``part`` are boolean masks clipped to the frame but *before* occlusion by later blobs;
    ``body_area`` is the exact body area including anything outside the frame.
    """

    class_index: int
    texture: int
    blob: _Blob
    body: np.ndarray
    part: np.ndarray | None

    @property
    def body_area(self) -> float:
        return self.blob.area

    @property
    def footprint(self) -> np.ndarray:
        """Pixels this blob paints (body plus part)."""
        return self.body if self.part is None else self.body | self.part


def _place_part(rng: np.random.Generator, blob: _Blob, class_index: int,
                cfg: SyntheticConfig) -> np.ndarray | None:
    """Mask of the class-unique part at ``part_offset`` part sizes outside ``blob``'s boundary
    (inside when negative), fully in frame, or ``None``."""
    kind = PART_SHAPES[class_index - 1]
    area = cfg.part_scale * rng.uniform(*_PART_JITTER) * blob.area
    scale = math.sqrt(area / _unit_area(kind))
    margin = _PART_EXTENT * scale
    size = cfg.image_size
    tilt = rng.uniform(-math.pi / 9, math.pi / 9)
    for theta in rng.uniform(0, 2 * math.pi, 24):
        px, py = blob.boundary_point(float(theta), cfg.part_offset * scale)
        if margin <= px <= size - margin and margin <= py <= size - margin:
            rows, cols = _window(size, px, py, margin + 1)
            x, y = _grid(size)
            a, b = _rotate(x[rows, cols], y[rows, cols], px, py, tilt)
            inv = np.float32(1.0 / scale)
            part = np.zeros((size, size), bool)
            part[rows, cols] = _shape_mask(kind, a * inv, b * inv)
            return part
    return None


def _sample_object(rng: np.random.Generator, class_index: int,
                   cfg: SyntheticConfig) -> SyntheticObject:
    """A labelled object: body blob with its class texture plus an in-frame part, which is
    left out with probability ``part_missing_prob``."""
    texture = (class_index - 1) % cfg.num_body_textures
    for _ in range(100):
        blob = _sample_blob(rng, cfg)
        part = _place_part(rng, blob, class_index, cfg)
        if part is not None and part.any():
            if rng.random() < cfg.part_missing_prob:
                part = None
            return SyntheticObject(class_index, texture, blob, blob.mask(cfg.image_size), part)
    raise RuntimeError("could not place a part in frame; is image_size too small?")


def _sample_distractor(rng: np.random.Generator, cfg: SyntheticConfig) -> SyntheticObject:
    """An unlabelled body-textured blob without a part."""
    blob = _sample_blob(rng, cfg)
    texture = int(rng.integers(cfg.num_body_textures))
    return SyntheticObject(0, texture, blob, blob.mask(cfg.image_size), None)


def _visibility_ok(objects: Sequence[SyntheticObject]) -> bool:
    """Whether every labelled object keeps enough of its part and body after occlusion."""
    covered = np.zeros_like(objects[0].body)
    for obj in reversed(objects):  # topmost first
        if obj.class_index > 0:
            part = obj.part if obj.part is not None else np.zeros_like(obj.body)
            body_own = obj.body & ~part
            body_vis = np.count_nonzero(body_own & ~covered)
            if (np.count_nonzero(part & ~covered) < _MIN_PART_VISIBLE * np.count_nonzero(part)
                    or body_vis < _MIN_BODY_VISIBLE * max(np.count_nonzero(body_own), 1)):
                return False
        covered |= obj.footprint
    return True


def _sample_layout(rng: np.random.Generator, cfg: SyntheticConfig) -> list[SyntheticObject]:
    """Objects and distractors in paint order (later ones occlude earlier ones)."""
    n_obj = int(rng.integers(1, cfg.max_objects + 1))
    n_dis = int(rng.integers(0, cfg.max_distractors + 1))
    classes = rng.integers(1, cfg.num_classes + 1, n_obj)
    objects: list[SyntheticObject] = []
    for _ in range(_MAX_LAYOUT_TRIES):  # counts and classes fixed; only geometry re-drawn
        objects = [_sample_object(rng, int(c), cfg) for c in classes]
        objects += [_sample_distractor(rng, cfg) for _ in range(n_dis)]
        order = rng.permutation(len(objects))
        objects = [objects[i] for i in order]
        if _visibility_ok(objects):
            break
    return objects  # after too many tries the last layout stands; labels come from the mask


def _sample_contexts(rng: np.random.Generator, cfg: SyntheticConfig,
                     present: set[int]) -> tuple[int, ...]:
    """Classes (1..num_context_classes) whose background context is painted."""
    draws = rng.random(cfg.num_context_classes)
    return tuple(
        c for c, u in zip(range(1, cfg.num_context_classes + 1), draws, strict=True)
        if u < (cfg.context_prob if c in present else cfg.context_false_prob)
    )


# --------------------------------------------------------------------------- painting


def _soft(s: np.ndarray) -> np.ndarray:
    """Map a wave in [-1, 1] to a slightly anti-aliased two-level weight in [0, 1]."""
    return np.clip(0.5 + 1.5 * s, 0.0, 1.0)


def _texture_weight(kind: str, u: np.ndarray, v: np.ndarray, period: float,
                    phase: float) -> np.ndarray:
    """Two-level pattern weight of body texture ``kind`` at rotated coordinates ``(u, v)``."""
    pu, pv = u / np.float32(period) + np.float32(phase), v / np.float32(period)
    tau = np.float32(2 * math.pi)
    if kind == "stripes":
        return _soft(np.sin(tau * pu))
    if kind == "checker":
        return ((np.floor(pu) + np.floor(pv)) % 2).astype(np.float32)
    if kind == "dots":
        du, dv = pu % 1 - 0.5, (pv + phase) % 1 - 0.5
        return (du * du + dv * dv < 0.09).astype(np.float32)
    if kind == "waves":
        return _soft(np.sin(tau * (pu + 0.35 * np.sin(tau * pv / 2.5))))
    if kind == "rings":
        return _soft(np.sin(tau * (np.hypot(pu - phase, pv) + phase)))
    if kind == "grid":
        du, dv = np.abs(pu % 1 - 0.5), np.abs((pv + phase) % 1 - 0.5)
        return ((du > 0.33) | (dv > 0.33)).astype(np.float32)
    raise ValueError(f"unknown body texture {kind!r}")


def _jitter_colour(rng: np.random.Generator, rgb: Sequence[int], amount: float) -> np.ndarray:
    """``rgb`` plus uniform per-channel jitter, as float32."""
    return np.asarray(rgb, np.float32) + rng.uniform(-amount, amount, 3).astype(np.float32)


def _paint_body(rng: np.random.Generator, image: np.ndarray, obj: SyntheticObject,
                size: int) -> None:
    """Fill ``obj.body`` in ``image`` with its texture (per-image jittered)."""
    kind = BODY_TEXTURES[obj.texture]
    dark, light = TEXTURE_COLOURS[obj.texture]
    c0, c1 = _jitter_colour(rng, dark, 18), _jitter_colour(rng, light, 18)
    period = _TEXTURE_PERIOD * size * rng.uniform(0.8, 1.25)
    rows, cols = obj.blob.window(size)
    x, y = _grid(size)
    u, v = _rotate(x[rows, cols], y[rows, cols], obj.blob.cx, obj.blob.cy,
                   rng.uniform(0, math.pi))
    body = obj.body[rows, cols]
    w = _texture_weight(kind, u, v, period, float(rng.random()))[body]
    image[rows, cols][body] = c0 + (c1 - c0) * w[:, None]


def _paint_part(rng: np.random.Generator, image: np.ndarray, obj: SyntheticObject) -> None:
    """Fill ``obj.part`` with its class colour (slightly jittered)."""
    if obj.part is not None:
        image[obj.part] = _jitter_colour(rng, PART_COLOURS[obj.class_index - 1], 12)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random two-colour gradient plus low-amplitude grey grain, float32 H×W×3."""
    c0, c1 = rng.uniform(40, 215, (2, 3)).astype(np.float32)
    x, y = _grid(size)
    angle = rng.uniform(0, 2 * math.pi)
    t = (x * math.cos(angle) + y * math.sin(angle)) / (size * math.sqrt(2)) + 0.5
    image = c0 + (c1 - c0) * np.clip(t, 0, 1)[..., None]
    grain = rng.standard_normal((size, size, 1), dtype=np.float32) * np.float32(3)
    return image + grain


def _context_pattern(rng: np.random.Generator, name: str, size: int) -> np.ndarray:
    """Full-frame float32 H×W×3 texture of background context ``name``."""
    x, y = _grid(size)
    tau = 2 * math.pi
    period = size * 0.05 * rng.uniform(0.8, 1.25)
    if name == "water":
        base, hi = (35, 85, 165), (150, 200, 240)
        shift = rng.uniform(0, tau)
        wave = np.sin(tau * (y / period + 0.3 * np.sin(tau * x / (4 * period) + shift)))
        w = (wave > 0.75).astype(np.float32)
    elif name == "grass":
        base, hi = (45, 120, 35), (120, 195, 60)
        column = np.floor(x + 0.25 * y).astype(np.int64) % size
        w = (rng.random(size)[column] > 0.55).astype(np.float32)
        w *= np.sin(tau * y / (3 * period) + rng.random(size)[column] * tau) > -0.3
    elif name == "sand":
        base, hi = (205, 180, 120), (165, 140, 90)
        dunes = np.sin(tau * (y / (2 * period) + 0.2 * np.sin(tau * x / (6 * period))))
        w = np.clip(0.3 * dunes + (rng.random((size, size)) > 0.85), 0, 1)
    elif name == "snow":
        base, hi = (232, 238, 246), (175, 190, 215)
        w = 0.5 + 0.5 * np.sin(tau * (x + 0.5 * y) / (5 * period) + rng.uniform(0, tau))
        w = 0.6 * w * (rng.random((size, size)) > 0.5)
    else:
        raise ValueError(f"unknown context {name!r}")
    c0, c1 = _jitter_colour(rng, base, 12), _jitter_colour(rng, hi, 12)
    return c0 + (c1 - c0) * np.asarray(w, np.float32)[..., None]


def _paint_contexts(rng: np.random.Generator, image: np.ndarray, contexts: Sequence[int],
                    size: int) -> None:
    """Fill the ground (below a wavy horizon) with the active contexts, left to right."""
    if not contexts:
        return
    x, y = _grid(size)
    horizon = size * rng.uniform(0.5, 0.68) + size * 0.03 * np.sin(
        2 * math.pi * x / (size * rng.uniform(0.5, 1.2)) + rng.uniform(0, 2 * math.pi))
    ground = y > horizon
    cuts = np.sort(rng.uniform(0.35, 0.65, len(contexts) - 1)) * size
    strip = np.searchsorted(cuts, x[0])[None, :].repeat(size, axis=0)
    for i, c in enumerate(contexts):
        region = ground & (strip == i)
        image[region] = _context_pattern(rng, CONTEXTS[c - 1], size)[region]


def _paint_decoys(cfg: SyntheticConfig, image: np.ndarray, split: str, index: int) -> None:
    """Paint 0..``max_decoys`` decoys: part shape of class a in the part colour of class
    b != a, anywhere in the frame. They draw from their own random stream, so a benchmark
    without decoys is unchanged by this knob."""
    if not cfg.max_decoys:
        return
    rng = np.random.default_rng([cfg.seed, SPLIT_CODES[split], index, 1])
    size = cfg.image_size
    x, y = _grid(size)
    for _ in range(int(rng.integers(0, cfg.max_decoys + 1))):
        shape_class = int(rng.integers(cfg.num_classes))
        colour_class = (shape_class + int(rng.integers(1, cfg.num_classes))) % cfg.num_classes
        kind = PART_SHAPES[shape_class]
        area = cfg.decoy_scale * rng.uniform(*_PART_JITTER) * size * size
        scale = math.sqrt(area / _unit_area(kind))
        cx, cy = rng.uniform(0, size, 2)
        rows, cols = _window(size, cx, cy, _PART_EXTENT * scale + 1)
        a, b = _rotate(x[rows, cols], y[rows, cols], cx, cy, rng.uniform(-math.pi / 9, math.pi / 9))
        inv = np.float32(1.0 / scale)
        inside = _shape_mask(kind, a * inv, b * inv)
        image[rows, cols][inside] = _jitter_colour(rng, PART_COLOURS[colour_class], 12)


# --------------------------------------------------------------------------- one image


@dataclass(frozen=True)
class SyntheticSample:
    """One rendered image with its ground truth and generator internals.

    ``labels`` are the foreground classes visible in ``mask``; ``contexts`` the classes
    whose background context was painted; ``objects`` every blob in paint order.
    """

    image: np.ndarray
    mask: np.ndarray
    labels: tuple[int, ...]
    contexts: tuple[int, ...]
    objects: tuple[SyntheticObject, ...]


def render_sample(cfg: SyntheticConfig, split: str, index: int) -> SyntheticSample:
    """Render image ``index`` of ``split``, deterministically from ``cfg.seed``."""
    if split not in SPLIT_CODES:
        raise CamflowInputError(f"synthetic: unknown split {split!r}; known: {list(SPLIT_CODES)}")
    rng = np.random.default_rng([cfg.seed, SPLIT_CODES[split], index])
    size = cfg.image_size
    objects = _sample_layout(rng, cfg)
    mask = np.zeros((size, size), np.uint8)
    for obj in objects:
        mask[obj.footprint] = obj.class_index
    labels = tuple(int(v) for v in np.unique(mask) if v > 0)
    contexts = _sample_contexts(rng, cfg, set(labels))

    image = _background(rng, size)
    _paint_contexts(rng, image, contexts, size)
    _paint_decoys(cfg, image, split, index)
    for obj in objects:
        _paint_body(rng, image, obj, size)
        _paint_part(rng, image, obj)
    if cfg.noise_std > 0:
        image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(cfg.noise_std)
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return SyntheticSample(pixels, mask, labels, contexts, tuple(objects))


# --------------------------------------------------------------------------- dataset


def _write_sample(task: tuple[str, int], cfg: SyntheticConfig,
                  out: Path) -> tuple[str, list[int]]:
    """Render one image and write its JPEG and mask under ``out``; return id and labels."""
    split, index = task
    sample = render_sample(cfg, split, index)
    iid = image_id(split, index)
    with atomic_path(out / "JPEGImages" / f"{iid}.jpg", ".jpg", sweep=False) as tmp:
        Image.fromarray(sample.image).save(
            tmp, format="JPEG", quality=cfg.jpeg_quality, subsampling=0)
    write_label_png(out / "SegmentationClass" / f"{iid}.png", sample.mask)
    return iid, list(sample.labels)


def _run_tasks(tasks: list[tuple[str, int]], cfg: SyntheticConfig, out: Path,
               workers: int, progress: bool) -> list[tuple[str, list[int]]]:
    """Render and write every task, in order, with ``workers`` processes."""
    work = functools.partial(_write_sample, cfg=cfg, out=out)
    return list(parallel_map(work, tasks, workers, progress, "synthetic"))


def _populate(out: Path, cfg: SyntheticConfig, workers: int, progress: bool) -> None:
    """Write the whole dataset into directory ``out``; ``meta.json`` comes last."""
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    splits = {"train": cfg.num_train, "val": cfg.num_val}
    tasks = [(split, i) for split, n in splits.items() for i in range(n)]
    labels = dict(_run_tasks(tasks, cfg, out, workers, progress))
    lists = {"train_aug": ("train", cfg.num_train),
             "train": ("train", min(cfg.num_train_eval, cfg.num_train)),
             "val": ("val", cfg.num_val)}
    for name, (split, n) in lists.items():
        ids = [image_id(split, i) for i in range(n)]
        write_text(out / "ImageSets" / "Segmentation" / f"{name}.txt",
                   "".join(f"{i}\n" for i in ids))
    write_json(out / "cls_labels.json", labels)
    write_json(out / "meta.json", {
        "class_names": class_names(cfg),
        "config": asdict(cfg),
        "format_version": FORMAT_VERSION,
    })


def _swap_into_place(staging: Path, root: Path) -> None:
    """Replace ``root`` by ``staging``; the old root is moved aside first, then deleted."""
    old = None
    if root.exists() or root.is_symlink():
        old = root.with_name(f"{root.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(root, old)
    try:
        os.replace(staging, root)
    except BaseException:
        if old is not None:
            os.replace(old, root)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def generate_synthetic(root: str | Path, cfg: SyntheticConfig, workers: int = 1,
                       progress: bool = True) -> None:
    """Generate the benchmark under ``root``, replacing any previous content atomically.

    Everything is written to ``{root}.partial-<pid>`` beside ``root`` and renamed onto
    ``root`` at the end; on failure the staging directory is removed and an existing
    ``root`` is left untouched; the staging folders of a killed earlier run are removed
    first. ``workers <= 0`` uses every CPU. The output is identical
    for any number of workers.
    """
    root = Path(os.path.abspath(root))
    if workers <= 0:
        workers = os.cpu_count() or 1
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.with_name(f"{root.name}.partial-{os.getpid()}")
    # what a killed earlier run left (SIGKILL skips the cleanup below): one job per root
    for stale in (*root.parent.glob(f"{root.name}.partial-*"),
                  *root.parent.glob(f"{root.name}.old-*")):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        _populate(staging, cfg, workers, progress)
        _swap_into_place(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """Argument parser: ``--root``, ``--workers``, ``--no-progress`` and one flag per knob."""
    parser = argparse.ArgumentParser(
        prog="python -m camflow.data.synthetic_generator",
        description="Generate the camflow synthetic WSSS benchmark (VOC-like layout).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--root", required=True, type=Path,
                        help="output directory (replaced atomically)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes (0 = all CPUs); does not change the output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    for f in fields(SyntheticConfig):
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name,
                            type=type(f.default), default=f.default,
                            help=f.metadata["help"].replace("%", "%%"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = SyntheticConfig(**{f.name: getattr(args, f.name) for f in fields(SyntheticConfig)})
    except CamflowInputError as exc:
        parser.error(str(exc))
    start = time.perf_counter()
    generate_synthetic(args.root, cfg, workers=args.workers, progress=not args.no_progress)
    n = cfg.num_train + cfg.num_val
    print(f"wrote {n} images ({cfg.num_train} train, {cfg.num_val} val) to {args.root} "
          f"in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
