"""Seed evaluation: threshold CAMs from any CAM cache and score them against the masks.

A seed is the argmax over the class maps with a constant background score (the threshold)
stacked in front (IRN; ``docs/fidelity.md``, "Conventions of the base pipeline").  The evaluator
sweeps a list of thresholds in one streaming pass over the images, reports the mIoU curve and
the best threshold, and optionally scores the CRF-refined seed at that threshold (IRN's label
CRF, :func:`camflow.refine.crf.crf_labels`).  Memory is one confusion matrix per threshold,
whatever the number of images.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import inspect
import io
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from camflow.cache import CamCache
from camflow.data.base import IGNORE_INDEX, SegmentationDataset
from camflow.io import CamflowInputError, read_label_png, write_json, write_text
from camflow.refine.crf import crf_label_marginals
from camflow.runtime import parallel_map, progress_bar

log = logging.getLogger(__name__)


class ConfusionMatrix:
    """Streaming confusion matrix; ``matrix[g, p]`` counts pixels of true class g predicted p.

    Pixels whose ground truth is 255 (ignore) are skipped.  Memory is ``n_classes²`` integers,
    independent of the number of images.
    """

    def __init__(self, n_classes: int) -> None:
        self.n_classes = int(n_classes)
        self.matrix = np.zeros((self.n_classes, self.n_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> ConfusionMatrix:
        """Add one prediction/ground-truth pair (same shape, class indices)."""
        pred, gt = np.asarray(pred), np.asarray(gt)
        if pred.shape != gt.shape:
            raise CamflowInputError(
                f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}"
            )
        valid = gt != IGNORE_INDEX
        g = gt[valid].astype(np.int64)
        p = pred[valid].astype(np.int64)
        n = self.n_classes
        for name, values in (("ground truth", g), ("prediction", p)):
            if values.size and (values.min() < 0 or values.max() >= n):
                raise CamflowInputError(
                    f"{name} has class indices {values.min()}..{values.max()}, "
                    f"outside 0..{n - 1} (255 = ignore)"
                )
        self.matrix += np.bincount(n * g + p, minlength=n * n).reshape(n, n)
        return self

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add the counts of ``other`` (same number of classes) to this matrix."""
        if other.n_classes != self.n_classes:
            raise CamflowInputError(
                f"cannot merge confusion matrices of {other.n_classes} and {self.n_classes} classes"
            )
        self.matrix += other.matrix
        return self


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def segmentation_metrics(conf: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """IoU/precision/recall per class, mIoU, and the under/over-activation degrees.

    ``conf[g, p]`` counts pixels of true class g predicted as p; class 0 is background.

    * ``miou``: mean IoU over the classes present in the ground truth or the prediction
      (union > 0), background included (PASCAL VOC convention).
    * ``m_under`` = mean_c FN_c / TP_c and ``m_over`` = mean_c FP_c / TP_c over the
      foreground classes c (GSLM (Mai et al.) Eq. 7–8, after Lee et al.).  Eq. 7–8 divide by
      C−1 and are undefined when TP_c = 0, so the mean is taken over the foreground classes
      with TP_c > 0 only; the others (never hit, or absent) are listed by name in
      ``excluded_classes``.  Both are ``None`` if no foreground class has TP_c > 0.
    * ``fp_rate`` = mean_c FP_c / U_c and ``fn_rate`` = mean_c FN_c / U_c over the classes of
      the mIoU (U_c = TP_c + FP_c + FN_c, so IoU_c + both = 1): the false positive and false
      negative rates of P-NOC (David et al.) Fig. 6 (its code's ``MIoUCalculator``).

    Undefined per-class ratios (zero denominator) are ``None``.  Returns a JSON-ready dict.
    """
    conf = np.asarray(conf, dtype=np.int64)
    n = len(class_names)
    if conf.shape != (n, n):
        raise CamflowInputError(
            f"confusion matrix has shape {conf.shape}; expected ({n}, {n}) for {n} classes"
        )
    tp = np.diag(conf)
    fp = conf.sum(axis=0) - tp
    fn = conf.sum(axis=1) - tp
    union = tp + fp + fn
    per_class = [
        {
            "class": str(class_names[c]),
            "iou": _ratio(tp[c], union[c]),
            "precision": _ratio(tp[c], tp[c] + fp[c]),
            "recall": _ratio(tp[c], tp[c] + fn[c]),
            "tp": int(tp[c]),
            "fp": int(fp[c]),
            "fn": int(fn[c]),
        }
        for c in range(n)
    ]
    present = union > 0
    miou = float(np.mean(tp[present] / union[present])) if present.any() else None
    rates = {name: float(np.mean(x[present] / union[present])) if present.any() else None
             for name, x in (("fp_rate", fp), ("fn_rate", fn))}
    fg = np.arange(1, n)
    hit = fg[tp[fg] > 0]
    return {
        "miou": miou,
        "m_under": float(np.mean(fn[hit] / tp[hit])) if hit.size else None,
        "m_over": float(np.mean(fp[hit] / tp[hit])) if hit.size else None,
        **rates,
        "excluded_classes": [str(class_names[c]) for c in fg if tp[c] == 0],
        "per_class": per_class,
    }


def seed_channels(cams: np.ndarray, threshold: float) -> np.ndarray:
    """Channel index per pixel of ``[threshold, *cams]``: 0 background, i the i-th map."""
    if cams.shape[0] == 0:
        return np.zeros(cams.shape[1:], dtype=np.int64)
    bg = np.full((1, *cams.shape[1:]), threshold, dtype=cams.dtype)
    return np.argmax(np.concatenate([bg, cams]), axis=0)


def channel_lut(keys: np.ndarray) -> np.ndarray:
    """Channel → class lookup: channel 0 is background, channel i is ``keys[i-1]``."""
    return np.concatenate([[0], np.asarray(keys, dtype=np.int64)])


def cam_to_seed(keys: np.ndarray, cams: np.ndarray, threshold: float) -> np.ndarray:
    """Seed labels (uint8 H×W) from class maps ``cams`` (n_keys×H×W) of classes ``keys``.

    A background map equal to ``threshold`` is stacked in front of the class maps and the
    argmax is taken (IRN; docs/fidelity.md, conventions); ties go to background (it comes
    first), ties between classes to the earlier map.  The threshold is compared at the precision of
    ``cams``.  With no keys every pixel is background.
    """
    cams = np.asarray(cams)
    if cams.ndim != 3 or cams.shape[0] != len(keys):
        raise CamflowInputError(
            f"cam_to_seed: cams shape {cams.shape} does not match {len(keys)} keys"
        )
    return channel_lut(keys)[seed_channels(cams, threshold)].astype(np.uint8)


def crf_seed(image: np.ndarray | None, keys: np.ndarray, cams: np.ndarray, threshold: float,
             crf: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The "+CRF" seed: IRN's label CRF of the seed of ``cams`` (classes ``keys``) at
    background score ``threshold``.  Returns ``(channels H×W, marginals
    (len(keys)+1)×H×W)``; with no class every pixel is background (``image`` unused)."""
    channels = seed_channels(cams, threshold)
    if not keys.size:
        return channels, np.ones((1, *channels.shape), dtype=np.float32)
    q = crf_label_marginals(image, channels, keys.size + 1, **crf)
    return np.argmax(q, axis=0), q


def _sweep_confusions(
    keys: np.ndarray, cams: np.ndarray, gt: np.ndarray, thresholds: np.ndarray, n: int
) -> np.ndarray:
    """Confusion matrices (T×n×n) of the seeds at every threshold, for one image.

    Equivalent to ``cam_to_seed`` per threshold: a pixel is foreground class
    ``keys[argmax]`` at threshold t iff its maximum map value m > t, else background.
    With ``thresholds`` sorted ascending, the pixel is foreground exactly for the first
    ``level = #{t_j < m}`` thresholds; one histogram over (level, gt, fg class) and cumulative
    sums over the levels give all T matrices without re-thresholding the image T times.

    The threshold is compared at the maps' precision, as ``cam_to_seed`` does, except for
    float16 maps (the CAM cache's stored maps, read without widening them): those give
    exactly the matrices of the same maps widened to float32 (:func:`_float16_thresholds`).
    """
    valid = gt != IGNORE_INDEX
    g = gt[valid].astype(np.int64)
    n_t = len(thresholds)
    if cams.shape[0]:
        peak = cams.max(axis=0)[valid]
        fg = keys[cams.argmax(axis=0)][valid]
        at = (_float16_thresholds(thresholds) if peak.dtype == np.float16
              else thresholds.astype(peak.dtype))
        level = np.searchsorted(at, peak, side="left")
    else:
        fg = np.zeros_like(g)
        level = np.zeros_like(g)
    hist = np.bincount((level * n + g) * n + fg, minlength=(n_t + 1) * n * n).reshape(n_t + 1, n, n)
    # foreground at threshold j: levels > j; background at threshold j: levels <= j
    fg_counts = np.cumsum(hist[::-1], axis=0)[::-1][1:]
    bg_counts = np.cumsum(hist.sum(axis=2), axis=0)[:n_t]
    fg_counts[:, :, 0] += bg_counts
    return fg_counts


def _float16_thresholds(thresholds: np.ndarray) -> np.ndarray:
    """The float16 thresholds t16 that float16 maps m are compared with so that ``m > t16``
    holds exactly when ``float32(m) > float32(t)``: t16 is the largest float16 not above
    float32(t) (rounding to nearest instead would move the pixels of the float16 value just
    above a threshold to background: 0.15 rounds up to 0.15002).  Proof: m > float32(t) ≥ t16
    gives m > t16; m > t16 gives m ≥ the next float16 above t16, which exceeds float32(t).
    Beyond the float16 range t16 is ±65504 or -inf, for which both sides agree as well."""
    t32 = np.asarray(thresholds).astype(np.float32)
    with np.errstate(over="ignore"):
        t16 = t32.astype(np.float16)
    above = t16.astype(np.float32) > t32
    t16[above] = np.nextafter(t16[above], np.float16(-np.inf))
    return t16


@dataclasses.dataclass(frozen=True)
class _Job:
    """What a worker needs to evaluate images by id (picklable: the cache pickles as a path)."""

    cache: CamCache
    dataset: SegmentationDataset
    split: str
    n_classes: int
    thresholds: np.ndarray
    crf_threshold: float = 0.0
    crf_params: dict[str, float] = dataclasses.field(default_factory=dict)

    def load(self, ids: Sequence[str], stored: bool = False
             ) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
        """``(image_id, keys, full-resolution cams, mask)`` of every id of ``ids``, sizes
        checked against each other (the dataset validates the mask's labels).

        The CAMs come from :meth:`~camflow.cache.CamCache.iter_read`, in the cache's file
        order: float32, or with ``stored`` as the cache stores them (float16 or float32)."""
        for image_id, keys, cams in self.cache.iter_read(
                ids, "full", dtype=None if stored else "float32"):
            gt = np.asarray(self.dataset.load_mask(image_id, self.split))
            if cams.shape[1:] != gt.shape:
                raise CamflowInputError(
                    f"image {image_id!r}: CAM in {self.cache.path} has size "
                    f"{cams.shape[2]}x{cams.shape[1]} but its mask is "
                    f"{gt.shape[1]}x{gt.shape[0]}")
            yield image_id, keys, cams, gt


def _sweep_chunk(job: _Job, ids: Sequence[str]) -> tuple[int, np.ndarray]:
    total = np.zeros((len(job.thresholds), job.n_classes, job.n_classes), dtype=np.int64)
    # the stored float16 maps: the same matrices as float32 maps (_float16_thresholds),
    # without widening them in the read and with a faster max / argmax
    for _, keys, cams, gt in job.load(ids, stored=True):
        total += _sweep_confusions(keys, cams, gt, job.thresholds, job.n_classes)
    return len(ids), total


def _crf_chunk(job: _Job, ids: Sequence[str]) -> tuple[int, np.ndarray]:
    conf = ConfusionMatrix(job.n_classes)
    for image_id, keys, cams, gt in job.load(ids):
        image = job.dataset.load_image(image_id) if keys.size else None
        channels, _ = crf_seed(image, keys, cams, job.crf_threshold, job.crf_params)
        conf.update(channel_lut(keys)[channels], gt)
    return len(ids), conf.matrix


_ChunkFunc = Callable[[Any, Sequence[str]], tuple[int, np.ndarray]]


def _run(
    func: _ChunkFunc, job: Any, ids: Sequence[str], workers: int, progress: bool, desc: str
) -> np.ndarray:
    """Sum ``func(job, chunk)`` over chunks of ``ids`` with :func:`camflow.runtime.parallel_map`
    (in-process when ``workers <= 1``); the progress bar counts images.

    Each pool worker receives the job once and opens its own cache handle
    (:class:`~camflow.cache.CamCache` reopens per process).  The sum of the integer matrices
    does not depend on the number of workers.
    """
    size = max(1, min(16, math.ceil(len(ids) / (4 * max(workers, 1)))))
    chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
    total = np.zeros((), dtype=np.int64)
    job_func = functools.partial(func, job)
    with progress_bar(progress, total=len(ids), desc=desc, unit="img") as bar:
        for count, part in parallel_map(job_func, chunks, workers, progress=False, chunksize=1):
            total = total + part
            bar.update(count)
    return total


@dataclasses.dataclass(frozen=True)
class _MaskJob:
    masks_dir: str
    dataset: SegmentationDataset
    split: str
    n_classes: int


def _mask_chunk(job: _MaskJob, ids: Sequence[str]) -> tuple[int, np.ndarray]:
    conf = ConfusionMatrix(job.n_classes)
    for image_id in ids:
        gt = np.asarray(job.dataset.load_mask(image_id, job.split))
        pred = read_label_png(Path(job.masks_dir) / f"{image_id}.png", image_id)
        if pred.shape != gt.shape:
            raise CamflowInputError(
                f"pseudo mask of {image_id!r} in {job.masks_dir} is {pred.shape[1]}x"
                f"{pred.shape[0]} but its ground truth is {gt.shape[1]}x{gt.shape[0]}")
        conf.update(pred, gt)
    return len(ids), conf.matrix


# A foreground class whose FN_c / TP_c or FP_c / TP_c exceeds this (TP_c under 1 % of its
# pixels or of its predictions) dominates m_under / m_over (GSLM Eq. 7–8): flagged, kept.
DEGENERATE_RATIO = 99.0


def degenerate_metric_warnings(metrics: dict[str, Any], threshold: float | None = None,
                               sweep: dict[str, list[Any]] | None = None) -> list[str]:
    """What makes a record's numbers misleading, in words: foreground classes hit by almost
    no true positive (their FN/TP or FP/TP ratios, above :data:`DEGENERATE_RATIO`, swamp the
    means of m_under / m_over) and a best threshold at the edge of the sweep (the optimum may
    lie outside it)."""
    out = []
    for row in metrics["per_class"][1:]:
        tp, fn, fp = row["tp"], row["fn"], row["fp"]
        if tp and max(fn, fp) > DEGENERATE_RATIO * tp:
            out.append(f"class {row['class']!r} has {tp} true positive pixels against {fn} "
                       f"false negatives and {fp} false positives: FN/TP {fn / tp:.0f}, "
                       f"FP/TP {fp / tp:.0f} dominate m_under / m_over")
    ts = (sweep or {}).get("thresholds") or []
    if threshold is not None and len(ts) > 1 and threshold in (min(ts), max(ts)):
        edge = "lowest" if threshold == min(ts) else "highest"
        out.append(f"the best threshold {threshold:g} is the {edge} of the sweep "
                   f"({min(ts):g}–{max(ts):g}): the optimum may lie outside it; extend "
                   f"evaluation.thresholds")
    return out


def evaluation_record(kind: str, split: str, n_images: int, metrics: dict[str, Any],
                      provenance: dict[str, Any], crf: dict[str, Any] | None = None,
                      threshold: float | None = None,
                      sweep: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    """The one shape of every evaluation (``eval.json``) that the tables read.

    ``kind`` is ``seeds`` (a CAM cache: ``threshold`` is the best background threshold and
    ``sweep`` the curves over all thresholds), ``masks`` (a pseudo-mask set) or
    ``segmentation`` (a segmenter's predictions).  The headline metrics (``miou``,
    ``m_under``, ``m_over``, ``excluded_classes``, ``per_class``, from
    :func:`segmentation_metrics`) sit at the top level; ``crf`` holds the same for the
    dense-CRF-refined result (with its ``params``), or None.  ``warnings`` lists
    :func:`degenerate_metric_warnings` (each also logged).
    """
    warnings = degenerate_metric_warnings(metrics, threshold, sweep)
    for warning in warnings:
        log.warning("%s evaluation on %s: %s", kind, split, warning)
    return {"kind": kind, "split": split, "n_images": n_images, "threshold": threshold,
            **metrics, "crf": crf, "provenance": provenance, "sweep": sweep,
            "warnings": warnings}


def evaluate_masks(masks_dir: str | os.PathLike, dataset: SegmentationDataset, split: str,
                   workers: int = 1, progress: bool = True) -> dict[str, Any]:
    """Score pseudo masks (palette PNGs ``<masks_dir>/<id>.png``) of every image of ``split``
    against its ground truth, with the seeds' metrics (:func:`segmentation_metrics`).  A
    mask pixel outside the class list (e.g. 255) is an error naming the image.

    Returns an :func:`evaluation_record` of kind ``masks``.
    """
    ids = dataset.ids(split)
    if not ids:
        raise CamflowInputError(f"{dataset.name}/{split} has no images to evaluate")
    job = _MaskJob(str(masks_dir), dataset, split, len(dataset.class_names))
    conf = _run(_mask_chunk, job, ids, workers, progress, f"masks {split}")
    return evaluation_record("masks", split, len(ids),
                             segmentation_metrics(conf, dataset.class_names),
                             {"masks": str(masks_dir)})


def crf_defaults() -> dict[str, float]:
    """Default parameters of the evaluation CRF: those of IRN's label CRF
    (:func:`camflow.refine.crf.crf_label_marginals`)."""
    return {
        name: p.default
        for name, p in inspect.signature(crf_label_marginals).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def evaluate_cams(
    cache: CamCache,
    dataset: SegmentationDataset,
    split: str,
    thresholds: Sequence[float],
    crf: dict[str, float] | None,
    workers: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate the seeds of every image of ``split`` from ``cache`` against its masks.

    One streaming pass computes the confusion matrices of all ``thresholds`` (see
    :func:`_sweep_confusions`); the best threshold t* maximises the mIoU (the lowest one on
    ties).  If ``crf`` is a dict (``{}`` for the defaults of :func:`crf_labels`, IRN's
    settings, or overrides of them), a second pass refines each seed at t* with the label CRF
    and scores it.  ``workers > 1`` runs both passes over a ``multiprocessing`` pool; the
    dataset object is then sent to the workers and must be picklable.

    Returns an :func:`evaluation_record` of kind ``seeds``: the metrics at the best threshold
    t* (``threshold``), the ``sweep`` over the sorted thresholds, and ``crf``: the metrics of
    the CRF-refined seeds at t* with their ``params``, or None.  Every id of the split must
    be in the cache; otherwise the error names the missing ids and the cache file.
    """
    class_names = list(dataset.class_names)
    if cache.class_names != class_names:
        raise CamflowInputError(
            f"CAM cache {cache.path} has classes {cache.class_names}, but dataset "
            f"{dataset.name} has {class_names}"
        )
    ts = np.unique(np.asarray(thresholds, dtype=np.float64))
    if ts.size == 0 or not np.isfinite(ts).all():
        raise CamflowInputError(f"thresholds must be a non-empty list of numbers, got {thresholds}")
    ids = dataset.ids(split)
    if not ids:
        raise CamflowInputError(f"{dataset.name}/{split} has no images to evaluate")
    cache.require(ids, f"{dataset.name}/{split}")
    params = crf_defaults()
    if crf is not None:
        unknown = sorted(set(crf) - set(params))
        if unknown:
            raise CamflowInputError(f"unknown CRF parameter(s) {unknown}; known: {sorted(params)}")
        params.update(crf)
    job = _Job(cache, dataset, split, len(class_names), ts)

    confs = _run(_sweep_chunk, job, ids, workers, progress, f"seeds {split}")
    sweep = [segmentation_metrics(c, class_names) for c in confs]
    curve = [m["miou"] for m in sweep]
    best = int(np.argmax([-1.0 if v is None else v for v in curve]))
    crf_result = None
    if crf is not None:
        crf_job = dataclasses.replace(job, crf_threshold=float(ts[best]), crf_params=params)
        conf = _run(_crf_chunk, crf_job, ids, workers, progress, f"crf {split}")
        crf_result = {**segmentation_metrics(conf, class_names), "params": params}
    result = evaluation_record(
        "seeds", split, len(ids), sweep[best], cache.provenance, crf_result,
        threshold=float(ts[best]),
        sweep={"thresholds": [float(t) for t in ts], "miou": curve,
               "m_under": [m["m_under"] for m in sweep], "m_over": [m["m_over"] for m in sweep],
               "fp_rate": [m["fp_rate"] for m in sweep],
               "fn_rate": [m["fn_rate"] for m in sweep]})
    return result


def write_eval(
    result: dict[str, Any],
    json_path: str | os.PathLike,
    csv_path: str | os.PathLike,
    class_names: Sequence[str],
) -> None:
    """Write ``result`` as JSON and a per-class CSV, both atomically.

    CSV columns: ``class, iou, precision, recall`` (+ ``crf_iou`` when the CRF was run); one
    row per class then a ``mean`` row (mIoU, and the mean precision/recall over the classes
    where they are defined).  Undefined values are empty cells.
    """
    names = [row["class"] for row in result["per_class"]]
    if names != list(class_names):
        raise CamflowInputError(f"evaluation result has classes {names}, expected {class_names}")
    crf = result.get("crf")
    columns = ["class", "iou", "precision", "recall"] + (["crf_iou"] if crf else [])

    def mean(values: Iterable[float | None]) -> float | None:
        defined = [v for v in values if v is not None]
        return float(np.mean(defined)) if defined else None

    rows = []
    for c, row in enumerate(result["per_class"]):
        out = [row["class"], row["iou"], row["precision"], row["recall"]]
        if crf:
            out.append(crf["per_class"][c]["iou"])
        rows.append(out)
    mean_row = [
        "mean",
        result["miou"],
        mean(r["precision"] for r in result["per_class"]),
        mean(r["recall"] for r in result["per_class"]),
    ]
    if crf:
        mean_row.append(crf["miou"])
    rows.append(mean_row)

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    write_json(json_path, result)
    write_text(csv_path, buf.getvalue())
