"""Torch datasets and IRN-style augmentation for classifier training and CAM inference."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance
from torch.utils.data import Dataset

from camflow.data.base import SegmentationDataset
from camflow.io import CamflowInputError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def normalize(image: np.ndarray) -> np.ndarray:
    """uint8 H×W×3 → float32 3×H×W with ImageNet colour normalisation."""
    x = (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


RESAMPLE = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}


def rescaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(H, W) times ``scale``, rounded, at least 1 (IRN's ``pil_rescale``)."""
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def pil_rescale(image: np.ndarray, scale: float, resample: str) -> np.ndarray:
    """A uint8 H×W×3 image rescaled with PIL to (round(H·scale), round(W·scale)), as IRN's
    ``misc/imutils.py`` ``pil_rescale`` (``resample`` a key of :data:`RESAMPLE`; IRN: bicubic).
    An unchanged size returns the image itself."""
    h, w = rescaled_size(image.shape[:2], scale)
    if (h, w) == image.shape[:2]:
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), RESAMPLE[resample]))


def random_rescale(image: np.ndarray, augment: dict[str, Any],
                   rng: np.random.Generator) -> np.ndarray:
    """IRN's random training resize: ``resize_long: [lo, hi]`` draws the long side (an integer
    in [lo, hi], ``random_resize_long``: CAM training), ``rescale: [lo, hi]`` a factor uniform
    in [lo, hi) (``random_scale``: IRN training); resampled with ``augment.resample``."""
    if "resize_long" in augment:
        lo, hi = augment["resize_long"]
        scale = int(rng.integers(lo, hi + 1)) / max(image.shape[:2])
    else:
        lo, hi = (float(v) for v in augment["rescale"])
        scale = lo + rng.random() * (hi - lo)
    return pil_rescale(image, scale, augment["resample"])


def _shift_hue(image: Image.Image, shift: float) -> Image.Image:
    """torchvision's ``adjust_hue`` of a PIL image: H of HSV plus shift·255 (truncated),
    modulo 256."""
    h, s, v = image.convert("HSV").split()
    hue = (np.asarray(h, dtype=np.int64) + int(shift * 255)) % 256
    return Image.merge("HSV", (Image.fromarray(hue.astype(np.uint8), "L"), s, v)).convert("RGB")


JITTER = {"brightness": lambda im, f: ImageEnhance.Brightness(im).enhance(f),
          "contrast": lambda im, f: ImageEnhance.Contrast(im).enhance(f),
          "saturation": lambda im, f: ImageEnhance.Color(im).enhance(f),
          "hue": _shift_hue}


def color_jitter(image: np.ndarray, jitter: dict[str, float],
                 rng: np.random.Generator) -> np.ndarray:
    """PSA's colour jitter of a uint8 H×W×3 image (``train_aff.py``: torchvision 0.2's
    ``ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1)`` on the PIL image,
    before the crop): brightness, contrast and saturation factors uniform in
    [max(0, 1 − v), 1 + v] and a hue shift uniform in [−hue, hue], drawn from ``rng`` in that
    order (a value of 0 skips its transform), then applied in a random order as torchvision's
    ``adjust_*`` do on PIL images (``ImageEnhance`` Brightness, Contrast, Color; the hue
    shift of :func:`_shift_hue`)."""
    ops = [(name, rng.uniform(max(0.0, 1 - jitter[name]), 1 + jitter[name]))
           for name in ("brightness", "contrast", "saturation") if jitter[name] > 0]
    if jitter["hue"] > 0:
        ops.append(("hue", rng.uniform(-jitter["hue"], jitter["hue"])))
    out = Image.fromarray(image)
    for i in rng.permutation(len(ops)):
        name, factor = ops[i]
        out = JITTER[name](out, factor)
    return np.asarray(out)


def rand_augment(image: np.ndarray, spec: dict[str, int], rng: np.random.Generator) -> np.ndarray:
    """RandAugment (Cubuk et al.; P-NOC (David et al.) Sec. 6.1 trains its ordinary
    classifiers with it) of a uint8 H×W×3 image: torchvision's ``RandAugment(num_ops,
    magnitude)``, its random draws seeded from ``rng`` (torch's global generator is left as
    it was)."""
    from torchvision.transforms import RandAugment

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(2**63 - 1)))
        out = RandAugment(int(spec["num_ops"]), int(spec["magnitude"]))(
            torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1))
    return out.permute(1, 2, 0).numpy()


def random_crop(x: np.ndarray, crop: int, rng: np.random.Generator) -> np.ndarray:
    """Random ``crop``×``crop`` window of a C×H×W array, zero-padding a smaller image (IRN)."""
    _, h, w = x.shape
    out = np.zeros((x.shape[0], crop, crop), dtype=x.dtype)
    top = int(rng.integers(0, h - crop + 1)) if h > crop else 0
    left = int(rng.integers(0, w - crop + 1)) if w > crop else 0
    off_y = int(rng.integers(0, crop - h + 1)) if h < crop else 0
    off_x = int(rng.integers(0, crop - w + 1)) if w < crop else 0
    ch, cw = min(h, crop), min(w, crop)
    out[:, off_y:off_y + ch, off_x:off_x + cw] = x[:, top:top + ch, left:left + cw]
    return out


def pil_nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A uint8 1×H×W label map resized (PIL nearest) to ``size`` = (height, width)."""
    return np.asarray(Image.fromarray(labels[0]).resize(size[::-1], Image.NEAREST))[None]


def torch_nearest(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Float C×H×W maps resized (torch nearest) to ``size`` = (height, width)."""
    return F.interpolate(torch.from_numpy(maps)[None], size, mode="nearest")[0].numpy()


def joint_augment(image: np.ndarray, augment: dict[str, Any], rng: np.random.Generator,
                  maps: np.ndarray | None = None, fill: float = 0.0,
                  resize_maps: Callable[[np.ndarray, tuple[int, int]], np.ndarray] | None = None
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """IRN's training augmentation of an image and, optionally, per-pixel maps (C×H×W)
    aligned with it: RandAugment of the image if ``augment`` has ``randaugment``
    (:func:`rand_augment`), colour jitter of the image if it has ``color_jitter`` (PSA,
    :func:`color_jitter`), random resize (:func:`random_rescale`; maps with ``resize_maps``),
    horizontal flip, colour normalisation, random
    ``augment.crop`` square (zero-padded image, maps padded with ``fill``).  Every random
    draw comes from ``rng`` in that order, so a sample is a pure function of its seed.
    Returns float32 3×crop×crop and C×crop×crop (or None)."""
    if "randaugment" in augment:
        image = rand_augment(image, augment["randaugment"], rng)
    if "color_jitter" in augment:
        image = color_jitter(image, augment["color_jitter"], rng)
    image = random_rescale(image, augment, rng)
    if maps is not None:
        maps = resize_maps(maps, image.shape[:2])
    if augment["flip"] and rng.random() < 0.5:
        image = image[:, ::-1]
        maps = None if maps is None else maps[:, :, ::-1]
    crop = int(augment["crop"])
    if maps is None:
        return random_crop(normalize(image), crop, rng), None
    stacked = random_crop(np.concatenate([normalize(image), maps.astype(np.float32) - fill]),
                          crop, rng)
    return np.ascontiguousarray(stacked[:3]), np.ascontiguousarray(stacked[3:] + fill)


class ClassificationDataset(Dataset):
    """Images with multi-hot targets and IRN augmentation (random long-side resize, flip, crop).

    Randomness is drawn from ``default_rng([seed, epoch, index])`` so that an epoch is the
    same whatever the number of workers and whether training was resumed.
    """

    def __init__(self, dataset: SegmentationDataset, split: str, augment: dict[str, Any],
                 seed: int) -> None:
        self.dataset = dataset
        self.ids = dataset.ids(split)
        self.labels = dataset.image_labels(split)
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image_id = self.ids[index]
        x, _ = joint_augment(self.dataset.load_image(image_id), self.augment, rng)
        target = self.dataset.multi_hot(self.labels[image_id])
        return torch.from_numpy(x), torch.from_numpy(target), index


class InferenceDataset(Dataset):
    """Unaugmented images with their ids and image-level labels, for CAM inference."""

    def __init__(self, dataset: SegmentationDataset, split: str) -> None:
        self.dataset = dataset
        self.ids = dataset.ids(split)
        self.labels = dataset.image_labels(split)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[str, np.ndarray, tuple[int, ...]]:
        image_id = self.ids[index]
        return image_id, self.dataset.load_image(image_id), self.labels[image_id]


class AffinityLabelDataset(Dataset):
    """Images with their affinity labels (a label cache), IRN's augmentation, and the labels
    reduced to the network's pair grid (every ``label_stride``-th pixel, nearest).  AffinityNet
    reduces PSA's scores instead (:class:`camflow.methods.affinitynet.PsaScoreDataset`).

    Augmentation: :func:`joint_augment` (labels resized PIL-nearest, padded with 255),
    seeded by ``(seed, epoch, index)`` like :class:`ClassificationDataset`.
    """

    def __init__(self, dataset: SegmentationDataset, labels: Any, augment: dict[str, Any],
                 seed: int, label_stride: int) -> None:
        self.dataset = dataset
        self.labels = labels
        self.ids = labels.ids
        self.augment = augment
        self.seed = seed
        self.label_stride = label_stride
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image_id = self.ids[index]
        image = self.dataset.load_image(image_id)
        _, label = self.labels.read(image_id)
        if label.shape != image.shape[:2]:
            raise CamflowInputError(
                f"image {image_id!r}: affinity labels in {self.labels.path} are "
                f"{label.shape[1]}x{label.shape[0]}, the image {image.shape[1]}x{image.shape[0]}")
        x, label = joint_augment(image, self.augment, rng, label[None], fill=255.0,
                                 resize_maps=pil_nearest)
        s = self.label_stride
        reduced = label[0, s // 2::s, s // 2::s].astype(np.int64)
        return torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(reduced))
