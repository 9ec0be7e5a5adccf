"""Torch datasets and IRN-style augmentation for classifier training and CAM inference."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from camflow.data.base import SegmentationDataset
from camflow.io import CamflowInputError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def normalize(image: np.ndarray) -> np.ndarray:
    """uint8 H×W×3 → float32 3×H×W with ImageNet colour normalisation."""
    x = (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def resize_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """Resize (bilinear) so that the longer side equals ``long_side``."""
    h, w = image.shape[:2]
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


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


class ClassificationDataset(Dataset):
    """Images with multi-hot targets and IRN augmentation (random long-side resize, flip, crop).

    Randomness is drawn from ``default_rng([seed, epoch, index])`` so that an epoch is the
    same whatever the number of workers and whether training was resumed.
    """

    def __init__(self, dataset: SegmentationDataset, split: str, augment: dict[str, Any],
                 seed: int) -> None:
        self.dataset = dataset
        self.ids = dataset.classification_ids(split)
        self.labels = dataset.image_labels(split)
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image_id = self.ids[index]
        image = self.dataset.load_image(image_id)
        lo, hi = self.augment["resize_long"]
        image = resize_long_side(image, int(rng.integers(lo, hi + 1)))
        if self.augment["flip"] and rng.random() < 0.5:
            image = image[:, ::-1]
        x = random_crop(normalize(image), int(self.augment["crop"]), rng)
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
    """Images with their affinity labels (a label cache), IRN/PSA augmentation, and the labels
    reduced to the network's pair grid (every ``label_stride``-th pixel, nearest).

    Augmentation: random long-side resize (image bilinear, labels nearest), flip, random crop
    (image padded with zeros after normalisation, labels with 255).  Seeded by
    ``(seed, epoch, index)`` like :class:`ClassificationDataset`.
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
        lo, hi = self.augment["resize_long"]
        long_side = int(rng.integers(lo, hi + 1))
        image = resize_long_side(image, long_side)
        label = np.asarray(Image.fromarray(label).resize(image.shape[1::-1], Image.NEAREST))
        if self.augment["flip"] and rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        stacked = np.concatenate([normalize(image), label[None].astype(np.float32) - 255.0])
        crop = random_crop(stacked, int(self.augment["crop"]), rng)
        s = self.label_stride
        reduced = (crop[3, s // 2::s, s // 2::s] + 255.0).astype(np.int64)
        return torch.from_numpy(np.ascontiguousarray(crop[:3])), torch.from_numpy(reduced)
