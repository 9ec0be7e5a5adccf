"""Tests of the synthetic benchmark generator (tiny configurations, a few seconds)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import camflow.data.synthetic_generator as gen
from camflow.data.synthetic_generator import (
    CLASS_NAMES,
    SyntheticConfig,
    generate_synthetic,
    image_id,
    main,
    render_sample,
)
from camflow.io import CamflowInputError, read_label_png

TINY = SyntheticConfig(image_size=64, num_train=16, num_val=8, seed=3)


def _ids(root: Path, split: str) -> list[str]:
    return (root / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path → bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "tiny"
    generate_synthetic(root, TINY, progress=False)
    return root


def test_layout_matches_ids(tiny_root: Path) -> None:
    train, val = _ids(tiny_root, "train"), _ids(tiny_root, "val")
    assert train == [image_id("train", i) for i in range(16)]
    assert val == [f"val_{i:05d}" for i in range(8)]
    assert train[0] == "train_00000"
    labels = json.loads((tiny_root / "cls_labels.json").read_text())
    assert sorted(labels) == sorted(train + val)
    for iid in train + val:
        with Image.open(tiny_root / "JPEGImages" / f"{iid}.jpg") as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (64, 64))
        with Image.open(tiny_root / "SegmentationClass" / f"{iid}.png") as im:
            assert (im.format, im.mode, im.size) == ("PNG", "P", (64, 64))
    files = {p.stem for p in (tiny_root / "JPEGImages").iterdir()}
    assert files == set(train + val)
    meta = json.loads((tiny_root / "meta.json").read_text())
    assert meta == {
        "class_names": ["background", *CLASS_NAMES[:8]],
        "config": asdict(TINY),
        "format_version": 1,
    }
    assert SyntheticConfig(**meta["config"]) == TINY
    assert [p.name for p in tiny_root.parent.iterdir()] == ["tiny"]  # no staging left


def test_labels_are_visible_mask_classes(tiny_root: Path) -> None:
    labels = json.loads((tiny_root / "cls_labels.json").read_text())
    seen = set()
    for iid, lab in labels.items():
        mask = read_label_png(tiny_root / "SegmentationClass" / f"{iid}.png")
        values = np.unique(mask)
        assert values.max() <= TINY.num_classes
        assert lab == [int(v) for v in values if v > 0]
        assert lab, f"{iid} has no foreground class"
        seen.update(lab)
    assert len(seen) >= 4


def test_same_seed_is_byte_identical_and_worker_independent(
        tiny_root: Path, tmp_path: Path) -> None:
    generate_synthetic(tmp_path / "again", TINY, progress=False)
    generate_synthetic(tmp_path / "pool", TINY, workers=2, progress=False)
    reference = _snapshot(tiny_root)
    assert _snapshot(tmp_path / "again") == reference
    assert _snapshot(tmp_path / "pool") == reference


def test_different_seed_differs(tiny_root: Path, tmp_path: Path) -> None:
    other = replace(TINY, seed=TINY.seed + 1)
    generate_synthetic(tmp_path / "other", other, progress=False)
    a, b = _snapshot(tiny_root), _snapshot(tmp_path / "other")
    masks = [k for k in a if k.startswith("SegmentationClass")]
    assert sum(a[k] != b[k] for k in masks) >= len(masks) - 1
    assert a["cls_labels.json"] != b["cls_labels.json"]


def test_render_sample_is_deterministic_per_image() -> None:
    a = render_sample(TINY, "val", 5)
    b = render_sample(replace(TINY, num_train=1000, num_val=1), "val", 5)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.mask, render_sample(TINY, "train", 5).mask)


def test_parts_are_small_relative_to_bodies() -> None:
    cfg = replace(TINY, image_size=96, part_missing_prob=0.0)
    ratios, part_share = [], []
    for i in range(60):
        sample = render_sample(cfg, "train", i)
        for obj in sample.objects:
            if obj.class_index == 0:
                assert obj.part is None  # distractors have no part
                continue
            assert obj.texture == (obj.class_index - 1) % cfg.num_body_textures
            assert obj.part is not None and obj.part.any()
            body = np.count_nonzero(obj.body)
            if body >= 0.95 * obj.body_area:  # body essentially inside the frame
                ratios.append(np.count_nonzero(obj.part) / body)
        for c in sample.labels:  # part pixels are a small share of a class's visible pixels
            parts = np.zeros_like(sample.mask, dtype=bool)
            for obj in sample.objects:
                if obj.class_index == c and obj.part is not None:
                    parts |= obj.part
            part_share.append(np.count_nonzero(parts & (sample.mask == c))
                              / np.count_nonzero(sample.mask == c))
    assert len(ratios) > 30
    assert 0.08 <= float(np.mean(ratios)) <= 0.15
    assert 0.04 <= min(ratios) and max(ratios) <= 0.22
    assert float(np.median(part_share)) < 0.2


def test_bodies_are_large() -> None:
    cfg = replace(TINY, image_size=96)
    diameters = [2 * np.sqrt(o.body_area / np.pi) / cfg.image_size
                 for i in range(30) for o in render_sample(cfg, "train", i).objects]
    assert min(diameters) >= 0.29 and max(diameters) <= 0.56


def test_context_co_occurs_with_its_class() -> None:
    cfg = replace(TINY, image_size=48)
    hits = {(present, shown): 0 for present in (True, False) for shown in (True, False)}
    for i in range(200):
        sample = render_sample(cfg, "train", i)
        assert set(sample.contexts) <= {1, 2}
        for c in (1, 2):
            hits[(c in sample.labels, c in sample.contexts)] += 1
    with_class = hits[(True, True)] / (hits[(True, True)] + hits[(True, False)])
    without = hits[(False, True)] / (hits[(False, True)] + hits[(False, False)])
    assert with_class > 0.6 and without < 0.25 and with_class > without + 0.4


def test_context_pixels_are_background() -> None:
    cfg = replace(TINY, image_size=48, context_prob=1.0, context_false_prob=1.0,
                  max_objects=1, max_distractors=0)
    no_ctx = replace(cfg, context_prob=0.0, context_false_prob=0.0)
    for i in range(5):
        with_ctx, plain = render_sample(cfg, "train", i), render_sample(no_ctx, "train", i)
        assert with_ctx.contexts == (1, 2) and plain.contexts == ()
        assert np.array_equal(with_ctx.mask, plain.mask)


def test_failed_generation_keeps_previous_root(tiny_root: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "synth"
    generate_synthetic(root, TINY, progress=False)
    before = _snapshot(root)
    real = gen.render_sample

    def flaky(cfg: SyntheticConfig, split: str, index: int) -> gen.SyntheticSample:
        if index == 5:
            raise RuntimeError("simulated crash")
        return real(cfg, split, index)

    monkeypatch.setattr(gen, "render_sample", flaky)
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate_synthetic(root, replace(TINY, seed=99), progress=False)
    assert _snapshot(root) == before
    assert [p.name for p in tmp_path.iterdir()] == ["synth"]


def test_regeneration_replaces_root(tmp_path: Path) -> None:
    root = tmp_path / "synth"
    root.mkdir()
    (root / "stale.txt").write_text("old")
    for leftover in ("synth.partial-99999", "synth.old-99998"):   # a SIGKILLed earlier run
        (tmp_path / leftover / "JPEGImages").mkdir(parents=True)
    cfg = replace(TINY, num_train=3, num_val=2, image_size=32)
    generate_synthetic(root, cfg, progress=False)
    assert not (root / "stale.txt").exists()
    assert len(_ids(root, "train")) == 3 and len(_ids(root, "val")) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["synth"]


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "cli"
    assert main(["--root", str(root), "--num-train", "4", "--num-val", "2",
                 "--image-size", "40", "--part-scale", "0.1", "--no-progress"]) == 0
    meta = json.loads((root / "meta.json").read_text())
    assert meta["config"]["num_train"] == 4 and meta["config"]["part_scale"] == 0.1
    assert meta["config"]["image_size"] == 40
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "--num-context-classes" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--root", str(root), "--num-classes", "99"])
    assert exc.value.code == 2


@pytest.mark.parametrize("bad", [
    {"num_classes": 0}, {"num_classes": len(CLASS_NAMES) + 1}, {"image_size": 8},
    {"num_context_classes": 5}, {"context_prob": 1.5}, {"body_size_min": 0.6},
    {"num_body_textures": 7}, {"max_objects": 0}, {"num_train": 2.5},
])
def test_config_validation(bad: dict) -> None:
    with pytest.raises(CamflowInputError):
        SyntheticConfig(**bad)


def test_part_missing_prob_hides_parts_at_that_rate() -> None:
    cfg = replace(TINY, image_size=96, part_missing_prob=0.3)
    objects = [o for i in range(80) for o in render_sample(cfg, "train", i).objects
               if o.class_index > 0]
    missing = sum(o.part is None for o in objects) / len(objects)
    assert len(objects) > 100
    assert 0.2 < missing < 0.4
    assert all(o.part is not None for i in range(20) for o in
               render_sample(replace(cfg, part_missing_prob=0.0), "train", i).objects
               if o.class_index > 0)


@pytest.mark.parametrize(("offset", "lo", "hi"), [(0.25, 0.1, 0.5), (-1.3, 0.98, 1.0)])
def test_part_offset_puts_the_part_on_the_boundary_or_on_the_body(offset: float, lo: float,
                                                                  hi: float) -> None:
    """The default part straddles the boundary (a head); a negative offset puts it on the
    body (synthetic_parts), so the halo of a CAM peak falls on the object."""
    cfg = replace(TINY, image_size=96, part_missing_prob=0.0, part_offset=offset)
    share = [np.count_nonzero(o.part & o.body) / np.count_nonzero(o.part)
             for i in range(40) for o in render_sample(cfg, "train", i).objects
             if o.class_index > 0]
    assert lo < float(np.mean(share)) <= hi


def test_decoys_paint_part_colours_on_the_background_and_nothing_else() -> None:
    """Decoys (a class's part shape in another class's colour) change only background pixels
    of the image, never the mask; without them an image is unchanged by the knob."""
    plain = replace(TINY, image_size=96, max_distractors=0, num_context_classes=0)
    decoyed = replace(plain, max_decoys=6, decoy_scale=0.02)
    colours = np.asarray(gen.PART_COLOURS[: plain.num_classes], np.float64)
    changed_pixels = 0
    for i in range(12):
        a, b = render_sample(plain, "train", i), render_sample(decoyed, "train", i)
        assert np.array_equal(a.mask, b.mask) and a.labels == b.labels
        diff = np.any(a.image != b.image, axis=2)
        assert not np.any(diff & (a.mask > 0))          # objects paint over decoys
        if diff.any():                                   # decoy pixels are near a part colour
            near = np.abs(b.image[diff][:, None, :].astype(np.float64) - colours).max(-1)
            assert np.mean(near.min(1) < 40) > 0.9
        changed_pixels += int(diff.sum())
    assert changed_pixels > 0
    assert np.array_equal(render_sample(replace(plain, max_decoys=0), "train", 5).image,
                          render_sample(plain, "train", 5).image)


def _axis_ratio(mask: np.ndarray) -> float:
    """Short over long axis of a mask, from the eigenvalues of its pixel covariance."""
    ys, xs = np.nonzero(mask)
    lo, hi = np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(np.float64)))
    return float(np.sqrt(lo / hi))


def test_body_aspect_elongates_bodies() -> None:
    """``body_aspect_min/max`` squash the bodies (the default 0.65..1 draws them round-ish)."""
    cfg = replace(TINY, image_size=128, max_objects=1, max_distractors=0,
                  num_context_classes=0, body_size_min=0.3, body_size_max=0.4)
    def ratios(c: SyntheticConfig) -> list[float]:
        return [_axis_ratio(o.body) for i in range(20)
                for o in render_sample(c, "train", i).objects if o.class_index > 0]
    assert float(np.median(ratios(cfg))) > 0.6
    assert float(np.median(ratios(replace(cfg, body_aspect_min=0.25, body_aspect_max=0.3)))) < 0.4
    with pytest.raises(CamflowInputError, match="body_aspect_max"):
        SyntheticConfig(body_aspect_min=0.5, body_aspect_max=0.4)
