"""Train a DeepLab segmenter on pseudo masks (or ground truth), evaluate it, and export its
predictions for the PASCAL VOC 2012 evaluation server (:func:`export_submission`).

P-NOC (David et al.) Sec. 6.3: the final step of WSSS trains DeepLab-v2 (ResNet-101, ImageNet
initialised; batch 10, crop 321, 10,000 iterations, lr 2.5e-4) or DeepLab-v3+ on the refined
pseudo masks with their original procedures unchanged; docs/fidelity.md, conventions
("Segmentation"): the reported numbers use multi-scale + flip inference and a dense CRF.
DeepLab-v2 Section 4: SGD with momentum 0.9, weight decay 5e-4, "poly" learning rate (power
0.9), ×10 lr for the new layers; augmentation by random scaling and flipping, then a random
crop (image padded with the mean, label with the ignore value 255).

Training is iteration-based (:class:`camflow.trainer.Trainer`) and resumable: the ``b``-th
sample of iteration ``t`` is a pure function of ``(seed, t, b)`` (a seeded permutation per
pass over the data and a per-sample augmentation generator), and the trainer reseeds the
torch RNG (dropout) from ``(seed, t)`` before every iteration, so an interrupted run resumed
from its ``*.resume.pt`` ends with bit-identical weights.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from camflow.data.base import IGNORE_INDEX, SegmentationDataset
from camflow.data.transforms import normalize
from camflow.data.voc import VOC12_CLASSES
from camflow.evaluate import ConfusionMatrix, evaluation_record, segmentation_metrics
from camflow.io import (
    CamflowInputError,
    atomic_path,
    read_label_png,
    some_ids,
    write_label_png,
)
from camflow.models.deeplab import build_segmenter
from camflow.refine.crf import crf_scores
from camflow.runtime import (
    config_hash,
    load_checkpoint,
    parallel_map,
    progress_bar,
    seed_everything,
)
from camflow.trainer import OptimizerSpec, Progress, Trainer, Update

log = logging.getLogger(__name__)

GROUND_TRUTH = "ground_truth"
CONFIG_KEYS = ("arch", "backbone", "aspp_rates", "freeze_bn_stats", "optimizer", "batch_size",
               "iterations", "augment", "checkpoint_every", "seed")
OPTIMIZER_KEYS = ("lr", "head_lr_mult", "momentum", "weight_decay", "poly_power")
AUGMENT_KEYS = ("scale", "flip", "crop")


# ---------------------------------------------------------------------------------------------
# Configuration and masks


def _check_config(cfg: dict[str, Any]) -> None:
    """Every key training reads is present and sane; errors name the key."""
    for key in CONFIG_KEYS:
        if key not in cfg:
            raise CamflowInputError(f"segmenter config lacks key {key!r}")
    for block, keys in (("optimizer", OPTIMIZER_KEYS), ("augment", AUGMENT_KEYS)):
        for key in keys:
            if key not in cfg[block]:
                raise CamflowInputError(f"segmenter config lacks key {block}.{key}")
    for key in ("batch_size", "iterations", "checkpoint_every"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise CamflowInputError(f"config key {key} must be a positive integer, "
                                    f"got {cfg[key]!r}")
    scale = cfg["augment"]["scale"]
    if not (isinstance(scale, list | tuple) and len(scale) == 2 and 0 < scale[0] <= scale[1]):
        raise CamflowInputError(
            f"config key augment.scale must be [lo, hi] with 0 < lo <= hi, got {scale!r}")
    crop = cfg["augment"]["crop"]
    if not isinstance(crop, int) or crop < 1:
        raise CamflowInputError(f"config key augment.crop must be a positive integer, "
                                f"got {crop!r}")
    if cfg["arch"] == "deeplabv3plus" and cfg["batch_size"] < 2:
        raise CamflowInputError(
            "config key batch_size must be at least 2 for deeplabv3plus (BatchNorm of the "
            "ASPP image-pooling branch needs more than one value per channel)")


def _check_ids(ids: list[str], masks_dir: Path | None) -> None:
    """Pseudo-mask ids must be plain file names and every PNG must exist (fail before
    training, not at iteration 5,000)."""
    if masks_dir is None:
        return
    if not masks_dir.is_dir():
        raise CamflowInputError(f"pseudo-mask directory {masks_dir} does not exist")
    bad = [i for i in ids if "/" in i or "\\" in i or i in ("", ".", "..")]
    if bad:
        raise CamflowInputError(
            f"image id(s) {bad[:5]} cannot name a pseudo mask in {masks_dir} "
            "(ids may contain no '/')")
    missing = [i for i in ids if not (masks_dir / f"{i}.png").is_file()]
    if missing:
        raise CamflowInputError(
            f"{len(missing)} pseudo mask(s) missing in {masks_dir}: {some_ids(missing)} "
            f"(expected {masks_dir / (missing[0] + '.png')})")


def load_training_mask(dataset: SegmentationDataset, split: str, masks_dir: Path | None,
                       image_id: str, image_shape: tuple[int, ...]) -> np.ndarray:
    """The training target of ``image_id``: its ground-truth mask (``masks_dir`` None) or the
    palette PNG ``<masks_dir>/<image_id>.png``, checked against the image size and classes."""
    if masks_dir is None:
        mask = np.asarray(dataset.load_mask(image_id, split))
        if mask.shape != tuple(image_shape[:2]):
            raise CamflowInputError(
                f"{dataset.name}: mask of {image_id!r} has size {mask.shape[1]}x{mask.shape[0]} "
                f"but its image is {image_shape[1]}x{image_shape[0]}")
        return mask
    path = masks_dir / f"{image_id}.png"
    return dataset.validate_mask(read_label_png(path, image_id), image_id, image_shape, path)


# ---------------------------------------------------------------------------------------------
# Training data


def _resize(array: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    """Resize a uint8 H×W(×3) array to ``size`` = (height, width) with PIL."""
    return np.asarray(Image.fromarray(array).resize((size[1], size[0]), resample))


def augment_pair(image: np.ndarray, mask: np.ndarray, augment: dict[str, Any],
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """DeepLab-v2 Section 4 augmentation: random scale (uniform in ``augment.scale``; image
    bilinear, mask nearest), horizontal flip, normalisation, pad to ``crop`` (image with 0 =
    the mean after normalisation, label with 255; bottom/right), random ``crop``×``crop``.

    Returns float32 3×crop×crop and int64 crop×crop.
    """
    lo, hi = (float(v) for v in augment["scale"])
    s = float(rng.uniform(lo, hi))
    h, w = mask.shape
    size = (max(1, round(h * s)), max(1, round(w * s)))
    if size != (h, w):
        image = _resize(image, size, Image.BILINEAR)
        mask = _resize(mask, size, Image.NEAREST)
    if augment["flip"] and rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    crop = int(augment["crop"])
    x = normalize(np.ascontiguousarray(image))
    ph, pw = max(crop, size[0]), max(crop, size[1])
    padded_x = np.zeros((3, ph, pw), dtype=np.float32)
    padded_y = np.full((ph, pw), IGNORE_INDEX, dtype=np.int64)
    padded_x[:, : size[0], : size[1]] = x
    padded_y[: size[0], : size[1]] = mask
    top = int(rng.integers(0, ph - crop + 1))
    left = int(rng.integers(0, pw - crop + 1))
    return (np.ascontiguousarray(padded_x[:, top:top + crop, left:left + crop]),
            np.ascontiguousarray(padded_y[top:top + crop, left:left + crop]))


class SegmentationTrainData(Dataset):
    """Sample ``n`` of training = item ``n`` (``n = iteration × batch + b``).

    Pass ``e = n // N`` over the ``N`` ids visits them in the order of
    ``default_rng([seed, 0, e]).permutation(N)``; the augmentation of sample ``n`` draws from
    ``default_rng([seed, 1, n])``.  Nothing depends on DataLoader or worker state.
    """

    def __init__(self, dataset: SegmentationDataset, split: str, ids: list[str],
                 masks_dir: Path | None, augment: dict[str, Any], seed: int) -> None:
        self.dataset = dataset
        self.split = split
        self.ids = ids
        self.masks_dir = masks_dir
        self.augment = augment
        self.seed = seed
        self._permutations: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        """Number of ids (one pass); samples themselves are addressed by global number."""
        return len(self.ids)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            if len(self._permutations) >= 4:
                self._permutations.clear()
            rng = np.random.default_rng([self.seed, 0, epoch])
            self._permutations[epoch] = rng.permutation(len(self.ids))
        return self._permutations[epoch]

    def image_id(self, sample: int) -> str:
        """Id of global sample number ``sample``."""
        epoch, pos = divmod(sample, len(self.ids))
        return self.ids[int(self._permutation(epoch)[pos])]

    def __getitem__(self, sample: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_id = self.image_id(sample)
        image = self.dataset.load_image(image_id)
        mask = load_training_mask(self.dataset, self.split, self.masks_dir, image_id,
                                  image.shape)
        rng = np.random.default_rng([self.seed, 1, sample])
        x, y = augment_pair(image, mask, self.augment, rng)
        return torch.from_numpy(x), torch.from_numpy(y)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel-wise cross-entropy, 255 ignored (DeepLab-v2 Section 4); 0 if all ignored."""
    if not bool((target != IGNORE_INDEX).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)


class SegmentationTraining:
    """DeepLab on pseudo masks or the ground truth, as a :class:`camflow.trainer.TrainingTask`
    (iteration-based: sample ``n`` of training is a pure function of ``n``)."""

    def __init__(self, cfg: dict[str, Any], dataset: SegmentationDataset, split: str,
                 ids: list[str], masks: Path | None, device: torch.device) -> None:
        seed_everything(int(cfg["seed"]))
        self.model = build_segmenter(cfg, len(dataset.class_names)).to(device)
        self.networks = {"segmenter": self.model}
        self.cfg, self.device = cfg, device
        self.data = SegmentationTrainData(dataset, split, ids, masks, cfg["augment"],
                                          int(cfg["seed"]))

    def optimizers(self) -> dict[str, OptimizerSpec]:
        opt = self.cfg["optimizer"]
        groups = self.model.param_groups(float(opt["lr"]), float(opt["head_lr_mult"]),
                                         float(opt["weight_decay"]))
        return {"segmenter": OptimizerSpec(groups, opt)}

    def training_data(self) -> SegmentationTrainData:
        return self.data

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], progress: Progress,
             update: Update) -> dict[str, torch.Tensor]:
        images, targets = (t.to(self.device, non_blocking=True) for t in batch)
        loss = segmentation_loss(self.model(images), targets)
        update("segmenter", loss)
        return {"loss": loss.detach()}


# ---------------------------------------------------------------------------------------------
# Training


def train_segmentation(cfg: dict[str, Any], dataset: SegmentationDataset, split: str,
                       masks_dir: str | Path | None, out_path: str | Path,
                       device: torch.device, workers: int = 0, amp: bool = True,
                       progress: bool = True,
                       stop_after_iterations: int | None = None) -> Path:
    """Train a segmenter from ``cfg`` (a ``segmenters.<name>`` block) on ``split``; write
    ``out_path``.

    ``masks_dir`` None trains on the ground truth (the fully supervised upper bound);
    otherwise on ``<masks_dir>/<image_id>.png``.  SGD with poly decay (DeepLab-v2 Section 4),
    cross-entropy ignoring 255, by :class:`camflow.trainer.Trainer` (iterations, resumable
    from ``*.resume.pt`` saved every ``checkpoint_every`` iterations; a state of another
    config, split, masks or ids is ignored).  ``stop_after_iterations`` saves the state after
    that many iterations and returns the resume file (to test resumption).
    """
    _check_config(cfg)
    ids = dataset.ids(split)
    if not ids:
        raise CamflowInputError(f"{dataset.name}/{split} has no images to train on")
    masks = Path(masks_dir) if masks_dir is not None else None
    _check_ids(ids, masks)
    masks_name = str(masks) if masks is not None else GROUND_TRUTH
    identity = {"cfg": cfg, "split": split, "masks": masks_name, "ids": config_hash(ids),
                "classes": list(dataset.class_names)}
    task = SegmentationTraining(cfg, dataset, split, ids, masks, device)
    trainer = Trainer(task, cfg, Path(out_path), device, identity, workers=workers, amp=amp,
                      progress=progress, stop_after=stop_after_iterations)
    return trainer.fit({"config": cfg, "class_names": list(dataset.class_names),
                        "split": split, "masks": masks_name})


def load_segmenter(path: str | Path, device: torch.device) -> torch.nn.Module:
    """Rebuild a trained segmenter from its checkpoint (in eval mode)."""
    ckpt = load_checkpoint(path)
    for key in ("format_version", "networks", "config", "class_names"):
        if key not in ckpt:
            raise CamflowInputError(f"checkpoint {path} is not a segmenter checkpoint "
                                    f"(no key {key!r})")
    cfg = dict(ckpt["config"])
    cfg["backbone"] = {**cfg["backbone"], "weights": "none"}
    model = build_segmenter(cfg, len(ckpt["class_names"]))
    model.load_state_dict(ckpt["networks"]["segmenter"])
    model.class_names = list(ckpt["class_names"])
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def predict_probs(model: torch.nn.Module, image: np.ndarray, scales: list[float], flip: bool,
                  device: torch.device, amp: bool = True) -> np.ndarray:
    """Class probabilities C×H×W of ``image``: the softmax of the logits (resized back to the
    image size, bilinear) averaged over the input scales and, with ``flip``, the horizontal
    flips (DeepLab-v2 Section 4 multi-scale inputs; docs/fidelity.md, conventions:
    "Segmentation")."""
    h, w = image.shape[:2]
    x = torch.from_numpy(normalize(image))[None].to(device)
    use_amp = amp and device.type == "cuda"
    total: torch.Tensor | None = None
    for s in scales:
        size = (max(1, round(h * s)), max(1, round(w * s)))
        xs = x if size == (h, w) else F.interpolate(x, size=size, mode="bilinear",
                                                   align_corners=False)
        if flip:
            xs = torch.cat([xs, xs.flip(-1)])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = model(xs)
        logits = F.interpolate(logits.float(), size=(h, w), mode="bilinear", align_corners=False)
        if flip:
            logits = torch.stack([logits[0], logits[1].flip(-1)])
        probs = logits.softmax(dim=1).sum(dim=0)
        total = probs if total is None else total + probs
    assert total is not None
    return (total / (len(scales) * (2 if flip else 1))).cpu().numpy()


def crf_score_defaults() -> dict[str, float]:
    """Default parameters of the test-time CRF: those of :func:`crf_scores` (PSA)."""
    return {name: p.default for name, p in inspect.signature(crf_scores).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _check_scales(scales: list[float]) -> list[float]:
    """The test-time scales as floats; an error unless a non-empty list of positive numbers."""
    scales = [float(s) for s in scales]
    if not scales or not all(np.isfinite(s) and s > 0 for s in scales):
        raise CamflowInputError(f"scales must be a non-empty list of positive numbers, "
                                f"got {scales}")
    return scales


def _crf_parameters(crf: dict[str, float] | None) -> dict[str, float] | None:
    """The test-time CRF's parameters: None without CRF, else :func:`crf_score_defaults`
    overridden by ``crf``; an unknown parameter fails naming it."""
    if crf is None:
        return None
    params = crf_score_defaults()
    unknown = sorted(set(crf) - set(params))
    if unknown:
        raise CamflowInputError(f"unknown CRF parameter(s) {unknown}; known: {sorted(params)}")
    return {**params, **crf}


def _split_ids(dataset: SegmentationDataset, split: str, purpose: str) -> list[str]:
    """The ids of ``split``; an empty split fails naming the dataset, the split and what it
    was wanted for."""
    ids = dataset.ids(split)
    if not ids:
        raise CamflowInputError(f"{dataset.name}/{split} has no images to {purpose}")
    return ids


def _predict_split(checkpoint: str | Path, dataset: SegmentationDataset, ids: list[str],
                   scales: list[float], flip: bool, device: torch.device,
                   amp: bool = True) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(image_id, image, probs)`` of every id, ``probs`` by :func:`predict_probs`.  Lazy:
    the segmenter is loaded at the first draw — after the CRF workers of
    :func:`camflow.runtime.parallel_map` are forked — and must have the dataset's classes."""
    model = load_segmenter(checkpoint, device)
    class_names = list(dataset.class_names)
    if model.class_names != class_names:
        raise CamflowInputError(f"segmenter {checkpoint} has classes {model.class_names}, "
                                f"but dataset {dataset.name} has {class_names}")
    for image_id in ids:
        image = dataset.load_image(image_id)
        yield image_id, image, predict_probs(model, image, scales, flip, device, amp)


def _crf_prediction(params: dict[str, float], image: np.ndarray,
                    probs: np.ndarray) -> np.ndarray:
    """The CRF-refined prediction: argmax of the marginals of :func:`crf_scores`."""
    return np.argmax(crf_scores(image, probs.astype(np.float32), **params), axis=0)


def _crf_confusion(params: dict[str, float],
                   item: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Confusion matrix of the CRF-refined prediction of one ``(image, probs, mask)``."""
    image, probs, gt = item
    pred = _crf_prediction(params, image, probs)
    return ConfusionMatrix(probs.shape[0]).update(pred, gt).matrix


def evaluate_segmentation(checkpoint: str | Path, dataset: SegmentationDataset, split: str,
                          scales: list[float], flip: bool, crf: dict[str, float] | None,
                          device: torch.device, workers: int = 1, amp: bool = True,
                          progress: bool = True, single_scale: bool = False) -> dict[str, Any]:
    """Score a trained segmenter on every image of ``split`` against its masks.

    Prediction = argmax of :func:`predict_probs` (scales × flips).  If ``crf`` is a dict
    (``{}`` for PSA's defaults of :func:`crf_scores`, or overrides), the CRF-refined
    prediction (argmax of the CRF marginals) is scored too, over ``workers`` processes of
    :func:`camflow.runtime.parallel_map`: they are forked before the model is loaded, and at
    most ``2 × workers`` images wait for them (bounded memory).
    Returns an :func:`camflow.evaluate.evaluation_record` of kind ``segmentation``
    (provenance: checkpoint, scales, flip; ``crf``: the CRF-refined metrics with their
    ``params``, or None).  With ``single_scale`` the record's ``single_scale`` holds the
    metrics of the prediction at scale 1 without flip too (a second pass over the split
    unless that is the configured prediction): the "val" column of the segmentation tables.
    """
    scales = _check_scales(scales)
    params = _crf_parameters(crf)
    ids = _split_ids(dataset, split, "evaluate")
    class_names = list(dataset.class_names)
    n = len(class_names)
    conf = ConfusionMatrix(n)
    crf_conf = ConfusionMatrix(n)

    def predictions() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(image, probs, mask)`` of every image, the plain prediction scored on the way."""
        for image_id, image, probs in _predict_split(checkpoint, dataset, ids, scales, flip,
                                                     device, amp):
            gt = np.asarray(dataset.load_mask(image_id, split))
            if gt.shape != image.shape[:2]:
                raise CamflowInputError(
                    f"{dataset.name}: mask of {image_id!r} has size {gt.shape[1]}x{gt.shape[0]} "
                    f"but its image is {image.shape[1]}x{image.shape[0]}")
            conf.update(np.argmax(probs, axis=0), gt)
            yield image, probs, gt

    desc = f"segment {split}"
    if params is None:
        for _ in progress_bar(progress, iterable=predictions(), total=len(ids), desc=desc,
                              unit="img"):
            pass
    else:
        crf_parts = parallel_map(functools.partial(_crf_confusion, params), predictions(),
                                 workers, progress, desc, total=len(ids),
                                 max_pending=2 * max(workers, 1))
        for part in crf_parts:
            crf_conf.matrix += part
    metrics = segmentation_metrics(conf.matrix, class_names)
    if single_scale:
        single = conf
        if (scales, flip) != ([1.0], False):
            single = ConfusionMatrix(n)
            for image_id, _, probs in progress_bar(
                    progress, iterable=_predict_split(checkpoint, dataset, ids, [1.0], False,
                                                      device, amp),
                    total=len(ids), desc=f"segment {split} (scale 1)", unit="img"):
                single.update(np.argmax(probs, axis=0),
                              np.asarray(dataset.load_mask(image_id, split)))
        metrics["single_scale"] = segmentation_metrics(single.matrix, class_names)
    return evaluation_record(
        "segmentation", split, len(ids), metrics,
        {"checkpoint": str(checkpoint), "scales": scales, "flip": bool(flip)},
        None if params is None else {**segmentation_metrics(crf_conf.matrix, class_names),
                                     "params": params})


# ---------------------------------------------------------------------------------------------
# PASCAL VOC 2012 evaluation server

SUBMISSION_DIR = "results/VOC2012/Segmentation/comp6_test_cls"


def _label_map(params: dict[str, float] | None,
               item: tuple[str, np.ndarray, np.ndarray]) -> tuple[str, np.ndarray]:
    """``(image_id, uint8 class-index map)`` of one ``(image_id, image, probs)``: the argmax
    of ``probs``, or of the CRF marginals with ``params``."""
    image_id, image, probs = item
    pred = np.argmax(probs, axis=0) if params is None else _crf_prediction(params, image, probs)
    return image_id, pred.astype(np.uint8)


def export_submission(checkpoint: str | Path, dataset: SegmentationDataset, split: str,
                      scales: list[float], flip: bool, crf: dict[str, float] | None,
                      device: torch.device, out_tar: str | Path, workers: int = 1,
                      amp: bool = True, progress: bool = True) -> Path:
    """Write the PASCAL VOC 2012 evaluation server's archive of a trained segmenter's
    predictions on every image of ``split`` (VOC 2012 ``test``: images without masks).

    Each prediction is the one :func:`evaluate_segmentation` scores: the argmax of
    :func:`predict_probs` (``scales`` × flips) or, with ``crf`` (``{}`` for PSA's defaults,
    or overrides), of the dense CRF's marginals, over ``workers`` processes.  ``out_tar``, a
    gzip tar written atomically, holds one palette PNG per image at
    ``results/VOC2012/Segmentation/comp6_test_cls/<image_id>.png`` — the layout the server
    reads: the VOC colour map, the size of the image, pixel values the class indices 0..20.

    comp6, not comp5: VOC 2012's segmentation competition 5 is "train on VOC 2012 data",
    competition 6 "train on own data" (anything but the test images).  WSSS pipelines train
    on SBD's annotations (``train_aug``: labels from Hariharan et al.'s masks, not VOC 2012's)
    from ImageNet-initialised backbones, so they submit to comp6.  To submit, upload the
    archive as a VOC 2012 segmentation result at http://host.robots.ox.ac.uk:8080/ (an
    account is needed); the server's report gives the IoU of every class and the mIoU.  It
    scores the 1,456 ``test`` images only; another split gives an archive of the same layout,
    for a look at the predictions.
    """
    if tuple(dataset.class_names) != VOC12_CLASSES:
        raise CamflowInputError(
            f"the VOC 2012 evaluation server scores the 21 VOC classes; dataset "
            f"{dataset.name} has {list(dataset.class_names)}")
    scales = _check_scales(scales)
    params = _crf_parameters(crf)
    ids = _split_ids(dataset, split, "export")
    labels = parallel_map(
        functools.partial(_label_map, params),
        _predict_split(checkpoint, dataset, ids, scales, flip, device, amp),
        workers if params is not None else 1, progress, f"export {split}", total=len(ids),
        max_pending=2 * max(workers, 1))
    out = Path(out_tar)
    with (contextlib.closing(labels), atomic_path(out, ".tar.gz") as tmp,
          tarfile.open(tmp, "w:gz") as tar,
          tempfile.TemporaryDirectory(prefix="camflow-submission-") as scratch):
        for image_id, label in labels:
            png = Path(scratch) / f"{image_id}.png"
            write_label_png(png, label)
            tar.add(png, arcname=f"{SUBMISSION_DIR}/{image_id}.png")
    log.info("%s: %d predictions of %s/%s", out, len(ids), dataset.name, split)
    return out
