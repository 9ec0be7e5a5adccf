"""PSA (Ahn & Kwak 2018; code ``jiwoon-ahn/psa``) as published: AffinityNet's stride-8 labels,
the random walk's pair set and the training augmentation, each worked by hand and checked
against a compact float64 re-statement of the reference code."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image, ImageEnhance

from camflow.cache import LabelCache, LabelCacheWriter
from camflow.data.transforms import color_jitter, joint_augment, normalize
from camflow.io import CamflowInputError
from camflow.methods.affinitynet import AffinityNetTraining, pair_affinity
from camflow.refine.affinity_labels import psa_grid_labels, psa_label_rule
from camflow.refine.pairs import neighbour_offsets, pair_labels, psa_pair_sources
from camflow.refine.random_walk import psa_propagate

CONFIG = Path(__file__).resolve().parents[1] / "config.yaml"


# --- 1. affinity labels at stride 8 (train_aff.py, voc12/data.py VOC12AffDataset) ----------

def one_block(centre_fg_rows: slice) -> np.ndarray:
    """Scores 4×8×8 of one class (key 3): α_low [bg, fg] then α_high [bg, fg].  α_low says
    bg 0.7 / fg 0.3 except in ``centre_fg_rows`` (bg 0.1 / fg 0.9); α_high says fg 0.8."""
    s = np.empty((4, 8, 8), dtype=np.float32)
    s[0], s[1] = 0.7, 0.3
    s[0, centre_fg_rows], s[1, centre_fg_rows] = 0.1, 0.9
    s[2], s[3] = 0.2, 0.8
    return s


def test_block_mean_not_centre_pixel() -> None:
    """Rows 4–5 (16 pixels, the centre (4, 4) among them) are foreground in α_low.  Block
    means: bg (48·0.7 + 16·0.1)/64 = 0.55 > fg 0.45, so α_low says background → 255 (α_high
    says foreground, so nothing confirms background).  The centre pixel alone says class 3."""
    scores = one_block(slice(4, 6))
    assert psa_grid_labels(scores, np.array([3])).tolist() == [[255]]
    centre = psa_label_rule(scores[:, 4:5, 4:5], np.array([3]))
    assert centre.tolist() == [[3]]
    # 40 of 64 pixels foreground: means bg 0.325 < fg 0.675 → class 3
    assert psa_grid_labels(one_block(slice(3, 8)), np.array([3])).tolist() == [[3]]


def test_label_rule_combines_low_and_high_as_psa() -> None:
    """One pixel per case, keys (1, 2): low fg 1 & high bg → 0 (background wins); low bg &
    high fg → 255; low fg 1 & high fg 2 → 1 (low's class); low bg & high bg → 0;
    all scores zero (crop padding) → 255."""
    low = np.array([[0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.8, 0.1, 0.1],
                    [0.0, 0.0, 0.0]]).T
    high = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1],
                     [0.0, 0.0, 0.0]]).T
    scores = np.concatenate([low, high])[:, None, :]
    assert psa_label_rule(scores, np.array([1, 2])).tolist() == [[0, 255, 1, 0, 255]]


def test_partial_blocks_are_zero_padded_and_divided_by_64() -> None:
    """A 10×12 crop at stride 8 is a 2×2 grid.  Block (1, 1) holds the crop's 2×4 corner
    with fg 1e-4 and everything else 0: its means are 8e-4/64 = 1.25e-5 for fg and 0 for bg,
    so it is labelled fg (1); with fg 5e-5 the mean 6.25e-6 < 1e-5 → no score (255), although
    the mean over its 8 real pixels (5e-5) would count.  Block (0, 1) is a zero block."""
    scores = np.zeros((4, 10, 12), dtype=np.float32)
    scores[0, :8, :8], scores[2, :8, :8] = 1.0, 1.0           # block (0, 0): background
    scores[1, 8:, :8], scores[3, 8:, :8] = 0.9, 0.9           # block (1, 0): class 1
    scores[1, 8:, 8:], scores[3, 8:, 8:] = 1e-4, 1e-4
    assert psa_grid_labels(scores, np.array([1])).tolist() == [[0, 255], [1, 1]]
    scores[1, 8:, 8:], scores[3, 8:, 8:] = 5e-5, 5e-5
    assert psa_grid_labels(scores, np.array([1])).tolist() == [[0, 255], [1, 255]]


def psa_reference_pair_labels(la: np.ndarray, ha: np.ndarray, radius: int):
    """``VOC12AffDataset.__getitem__`` after the crop (HWC score maps, float64):
    ``imutils.AvgPool2d(8)`` (block means), argmax labels by channel index, the la/ha rule,
    then ``ExtractAffinityLabelInRadius`` — restated from the reference code."""
    h, w, _ = la.shape
    label = np.concatenate([la, ha], axis=-1)
    pooled = np.zeros((h // 8, w // 8, label.shape[-1]))
    for by in range(h // 8):
        for bx in range(w // 8):
            pooled[by, bx] = label[8 * by:8 * by + 8, 8 * bx:8 * bx + 8].mean(axis=(0, 1))
    no_score = pooled.max(-1) < 1e-5
    lab_la, lab_ha = (np.argmax(x, -1) for x in np.array_split(pooled, 2, axis=-1))
    lab = lab_la.copy()
    lab[lab_la == 0] = 255
    lab[lab_ha == 0] = 0
    lab[no_score] = 255
    r = radius - 1
    search = [(0, x) for x in range(1, radius)] + [
        (y, x) for y in range(1, radius) for x in range(-r, radius) if x * x + y * y < radius ** 2]
    size = h // 8
    frm = lab[:-r, r:-r].reshape(-1)
    to = np.stack([lab[dy:dy + size - r, r + dx:r + dx + size - 2 * r].reshape(-1)
                   for dy, dx in search])
    valid = (to < 255) & (frm < 255)
    pos = frm == to
    return lab, {"bg_pos": pos & (frm == 0), "fg_pos": pos & (frm != 0) & valid,
                 "neg": ~pos & valid}


def test_stride8_labels_equal_psas_code() -> None:
    """Random crops 96×96 (two classes, part of the crop zero padding) against the float64
    re-statement: same stride-8 labels and the same bg/fg/neg pairs."""
    rng = np.random.default_rng(0)
    keys = np.array([4, 7])
    for _ in range(5):
        la = rng.dirichlet([0.3, 0.3, 0.3], size=(96, 96))
        ha = rng.dirichlet([0.6, 0.3, 0.3], size=(96, 96))
        pad = int(rng.integers(5, 40))
        la[-pad:], ha[-pad:] = 0, 0                           # the crop's zero padding
        lab, pairs = psa_reference_pair_labels(la, ha, 5)
        scores = np.concatenate([la, ha], axis=-1).transpose(2, 0, 1).astype(np.float32)
        got = psa_grid_labels(scores, keys)
        want = np.where(lab == 255, 255, np.concatenate([[0], keys])[np.minimum(lab, 2)])
        assert (got == want).all()
        ours = pair_labels(torch.from_numpy(got.astype(np.int64)), 5)
        for name, mask in pairs.items():
            assert (ours[name].reshape(len(mask), -1).numpy() == mask).all(), name


def test_affinitynet_trains_on_the_block_labels(tmp_path: Path) -> None:
    """AffinityNet's training data read the scores of a ``psa`` label cache: the one-block
    image of :func:`test_block_mean_not_centre_pixel` gives 255, not its centre's class 3."""
    path = tmp_path / "psa.h5"
    scores = one_block(slice(4, 6))
    with LabelCacheWriter(path, ["bg", "a", "b", "c"], {"method": "psa"}) as writer:
        writer.add("img", np.array([3]), psa_label_rule(scores, np.array([3])), scores)
    image = np.full((8, 8, 3), 100, dtype=np.uint8)
    task = SimpleNamespace(
        dataset=SimpleNamespace(load_image=lambda _: image), labels=LabelCache(path),
        cfg={"seed": 0, "augment": {"rescale": [1.0, 1.0], "resample": "bicubic",
                                    "flip": False, "crop": 8}})
    x, labels = AffinityNetTraining.training_data(task)[0]
    assert labels.tolist() == [[255]]
    assert torch.equal(x, torch.from_numpy(normalize(image)))


def test_a_label_cache_without_scores_is_refused_with_the_fix(tmp_path: Path) -> None:
    """A ``psa`` label cache written before the scores were stored: AffinityNet's training
    stops naming the file and how to rebuild it. Another style's labels (IRN's, P-NOC's
    saliency-aware ones) are taken on the stride-8 grid, nearest."""
    path = tmp_path / "old_psa.h5"
    with LabelCacheWriter(path, ["bg", "a"], {"method": "psa"}) as writer:
        writer.add("img", np.array([1]), np.zeros((8, 8), dtype=np.uint8))
    task = SimpleNamespace(
        dataset=SimpleNamespace(load_image=lambda _: np.zeros((8, 8, 3), np.uint8)),
        labels=LabelCache(path),
        cfg={"seed": 0, "augment": {"rescale": [1.0, 1.0], "resample": "bicubic",
                                    "flip": False, "crop": 8}})
    with pytest.raises(CamflowInputError, match=r"old_psa\.h5 holds no CRF scores.*-R affinity"):
        AffinityNetTraining.training_data(task)
    labels = np.full((16, 16), 255, dtype=np.uint8)
    labels[:8] = 0
    labels[8:, 8:] = 1
    with LabelCacheWriter(tmp_path / "sal.h5", ["bg", "a"], {"method": "saliency"}) as writer:
        writer.add("img", np.array([1]), labels)
    task.labels = LabelCache(tmp_path / "sal.h5")
    task.dataset = SimpleNamespace(load_image=lambda _: np.zeros((16, 16, 3), np.uint8))
    task.cfg["augment"]["crop"] = 16
    _, grid = AffinityNetTraining.training_data(task)[0]
    assert grid.tolist() == [[0, 0], [255, 1]]


# --- 2. the random walk's pairs (infer_aff.py, get_indices_of_pairs, resnet38_aff.py) ------

def test_pair_sources_are_the_interior() -> None:
    """Radius 3 (r − 1 = 2) on a 5×7 grid: pairs start in rows 0–2 and columns 2–4 only."""
    want = np.zeros((5, 7), dtype=bool)
    want[0:3, 2:5] = True
    assert (psa_pair_sources(5, 7, 3).numpy() == want).all()
    assert not psa_pair_sources(2, 9, 3).any()               # fewer than r rows
    assert not psa_pair_sources(5, 4, 3).any()               # fewer than 2r − 1 columns


def test_walk_drops_pairs_from_border_pixels() -> None:
    """Radius 2, 3×4 grid, stride 1 (no pooling), one class.  Affinity 1 for the bottom-row
    pair (2, 0)–(2, 1) (its source is in the last row: not a PSA pair) and for the interior
    pair (0, 1)–(1, 1); 0 elsewhere.  PSA keeps pixel (2, 1)'s own scores: CAM 0.3 against
    background 0.7^16 → class 1 (every-pixel pairs would average it with (2, 0), background
    1: → background).  (0, 1) and (1, 1) end with the mean of their two score vectors."""
    cams = torch.zeros(1, 3, 4, dtype=torch.float64)
    cams[0, 2, 1] = 0.3
    cams[0, 1, 1] = 0.6
    offsets = neighbour_offsets(2)
    affinity = torch.zeros(len(offsets), 3, 4, dtype=torch.float64)
    affinity[offsets.index((0, 1)), 2, 0] = 1.0
    affinity[offsets.index((1, 0)), 0, 1] = 1.0
    scores, channels = psa_propagate(cams, affinity, radius=2, beta=8, n_squarings=2,
                                     alpha=16, stride=1)
    assert channels[2, 1] == 1 and channels[2, 0] == 0
    stack = torch.tensor([[1.0, 0.0], [0.4 ** 16, 0.6]], dtype=torch.float64)
    mean = stack.mean(0)
    for y in (0, 1):
        torch.testing.assert_close(scores[:, y, 1], mean / mean.sum())
    torch.testing.assert_close(scores[:, 2, 1], torch.tensor([0.7 ** 16, 0.3]).double()
                               / (0.7 ** 16 + 0.3))


def psa_reference_walk(feats: np.ndarray, cams: np.ndarray, radius: int, beta: float,
                       logt: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """``get_indices_of_pairs`` + ``resnet38_aff.Net.forward(to_dense=True)`` +
    ``infer_aff.py``, restated in float64: dense A with a_ij at (from, to) and (to, from) and
    1 on the diagonal, A^β over column sums squared ``logt`` times, applied to the 8×8-pooled
    [(1 − max)^α, CAMs] of the zero-padded image, bilinear ×8, cropped, argmax."""
    c, gh, gw = feats.shape
    r = radius - 1
    search = [(0, x) for x in range(1, radius)] + [
        (y, x) for y in range(1, radius) for x in range(-r, radius) if x * x + y * y < radius ** 2]
    full = np.arange(gh * gw).reshape(gh, gw)
    ind_from = full[:-r, r:-r].reshape(-1)
    ind_to = np.concatenate([full[dy:dy + gh - r, r + dx:r + dx + gw - 2 * r].reshape(-1)
                             for dy, dx in search])
    from_exp = np.tile(ind_from, len(search))
    f = feats.reshape(c, -1)
    aff = np.exp(-np.abs(f[:, from_exp] - f[:, ind_to]).mean(0))
    a = np.eye(gh * gw)
    a[from_exp, ind_to] = aff
    a[ind_to, from_exp] = aff
    t = a ** beta
    t = t / t.sum(0, keepdims=True)
    for _ in range(logt):
        t = t @ t
    k, h, w = cams.shape
    stack = np.concatenate([(1 - cams.max(0, keepdims=True)) ** alpha, cams])
    padded = np.zeros((k + 1, gh * 8, gw * 8))
    padded[:, :h, :w] = stack
    pooled = padded.reshape(k + 1, gh, 8, gw, 8).mean(axis=(2, 4))
    rw = torch.from_numpy((pooled.reshape(k + 1, -1) @ t).reshape(1, k + 1, gh, gw))
    up = F.interpolate(rw, (gh * 8, gw * 8), mode="bilinear", align_corners=False)[0]
    up = up[:, :h, :w].numpy()
    return up / up.sum(0, keepdims=True), up.argmax(0)


class Features(torch.nn.Module):
    """Stands for AffinityNet: the given stride-8 features, zero beyond them."""

    def __init__(self, feats: torch.Tensor) -> None:
        super().__init__()
        self.feats = feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(1, self.feats.shape[0], -(-x.shape[-2] // 8), -(-x.shape[-1] // 8),
                          dtype=self.feats.dtype)
        out[0, :, :self.feats.shape[1], :self.feats.shape[2]] = self.feats
        return out


@pytest.mark.parametrize("h,w", [(83, 101), (96, 72)])
def test_walk_equals_psas_code(h: int, w: int) -> None:
    """Region-structured features and blob CAMs: AffinityNet's refiner path
    (:func:`pair_affinity` + :func:`psa_propagate`) equals the re-statement to 1e-5, and every
    label agrees."""
    rng = np.random.default_rng(h)
    gh, gw = -(-h // 8), -(-w // 8)
    region = (np.arange(gh)[:, None] * 3 // gh) * 2 + (np.arange(gw)[None] * 2 // gw)
    feats = rng.random((6, 16))[region].transpose(2, 0, 1) * 2 + rng.normal(0, 0.1, (16, gh, gw))
    yy, xx = np.mgrid[0:h, 0:w]
    cams = np.stack([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 600.0)
                     for cy, cx in ((20, 30), (60, 70))])
    want_scores, want_labels = psa_reference_walk(feats, cams, 5, 8, 8, 16)
    affinity = pair_affinity(Features(torch.from_numpy(feats)), torch.zeros(3, h, w), 5)
    scores, labels = psa_propagate(torch.from_numpy(cams), affinity.double(), 5, 8, 8, 16)
    np.testing.assert_allclose(scores.numpy(), want_scores, atol=1e-5, rtol=0)
    assert (labels.numpy() == want_labels).all()


# --- 3. training augmentation (train_aff.py) ------------------------------------------------

def test_paper_profile_is_train_aff() -> None:
    """train_aff.py: no rescale, ColorJitter(0.3, 0.3, 0.3, 0.1), crop 448, flip; the
    PolyOptimizer's SGD gets the weight decay 5e-4 as its momentum."""
    cfg = yaml.safe_load(CONFIG.read_text())["refiners"]["affinitynet"]
    assert cfg["augment"] == {"rescale": [1.0, 1.0], "flip": True, "crop": 448,
                              "color_jitter": {"brightness": 0.3, "contrast": 0.3,
                                               "saturation": 0.3, "hue": 0.1}}
    assert cfg["optimizer"]["momentum"] == 0.0005
    assert cfg["batch_size"] == 8 and cfg["epochs"] == 8


def test_brightness_jitter_by_hand() -> None:
    """Brightness only: the factor is the rng's first draw, uniform in [0.7, 1.3], and PIL
    scales a grey 100 to about 100·f; no resize (factor 1), no flip, a full-size crop."""
    f = np.random.default_rng(5).uniform(0.7, 1.3)
    image = np.full((16, 16, 3), 100, dtype=np.uint8)
    jitter = {"brightness": 0.3, "contrast": 0.0, "saturation": 0.0, "hue": 0.0}
    out = color_jitter(image, jitter, np.random.default_rng(5))
    assert np.abs(out.astype(float) - 100 * f).max() <= 1
    augment = {"rescale": [1.0, 1.0], "resample": "bicubic", "flip": False, "crop": 16,
               "color_jitter": jitter}
    x, _ = joint_augment(image, augment, np.random.default_rng(5))
    np.testing.assert_array_equal(x, normalize(out))


def reference_jitter(image: np.ndarray, factors: list[float], order: np.ndarray) -> np.ndarray:
    """torchvision 0.2's ColorJitter for given factors (brightness, contrast, saturation, hue)
    and order: PIL ImageEnhance, and the hue as a uint8 shift of H in HSV."""
    def hue(img: Image.Image, h: float) -> Image.Image:
        hh, s, v = img.convert("HSV").split()
        shifted = (np.asarray(hh, dtype=np.int64) + int(h * 255)) % 256
        return Image.merge("HSV", (Image.fromarray(shifted.astype(np.uint8), "L"), s, v)
                           ).convert("RGB")

    ops = [lambda i, f: ImageEnhance.Brightness(i).enhance(f),
           lambda i, f: ImageEnhance.Contrast(i).enhance(f),
           lambda i, f: ImageEnhance.Color(i).enhance(f), hue]
    img = Image.fromarray(image)
    for i in order:
        img = ops[i](img, factors[i])
    return np.asarray(img)


def test_color_jitter_equals_torchvision_0_2() -> None:
    rng = np.random.default_rng(1)
    jitter = {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.1}
    for seed in range(8):
        image = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
        draws = np.random.default_rng(seed)
        factors = [draws.uniform(0.7, 1.3) for _ in range(3)] + [draws.uniform(-0.1, 0.1)]
        want = reference_jitter(image, factors, draws.permutation(4))
        got = color_jitter(image, jitter, np.random.default_rng(seed))
        np.testing.assert_array_equal(got, want)
