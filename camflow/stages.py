"""One function per pipeline stage, taking plain values; the Snakemake rules call these.

``workflow_scripts/*.py`` unpack the ``snakemake`` object into these calls, so each stage can
also be run and tested without Snakemake.
"""

from __future__ import annotations

import contextlib
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
    """Open the dataset described by a rule's ``data`` params (name, format, root,
    cache_dir); the format defaults to the name."""
    return build_dataset(data.get("format", data["name"]), data["root"],
                         cache_dir=data.get("cache_dir"))


def crf_settings(crf: dict[str, Any]) -> dict[str, Any] | None:
    """The CRF parameters of an evaluation's ``crf`` block, or None when it is not
    ``enabled``."""
    return {k: v for k, v in crf.items() if k != "enabled"} if crf["enabled"] else None


def run_check_dataset(report: str, data: dict[str, Any]) -> None:
    """Rule ``check_dataset``: every image of a split usable (one error naming every bad
    file), before any stage trains on or evaluates it."""
    from camflow.io import write_json

    result = open_dataset(data).validate_split(data["split"])
    write_json(report, result)
    log.info("%s/%s: %d images listed, %d kept", data["name"], data["split"], result["listed"],
             result["kept"])


def run_synthetic(root: str, generate: dict[str, Any], workers: int) -> None:
    from camflow.data.synthetic_generator import SyntheticConfig, generate_synthetic

    generate_synthetic(root, SyntheticConfig(**generate), workers=workers)


def run_train_classifier(checkpoint: str, classifier: dict[str, Any], data: dict[str, Any],
                         runtime: dict[str, Any], workers: int,
                         inputs: dict[str, str] | None = None,
                         epochs_dir: str | None = None) -> None:
    """Train a CAM network with its method (``classifier["method"]``); ``inputs`` are the
    method's input files (GSLM's SLM: the previous stage and its confidence CAM; OC-CSE: the
    ordinary classifier); ``epochs_dir`` keeps every epoch's checkpoint."""
    from camflow.figures import training_curve
    from camflow.methods.base import train_method
    from camflow.trainer import metrics_path

    device = select_device(runtime["device"])
    log.info("training %s (method %s) on %s/%s (%s)", checkpoint, classifier["method"],
             data["name"], data["split"], device)
    for name, path in (inputs or {}).items():
        log.info("  %s: %s", name, path)
    train_method(classifier, open_dataset(data), data["split"], checkpoint, device,
                 inputs=inputs, workers=workers, amp=runtime["amp"], epochs_dir=epochs_dir)
    training_curve(metrics_path(checkpoint))


def run_make_cams(cache: str, checkpoint: str, source: dict[str, Any], data: dict[str, Any],
                  runtime: dict[str, Any], workers: int) -> None:
    """Write the CAM cache of one source (``method`` cam, fullcam, gradcam or gradcampp)."""
    from camflow.methods.base import load_method
    from camflow.methods.cam import make_cams
    from camflow.methods.sources import build_source

    device = select_device(runtime["device"])
    trained = load_method(checkpoint, device)
    make_cams(build_source(trained, source), open_dataset(data), data["split"], cache,
              scales=source["scales"], flip=source["flip"], batch_size=source["batch_size"],
              grid=source["grid"], dtype=source["dtype"], device=device, workers=workers,
              amp=runtime["amp"],
              provenance={**source, "checkpoint": str(checkpoint),
                          "arch": trained.classifier.arch, "training": trained.name})


def run_eval_cams(cache: str, json_path: str, csv_path: str, evaluation: dict[str, Any],
                  data: dict[str, Any], workers: int) -> None:
    from camflow.cache import CamCache
    from camflow.evaluate import evaluate_cams, write_eval

    dataset = open_dataset(data)
    with CamCache(cache) as cams:
        result = evaluate_cams(cams, dataset, data["split"], list(evaluation["thresholds"]),
                               crf=crf_settings(evaluation["crf"]),
                               workers=max(1, workers))
    write_eval(result, json_path, csv_path, dataset.class_names)
    log.info("%s: best mIoU %.4f at threshold %.2f", cache, result["miou"], result["threshold"])


def run_eval_epochs(epochs_dir: str, json_path: str, evaluation: dict[str, Any],
                    data: dict[str, Any], runtime: dict[str, Any], workers: int) -> None:
    """Evaluate the priors of every epoch checkpoint in ``epochs_dir`` on ``data["split"]``
    without TTA (scale 1, no flip; P-NOC (David et al.) Tables 2 and 4, columns E1…E15):
    the threshold sweep of each, without CRF; ``evaluation`` gives the ``thresholds`` and
    the full-resolution ``grid`` (``cams.grid``).  Writes ``{"epochs": [{"epoch", "miou",
    "threshold", "m_under", "m_over", "sweep"}, ...]}``."""
    import tempfile

    from camflow.cache import CamCache
    from camflow.evaluate import evaluate_cams
    from camflow.io import write_json
    from camflow.methods.base import load_method
    from camflow.methods.cam import make_cams
    from camflow.methods.sources import build_source

    files = sorted(Path(epochs_dir).glob("epoch*.pt"))
    if not files:
        raise CamflowInputError(f"{epochs_dir}: no epoch checkpoint; is the classifier's "
                                "keep_epochs set?")
    device = select_device(runtime["device"])
    dataset = open_dataset(data)
    records = []
    with tempfile.TemporaryDirectory(dir=Path(json_path).parent) as tmp:
        for path in files:
            cache = Path(tmp) / f"{path.stem}.h5"
            make_cams(build_source(load_method(path, device), {"method": "cam"}), dataset,
                      data["split"], cache, scales=[1.0], flip=False, batch_size="auto",
                      grid=int(evaluation["grid"]),
                      device=device, workers=workers, amp=runtime["amp"], progress=False,
                      provenance={"checkpoint": str(path)})
            with CamCache(cache) as cams:
                result = evaluate_cams(cams, dataset, data["split"],
                                       list(evaluation["thresholds"]), crf=None,
                                       workers=max(1, workers), progress=False)
            records.append({"epoch": int(path.stem.removeprefix("epoch")),
                            **{k: result[k] for k in ("miou", "threshold", "m_under",
                                                      "m_over", "sweep")}})
            log.info("%s: mIoU %.4f at %.2f (no TTA)", path.name, result["miou"],
                     result["threshold"])
    write_json(json_path, {"kind": "epochs", "split": data["split"], "epochs": records})


def run_class_properties(json_path: str, data: dict[str, Any]) -> None:
    """O, %S, %C and L of every class on a split (P-NOC (David et al.) Tables 1 and 3)."""
    from camflow.class_properties import class_properties
    from camflow.io import write_json

    dataset = open_dataset(data)
    write_json(json_path, {"kind": "class_properties", "split": data["split"],
                           "format": data.get("format", data["name"]),
                           "classes": class_properties(dataset, data["split"])})


def run_cam_figure(cache: str, eval_json: str, data: dict[str, Any], out_png: str) -> None:
    from camflow.figures import cam_figure

    cam_figure(cache, eval_json, open_dataset(data), data["split"], out_png,
               dataset_name=data["name"])


def run_gslm_stage_figure(caches: list[str], evals: list[str], data: dict[str, Any],
                          title: str, out_png: str) -> None:
    from camflow.figures import gslm_stage_figure

    gslm_stage_figure(caches, evals, open_dataset(data), data["split"], title, out_png,
                      dataset_name=data["name"])


def run_saliency_figure(cache: str, evaluation: str, data: dict[str, Any], title: str,
                        out_png: str) -> None:
    from camflow.figures import saliency_figure

    saliency_figure(cache, evaluation, open_dataset(data), data["split"], title, out_png,
                    dataset_name=data["name"])


def read_records(inputs: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The evaluation records of a table, by key (in the table's order)."""
    return {key: json.loads(Path(path).read_text()) for key, path in inputs.items()}


def run_table_figure(name: str, inputs: dict[str, str], spec: dict[str, Any], dataset: str,
                     out_png: str) -> None:
    from camflow.figures import TABLE_FIGURES
    from camflow.tables import table_class

    figure = table_class(name).figure
    if figure is None:
        raise CamflowInputError(f"table {name!r} has no figure")
    TABLE_FIGURES[figure](read_records(inputs), spec, dataset, out_png)


def run_table(name: str, inputs: dict[str, str], spec: dict[str, Any], about: dict[str, str],
              dataset: str, out: dict[str, str]) -> None:
    """Rule ``table``: the table as CSV, Markdown and HTML (``out`` by suffix; ``about`` heads
    the page), and the per-class IoU of every record it reads (``out["classes"]``)."""
    from camflow.figures import class_iou_figure
    from camflow.tables import table_class

    records = read_records(inputs)
    table = table_class(name)(spec).build(records, dataset)
    table.write(out["csv"], out["md"], out["html"], about, spec)
    class_iou_figure(records, f"Per-class IoU — {about['title']} — {dataset}", out["classes"])
    print(table.markdown())


def run_affinity_labels(cache: str, out_path: str, params: dict[str, Any],
                        data: dict[str, Any], workers: int, saliency: str | None = None) -> None:
    """Rule ``affinity_labels`` (style ``saliency``: with the split's saliency cache)."""
    from camflow.cache import CamCache, SaliencyCache
    from camflow.refine.affinity_labels import make_affinity_labels

    with CamCache(cache) as cams, \
            SaliencyCache(saliency) if saliency else contextlib.nullcontext() as sal:
        make_affinity_labels(cams, open_dataset(data), data["split"], params, out_path,
                             workers=max(1, workers), saliency=sal)


def run_train_refiner(out_path: str, refiner: dict[str, Any], labels: str, classifier: str,
                      data: dict[str, Any], runtime: dict[str, Any], workers: int) -> None:
    """Train a learned refiner (``refiner["method"]``: IRN, AffinityNet, ...) on affinity
    labels, with the backbone of the CAM network at ``classifier``."""
    from camflow.cache import LabelCache
    from camflow.figures import training_curve
    from camflow.refine.refiners import refiner_class
    from camflow.trainer import Trainer, metrics_path

    cls = refiner_class(refiner["method"], "refiners.<name>.method")
    device = select_device(runtime["device"])
    log.info("training %s (%s) on %s (%s)", out_path, cls.name, labels, device)
    with LabelCache(labels) as label_cache:
        task = cls.training(refiner, open_dataset(data), label_cache, classifier, device)
        Trainer(task, refiner, Path(out_path), device,
                {"cfg": refiner, "labels": label_cache.provenance},
                workers=workers, amp=runtime["amp"]).fit(
            {"method": cls.name, "config": refiner, "classifier": str(classifier)})
    training_curve(metrics_path(out_path))


def run_refine(model: str | None, cache: str, refiner: dict[str, Any], data: dict[str, Any],
               masks_dir: str, scores: str, runtime: dict[str, Any], workers: int,
               seed_eval: str | None = None) -> None:
    """Pseudo masks of a CAM cache with any refiner (``refiner``: its method and inference
    settings; a ``threshold`` of ``best`` is read from the source's ``seed_eval``)."""
    from camflow.cache import CamCache
    from camflow.refine.pseudo_masks import make_pseudo_masks

    settings = dict(refiner["settings"])
    if settings.get("threshold") == "best":
        if seed_eval is None:
            raise CamflowInputError("threshold 'best' needs the source's seed evaluation")
        settings["threshold"] = json.loads(Path(seed_eval).read_text())["threshold"]
        log.info("best threshold of %s: %.2f", seed_eval, settings["threshold"])
    with CamCache(cache) as cams:
        make_pseudo_masks(refiner["method"], model, cams, open_dataset(data), data["split"],
                          settings, masks_dir, scores,
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
    from camflow.figures import training_curve
    from camflow.segmentation import train_segmentation
    from camflow.trainer import metrics_path

    device = select_device(runtime["device"])
    log.info("training %s on %s/%s with %s masks (%s)", out_path, data["name"], data["split"],
             masks_dir or "ground-truth", device)
    train_segmentation(segmenter, open_dataset(data), data["split"], masks_dir, out_path, device,
                       workers=workers, amp=runtime["amp"])
    training_curve(metrics_path(out_path))


def run_eval_segmentation(checkpoint: str, json_path: str, evaluation: dict[str, Any],
                          data: dict[str, Any], runtime: dict[str, Any], workers: int) -> None:
    from camflow.io import write_json
    from camflow.segmentation import evaluate_segmentation

    result = evaluate_segmentation(checkpoint, open_dataset(data), data["split"],
                                   evaluation["scales"], evaluation["flip"],
                                   crf_settings(evaluation["crf"]),
                                   select_device(runtime["device"]), workers=max(1, workers),
                                   amp=runtime["amp"],
                                   single_scale=evaluation.get("single_scale", False))
    write_json(json_path, result)
    log.info("%s on %s: mIoU %.4f", checkpoint, data["split"], result["miou"])


def run_export_submission(checkpoint: str, out_tar: str, evaluation: dict[str, Any],
                          data: dict[str, Any], runtime: dict[str, Any], workers: int) -> None:
    """Rule ``export_submission``: the VOC 2012 evaluation server's archive of a segmenter's
    predictions on a split, with the test-time settings of ``segmentation_eval``."""
    from camflow.segmentation import export_submission

    export_submission(checkpoint, open_dataset(data), data["split"], evaluation["scales"],
                      evaluation["flip"], crf_settings(evaluation["crf"]),
                      select_device(runtime["device"]), out_tar, workers=max(1, workers),
                      amp=runtime["amp"])


def git_commit(repo: Path) -> str:
    """The commit the workflow runs from (``-dirty`` with uncommitted changes), or
    ``unknown`` outside a git checkout."""
    import subprocess

    try:
        head = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head or "unknown"


def run_results_doc(tables: dict[str, list[str]], about: dict[str, dict[str, str]],
                    configfiles: list[str], dataset: str, out_md: str, out_dir: str) -> None:
    """Rule ``results_doc``: ``docs/results/{dataset}.md`` — each table's Markdown as built,
    what it shows and its figures (copied into ``out_dir``, linked relatively)."""
    import datetime
    import shutil

    from camflow.io import atomic_dir, write_text

    repo = Path(__file__).resolve().parents[1]
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Results on `{dataset}`", "",
        f"Generated by rule `results_doc` from the files under `results/{dataset}/` — do not "
        "edit; rebuild it (`docs/results.md` says how). Commit "
        f"`{git_commit(repo)}`, {when}; config files `{'`, `'.join(configfiles)}`.", "",
    ]
    shown: set[str] = set()
    with atomic_dir(out_dir) as tmp:
        for name, files in tables.items():
            md = next(f for f in files if f.endswith(".md"))
            text = Path(md).read_text().split("\n", 2)  # "### title", "", the table
            lines += [f"## {text[0].lstrip('# ')}", "", about[name]["description"], "",
                      text[2].rstrip(), ""]
            for png in (f for f in files if f.endswith(".png") and f not in shown):
                # results/{dataset}/a/b/figure.png -> a__b__figure.png; another benchmark's
                # (the claims table reads several) keeps its name: other__a__b__figure.png
                path = Path(png)
                own = path.is_relative_to(f"results/{dataset}")
                flat = "__".join(path.relative_to(f"results/{dataset}" if own else "results")
                                 .parts)
                shutil.copyfile(png, tmp / flat)
                lines += [f"![{flat}]({Path(out_dir).name}/{flat})", ""]
                shown.add(png)
    write_text(out_md, "\n".join(lines))


def run_train_saliency(out_path: str, saliency: dict[str, Any], inputs: dict[str, str],
                       data: dict[str, Any], runtime: dict[str, Any], workers: int) -> None:
    """Rule ``train_saliency``: train a learned saliency source (C²AM, C²AM-H, the binary
    segmenter of the "R." column) on the train split."""
    from camflow.figures import training_curve
    from camflow.saliency import saliency_method
    from camflow.trainer import metrics_path

    device = select_device(runtime["device"])
    log.info("training saliency %s (method %s) on %s/%s (%s)", out_path, saliency["method"],
             data["name"], data["split"], device)
    saliency_method(saliency["method"]).train(saliency, open_dataset(data), data["split"],
                                              inputs, out_path, device, workers,
                                              runtime["amp"])
    training_curve(metrics_path(out_path))


def run_make_saliency(out_path: str, saliency: dict[str, Any], inputs: dict[str, str],
                      model: str | None, data: dict[str, Any], runtime: dict[str, Any],
                      workers: int) -> None:
    """Rule ``make_saliency``: the saliency cache of a split, from any saliency source."""
    from camflow.saliency import saliency_method

    saliency_method(saliency["method"]).infer(saliency, open_dataset(data), data["split"],
                                              inputs, model, out_path,
                                              select_device(runtime["device"]), workers)


def run_saliency_masks(out_dir: str, cache: str, threshold: float, crf: Any,
                       data: dict[str, Any], workers: int) -> None:
    """Rule ``saliency_masks``: the pseudo-saliency masks a saliency refiner trains on."""
    from camflow.cache import SaliencyCache
    from camflow.saliency import pseudo_saliency_masks

    with SaliencyCache(cache) as sal:
        pseudo_saliency_masks(sal, open_dataset(data), data["split"], threshold, crf, out_dir,
                              workers=max(1, workers))


def run_eval_saliency(out_path: str, saliency: str, priors: str | None,
                      thresholds: list[float], data: dict[str, Any]) -> None:
    """Rule ``eval_saliency``: P-NOC Table 6's score of a saliency cache with a CAM cache's
    priors (or the ground truth: ``priors`` None)."""
    from camflow.cache import CamCache, SaliencyCache
    from camflow.io import write_json
    from camflow.saliency import evaluate_saliency

    with SaliencyCache(saliency) as sal, \
            CamCache(priors) if priors else contextlib.nullcontext() as cams:
        record = evaluate_saliency(sal, cams, open_dataset(data), data["split"], thresholds)
    write_json(out_path, record)
    log.info("%s: mIoU %.2f at saliency threshold %.2f", out_path, 100 * record["miou"],
             record["threshold"])
