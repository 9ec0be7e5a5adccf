"""One function per pipeline stage, taking plain values; the Snakemake rules call these.

``workflow_scripts/*.py`` unpack the ``snakemake`` object into these calls, so each stage can
also be run and tested without Snakemake.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from camflow.data import build_dataset
from camflow.data.base import SegmentationDataset
from camflow.io import CamflowInputError
from camflow.runtime import select_device

log = logging.getLogger(__name__)


def open_dataset(data: dict[str, Any]) -> SegmentationDataset:
    """Open the dataset described by a rule's ``data`` params (name, root, cache_dir)."""
    return build_dataset(data["name"], data["root"], cache_dir=data.get("cache_dir"))


def run_synthetic(root: str, generate: dict[str, Any], workers: int) -> None:
    from camflow.data.synthetic_generator import SyntheticConfig, generate_synthetic

    generate_synthetic(root, SyntheticConfig(**generate), workers=workers)


def run_train_classifier(checkpoint: str, classifier: dict[str, Any], data: dict[str, Any],
                         runtime: dict[str, Any], workers: int) -> None:
    from camflow.training import train_classifier

    device = select_device(runtime["device"])
    log.info("training %s on %s/%s (%s)", checkpoint, data["name"], data["split"], device)
    train_classifier(classifier, open_dataset(data), data["split"], checkpoint, device,
                     workers=workers, amp=runtime["amp"])


def run_make_cams(cache: str, checkpoint: str, source: dict[str, Any], data: dict[str, Any],
                  runtime: dict[str, Any], workers: int) -> None:
    """Write the CAM cache of one source (``method`` cam, fullcam, gradcam or gradcampp)."""
    from camflow.methods.cam import make_cams
    from camflow.methods.sources import build_source
    from camflow.training import load_classifier

    device = select_device(runtime["device"])
    model = load_classifier(checkpoint, device)
    make_cams(build_source(model, source), open_dataset(data), data["split"], cache,
              scales=source["scales"], flip=source["flip"], batch_size=source["batch_size"],
              device=device, workers=workers, amp=runtime["amp"],
              provenance={**source, "checkpoint": str(checkpoint), "arch": model.arch})


def run_eval_cams(cache: str, json_path: str, csv_path: str, evaluation: dict[str, Any],
                  data: dict[str, Any], workers: int) -> None:
    from camflow.cache import CamCache
    from camflow.evaluate import evaluate_cams, write_eval

    dataset = open_dataset(data)
    crf = evaluation["crf"]
    crf_params = {k: v for k, v in crf.items() if k != "enabled"} if crf["enabled"] else None
    with CamCache(cache) as cams:
        result = evaluate_cams(cams, dataset, data["split"], list(evaluation["thresholds"]),
                               crf=crf_params, workers=max(1, workers))
    write_eval(result, json_path, csv_path, dataset.class_names)
    log.info("%s: best mIoU %.4f at threshold %.2f", cache, result["best"]["miou"],
             result["best_threshold"])


def run_cam_figure(cache: str, eval_json: str, data: dict[str, Any], out_png: str) -> None:
    from camflow.figures import cam_figure

    cam_figure(cache, eval_json, open_dataset(data), data["split"], out_png)


def run_gslm_stage_figure(caches: list[str], evals: list[str], data: dict[str, Any],
                          title: str, out_png: str) -> None:
    from camflow.figures import gslm_stage_figure

    gslm_stage_figure(caches, evals, open_dataset(data), data["split"], title, out_png)


def run_table_figure(name: str, inputs: list[str], spec: dict[str, Any], dataset: str,
                     out_png: str) -> None:
    from camflow.figures import TABLE_FIGURES

    if name not in TABLE_FIGURES:
        raise CamflowInputError(f"table {name!r} has no figure; tables with one: "
                                f"{', '.join(TABLE_FIGURES)}")
    evals = [json.loads(Path(p).read_text()) for p in inputs]
    TABLE_FIGURES[name](evals, spec, dataset, out_png)


def run_table(name: str, inputs: list[str], spec: dict[str, Any], dataset: str, csv_path: str,
              md_path: str) -> None:
    from camflow.tables import build_table

    evals = [json.loads(Path(p).read_text()) for p in inputs]
    table = build_table(name, evals, spec, dataset)
    table.write(csv_path, md_path)
    print(table.markdown())


def run_affinity_labels(cache: str, out_path: str, params: dict[str, Any],
                        data: dict[str, Any], workers: int) -> None:
    from camflow.cache import CamCache
    from camflow.refine.affinity_labels import make_affinity_labels

    with CamCache(cache) as cams:
        make_affinity_labels(cams, open_dataset(data), data["split"], params, out_path,
                             workers=max(1, workers))


def run_train_refiner(out_path: str, refiner: dict[str, Any], labels: str, classifier: str,
                      data: dict[str, Any], runtime: dict[str, Any], workers: int) -> None:
    """Train IRN or AffinityNet (``refiner["method"]``) on affinity labels."""
    from camflow.cache import LabelCache
    from camflow.methods.affinitynet import train_affinitynet
    from camflow.methods.irn import train_irn

    train = train_irn if refiner["method"] == "irn" else train_affinitynet
    device = select_device(runtime["device"])
    log.info("training %s on %s (%s)", out_path, labels, device)
    with LabelCache(labels) as label_cache:
        train(refiner, open_dataset(data), label_cache, classifier, out_path, device,
              workers=workers, amp=runtime["amp"])


def run_random_walk(model: str, cache: str, refiner: dict[str, Any], data: dict[str, Any],
                    masks_dir: str, scores: str, runtime: dict[str, Any], workers: int) -> None:
    from camflow.cache import CamCache
    from camflow.refine.pseudo_masks import make_pseudo_masks

    with CamCache(cache) as cams:
        make_pseudo_masks(refiner["method"], model, cams, open_dataset(data), data["split"],
                          refiner["random_walk"], masks_dir, scores,
                          select_device(runtime["device"]), workers=max(1, workers))


def run_eval_masks(masks_dir: str, json_path: str, data: dict[str, Any], workers: int) -> None:
    from camflow.evaluate import evaluate_masks
    from camflow.io import write_json

    result = evaluate_masks(masks_dir, open_dataset(data), data["split"], workers=max(1, workers))
    write_json(json_path, result)
    log.info("%s: mIoU %.4f", masks_dir, result["miou"])


def run_train_segmentation(out_path: str, segmenter: dict[str, Any], masks_dir: str | None,
                           data: dict[str, Any], runtime: dict[str, Any], workers: int) -> None:
    """Train DeepLab on pseudo masks (``masks_dir``) or on the ground truth (None)."""
    from camflow.segmentation import train_segmentation

    device = select_device(runtime["device"])
    log.info("training %s on %s/%s with %s masks (%s)", out_path, data["name"], data["split"],
             masks_dir or "ground-truth", device)
    train_segmentation(segmenter, open_dataset(data), data["split"], masks_dir, out_path, device,
                       workers=workers, amp=runtime["amp"])


def run_eval_segmentation(checkpoint: str, json_path: str, evaluation: dict[str, Any],
                          data: dict[str, Any], runtime: dict[str, Any], workers: int) -> None:
    from camflow.io import write_json
    from camflow.segmentation import evaluate_segmentation

    crf = evaluation["crf"]
    crf_params = {k: v for k, v in crf.items() if k != "enabled"} if crf["enabled"] else None
    result = evaluate_segmentation(checkpoint, open_dataset(data), data["split"],
                                   evaluation["scales"], evaluation["flip"], crf_params,
                                   select_device(runtime["device"]), workers=max(1, workers),
                                   amp=runtime["amp"])
    write_json(json_path, result)
    log.info("%s on %s: mIoU %.4f", checkpoint, data["split"], result["miou"])


def run_train_slm(out_path: str, slm: dict[str, Any], previous: str, confidence: str,
                  data: dict[str, Any], runtime: dict[str, Any], workers: int) -> None:
    """One GSLM Specific Learning stage from the previous stage's checkpoint, on a confidence
    CAM (label cache) or, without Coarse Generation, on the previous CAM cache itself."""
    from camflow.cache import open_cache
    from camflow.methods.gslm import train_slm

    device = select_device(runtime["device"])
    log.info("training %s from %s on %s (%s)", out_path, previous, confidence, device)
    with open_cache(confidence) as maps:
        train_slm(slm, open_dataset(data), maps, previous, out_path, device, workers=workers,
                  amp=runtime["amp"])
