"""Figures people would rather look at than read: CAM overlays, the threshold curve, the
per-class IoU of a table's records, the per-stage GSLM overlays and the curves of GSLM
(Mai et al.) Figs. 5 and 8."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from camflow.cache import CamCache  # noqa: E402
from camflow.data.base import SegmentationDataset  # noqa: E402
from camflow.evaluate import cam_to_seed  # noqa: E402
from camflow.io import atomic_path, voc_palette  # noqa: E402


def _colour(mask: np.ndarray) -> np.ndarray:
    palette = np.asarray(voc_palette(), dtype=np.uint8).reshape(256, 3)
    return palette[mask]


def _save(fig: Any, out_png: str | Path) -> None:
    fig.tight_layout()
    with atomic_path(out_png, ".png") as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def training_curve(metrics_csv: str | Path) -> Path:
    """The training curve of a trained stage: every loss term and the learning rate(s)
    against the step, from its ``metrics.csv``; written beside it as ``training_curve.png``."""
    import pandas as pd

    metrics = pd.read_csv(metrics_csv)
    lrs = [c for c in metrics.columns if c == "lr" or c.startswith("lr_")]
    terms = [c for c in metrics.columns if c not in ("step", "epoch", *lrs)]
    fig, (loss_ax, lr_ax) = plt.subplots(2, 1, figsize=(7, 5), sharex=True,
                                         gridspec_kw={"height_ratios": [3, 1]})
    window = max(1, len(metrics) // 50)
    for term in terms:
        loss_ax.plot(metrics["step"], metrics[term].rolling(window, min_periods=1).mean(),
                     label=term)
    loss_ax.set_ylabel(f"loss (running mean of {window})")
    loss_ax.legend(fontsize=7)
    for lr in lrs:
        lr_ax.plot(metrics["step"], metrics[lr], label=lr)
    lr_ax.set_xlabel("step")
    lr_ax.set_ylabel("lr")
    loss_ax.set_title(str(metrics_csv), fontsize=8)
    out = Path(metrics_csv).with_name("training_curve.png")
    _save(fig, out)
    return out


def cam_figure(cache_path: str | Path, eval_path: str | Path, dataset: SegmentationDataset,
               split: str, out_png: str | Path, n_images: int = 6,
               dataset_name: str | None = None) -> None:
    """Per image: the image, its mask, the CAM (max over classes) and the seed at the best
    threshold; plus mIoU, m_under and m_over against the threshold. ``dataset_name`` (the
    config's name, default the dataset's format) heads the figure."""
    result: dict[str, Any] = json.loads(Path(eval_path).read_text())
    threshold = result["threshold"]
    with CamCache(cache_path) as cache:
        ids = [i for i in dataset.ids(split) if i in cache][:n_images]
        fig, axes = plt.subplots(4, len(ids) + 1, figsize=(2.2 * (len(ids) + 1), 8.8),
                                 squeeze=False)
        for col, image_id in enumerate(ids):
            image = dataset.load_image(image_id)
            keys, cams = cache.read(image_id)
            heat = cams.max(axis=0) if len(keys) else np.zeros(image.shape[:2])
            names = ", ".join(dataset.class_names[k] for k in keys)
            axes[0, col].imshow(image)
            axes[0, col].set_title(f"{image_id}\n{names}", fontsize=7)
            axes[1, col].imshow(_colour(dataset.load_mask(image_id, split)))
            axes[2, col].imshow(image)
            axes[2, col].imshow(heat, cmap="jet", alpha=0.5, vmin=0, vmax=1)
            axes[3, col].imshow(_colour(cam_to_seed(keys, cams, threshold)))
        for row, label in enumerate(("image", "ground truth", "CAM", f"seed @ {threshold:.2f}")):
            axes[row, 0].set_ylabel(label)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in axes[:, -1]:
            ax.remove()
    curve = fig.add_subplot(1, len(ids) + 1, len(ids) + 1)
    curve.plot(result["sweep"]["thresholds"], [100 * v for v in result["sweep"]["miou"]], "o-",
               color="black", label="seed mIoU (%)")
    curve.axvline(threshold, color="grey", linestyle=":")
    curve.set_xlabel("background threshold")
    curve.set_ylabel("mIoU (%)")
    ratios = curve.twinx()
    for key, style, colour in (("m_under", "s--", "tab:blue"), ("m_over", "^--", "tab:orange")):
        values = [np.nan if v is None else v for v in result["sweep"][key]]
        ratios.plot(result["sweep"]["thresholds"], values, style, color=colour, markersize=3,
                    label=key)
    ratios.set_ylabel("m_under / m_over")
    lines = curve.get_legend_handles_labels()[0] + ratios.get_legend_handles_labels()[0]
    ratios.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="upper center",
                  bbox_to_anchor=(0.5, -0.16), ncol=1)
    curve.set_title(f"best {100 * result['miou']:.1f}% @ {threshold:.2f}\n"
                    f"m_under {result['m_under']:.2f}  m_over {result['m_over']:.2f}",
                    fontsize=8)
    curve.grid(alpha=0.3)
    source = (result.get("provenance") or {}).get("method", "cam")
    fig.suptitle(f"{dataset_name or dataset.name} / {split} — source {source}", fontsize=10)
    _save(fig, out_png)


def class_iou_figure(records: dict[str, dict[str, Any]], title: str,
                     out_png: str | Path) -> None:
    """Grouped bars of the per-class IoU (%) of each record of a table, by key (records
    without ``per_class`` are left out)."""
    records = {k: r for k, r in records.items() if r.get("per_class")}
    classes = [c["class"] for c in next(iter(records.values()))["per_class"]] if records else []
    width = 0.8 / max(1, len(records))
    fig, ax = plt.subplots(figsize=(max(10.0, 0.25 * len(classes) * max(2, len(records))), 4.5))
    x = np.arange(len(classes))
    for i, (key, record) in enumerate(records.items()):
        iou = {c["class"]: c["iou"] for c in record["per_class"]}
        ax.bar(x + (i - (len(records) - 1) / 2) * width,
               [100 * (iou.get(c) or 0.0) for c in classes], width,
               label=f"{key} ({100 * record['miou']:.1f})")
    ax.set_xticks(x, classes, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=max(1, len(records) // 8), title="record (mIoU %)",
              title_fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title, fontsize=9)
    _save(fig, out_png)


def gslm_stage_figure(caches: list[str], evals: list[str], dataset: SegmentationDataset,
                      split: str, title: str, out_png: str | Path, n_images: int = 4,
                      dataset_name: str | None = None) -> None:
    """GSLM (Mai et al.) Fig. 4: the CAM (max over the image's classes) of every GSLM
    stage, overlaid on a few images, with each stage's seed mIoU in the column title."""
    results = [json.loads(Path(p).read_text()) for p in evals]
    readers = [CamCache(p) for p in caches]
    try:
        ids = [i for i in dataset.ids(split) if all(i in r for r in readers)][:n_images]
        fig, axes = plt.subplots(len(ids), len(readers) + 2, squeeze=False,
                                 figsize=(2.2 * (len(readers) + 2), 2.2 * len(ids)))
        for row, image_id in enumerate(ids):
            image = dataset.load_image(image_id)
            axes[row, 0].imshow(image)
            axes[row, 0].set_ylabel(image_id, fontsize=7)
            axes[row, 1].imshow(_colour(dataset.load_mask(image_id, split)))
            for col, reader in enumerate(readers, start=2):
                keys, cams = reader.read(image_id)
                heat = cams.max(axis=0) if len(keys) else np.zeros(image.shape[:2])
                axes[row, col].imshow(image)
                axes[row, col].imshow(heat, cmap="jet", alpha=0.5, vmin=0, vmax=1)
    finally:
        for reader in readers:
            reader.close()
    axes[0, 0].set_title("image", fontsize=8)
    axes[0, 1].set_title("ground truth", fontsize=8)
    for n, result in enumerate(results, start=1):
        axes[0, n + 1].set_title(f"stage {n}\nmIoU {100 * result['miou']:.1f}%",
                                 fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title} — {dataset_name or dataset.name} / {split}", fontsize=10)
    _save(fig, out_png)


def saliency_figure(cache_path: str | Path, eval_path: str | Path,
                    dataset: SegmentationDataset, split: str, title: str, out_png: str | Path,
                    n_images: int = 4, dataset_name: str | None = None) -> None:
    """P-NOC (David et al.) Fig. 8: per image, the image, its ground truth, the saliency map
    over the image and the salient region at the threshold of the ground-truth evaluation
    (``eval_path``, Table 6's GT row), whose mIoU the column title gives."""
    from camflow.cache import SaliencyCache

    record = json.loads(Path(eval_path).read_text())
    with SaliencyCache(cache_path) as cache:
        ids = [i for i in dataset.ids(split) if i in cache][:n_images]
        fig, axes = plt.subplots(len(ids), 4, squeeze=False, figsize=(8.8, 2.2 * len(ids)))
        for row, image_id in enumerate(ids):
            image = dataset.load_image(image_id)
            sal = cache.saliency(image_id)
            axes[row, 0].imshow(image)
            axes[row, 0].set_ylabel(image_id, fontsize=7)
            axes[row, 1].imshow(_colour(dataset.load_mask(image_id, split)))
            axes[row, 2].imshow(image)
            axes[row, 2].imshow(sal, cmap="jet", alpha=0.5, vmin=0, vmax=1)
            axes[row, 3].imshow(sal >= record["threshold"], cmap="gray", vmin=0, vmax=1)
    for col, name in enumerate(("image", "ground truth", "saliency",
                                f"salient (≥ {record['threshold']:.2f})\n"
                                f"GT priors: mIoU {100 * record['miou']:.1f}%")):
        axes[0, col].set_title(name, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title} — {dataset_name or dataset.name} / {split}", fontsize=10)
    _save(fig, out_png)


def gslm_fig5_figure(evals: dict[str, dict[str, Any]], spec: dict[str, Any], dataset: str,
                     out_png: str | Path) -> None:
    """GSLM (Mai et al.) Fig. 5: seed mIoU, m_under (Eq. 7) and m_over (Eq. 8) against the
    stage, one line per configuration (with / without the boundary constraint)."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    it = iter(evals.values())
    for name in spec["rows"]:
        stages = list(range(1, spec["stages"][name] + 1))
        best = [next(it) for _ in stages]
        for ax, key, scale in zip(axes, ("miou", "m_under", "m_over"), (100, 1, 1),
                                  strict=True):
            ax.plot(stages, [scale * b[key] for b in best], "o-", label=name)
    for ax, label in zip(axes, ("(a) seed mIoU (%)", "(b) m_under", "(c) m_over"),
                         strict=True):
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("stage")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"GSLM per stage (GSLM, Mai et al., Fig. 5) — {dataset}, {spec['classifier']}",
                 fontsize=10)
    _save(fig, out_png)


def gslm_fig8_figure(evals: dict[str, dict[str, Any]], spec: dict[str, Any], dataset: str,
                     out_png: str | Path) -> None:
    """GSLM (Mai et al.) Fig. 8: (a) the seed mIoU curve over the CAM threshold for each
    (θ_bg, θ_fg), (b) the same for each k, (c) the best mIoU against the SLM iterations."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    it = iter(evals.values())
    for ax, sweep, label in ((axes[0], "thresholds", "θ_bg/θ_fg"), (axes[1], "k", "k")):
        for value, _, _ in spec["variants"][sweep]:
            ev = next(it)
            ax.plot(ev["sweep"]["thresholds"], [100 * v for v in ev["sweep"]["miou"]], "-",
                    label=f"{label} {value}")
        ax.set_xlabel("CAM threshold")
        ax.legend(fontsize=7)
    points = spec["variants"]["iterations"]
    axes[2].plot([int(v) for v, _, _ in points],
                 [100 * next(it)["miou"] for _ in points], "o-")
    axes[2].set_xlabel("SLM iterations")
    axes[2].xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    for ax, title in zip(axes, ("(a) θ_bg, θ_fg", "(b) k", "(c) iterations"), strict=True):
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("seed mIoU (%)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"GSLM sensitivity (GSLM, Mai et al., Fig. 8) — {dataset}, {spec['classifier']}, "
                 f"sweeps at stage {spec['sweep_stage']}", fontsize=10)
    _save(fig, out_png)


def claims_figure(evals: dict[str, dict[str, Any]], spec: dict[str, Any], dataset: str,
                  out_png: str | Path) -> None:
    """The claims table as bars: per claim (top to bottom, as in the table) and benchmark, the
    margin in the direction the paper states, relative to the number it is compared with
    (green: the claim holds; red: it does not)."""
    from camflow.claims import RELATIONS
    from camflow.tables import Claims

    claims = Claims(spec)
    outcomes = claims.outcomes(evals, dataset)
    datasets = claims.datasets(dataset)
    height = 0.8 / len(datasets)
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.32 * len(outcomes) * len(datasets)))
    for row, (_, comp, cells) in enumerate(outcomes):
        for i, ds in enumerate(datasets):
            left, right, holds = cells[ds]
            if holds is None:
                continue
            sign = 1 if RELATIONS[comp.relation](1, 0) else -1
            margin = 100 * sign * (left - right) / max(abs(right), 1e-9)
            y = row + (i - (len(datasets) - 1) / 2) * height
            ax.barh(y, margin, height * 0.9, color="tab:green" if holds else "tab:red",
                    alpha=1.0 - 0.45 * i / max(1, len(datasets) - 1))
            ax.text(margin, y, f" {ds}", va="center", fontsize=6,
                    ha="left" if margin >= 0 else "right")
    ax.set_yticks(range(len(outcomes)),
                  [f"{comp.statement} ({comp.metrics})" for _, comp, _ in outcomes], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("margin in the claimed direction, relative to the right-hand number (%)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"Do the papers' claims hold? — {', '.join(datasets)}", fontsize=9)
    _save(fig, out_png)


def pnoc_fig6_figure(evals: dict[str, dict[str, Any]], spec: dict[str, Any], dataset: str,
                     out_png: str | Path) -> None:
    """P-NOC (David et al.) Fig. 6: (a) the priors' mIoU and (b) their false positive
    (dashed) and false negative (solid) rates against the foreground threshold, one colour
    per strategy, each curve the mean over the strategy's replicates (the TTA priors)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, (label, names) in enumerate(spec["replicates"].items()):
        sweeps = [evals[f"{label}/r{r}/tta"]["sweep"] for r in range(len(names))]
        ts = sweeps[0]["thresholds"]
        colour = f"C{i % 10}"

        def curve(key: str, sweeps: list[dict[str, Any]] = sweeps) -> list[float] | None:
            if any(key not in s or None in s[key] for s in sweeps):
                return None
            return [100 * float(np.mean(v)) for v in zip(*(s[key] for s in sweeps),
                                                         strict=True)]

        axes[0].plot(ts, curve("miou"), "-", color=colour, label=label)
        for key, style in (("fn_rate", "-"), ("fp_rate", "--")):
            values = curve(key)
            if values is not None:
                axes[1].plot(ts, values, style, color=colour,
                             label=f"{label} {'FNR' if key == 'fn_rate' else 'FPR'}")
    for ax, title, ylabel in ((axes[0], "(a) mIoU", "mIoU (%)"),
                              (axes[1], "(b) FPR (dashed) / FNR (solid)", "rate (%)")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("foreground threshold δ_fg")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    fig.suptitle(f"Threshold sensitivity (P-NOC, David et al., Fig. 6) — {dataset}",
                 fontsize=10)
    _save(fig, out_png)


TABLE_FIGURES = {"gslm_fig5": gslm_fig5_figure, "gslm_fig8": gslm_fig8_figure,
                 "claims": claims_figure, "pnoc_fig6": pnoc_fig6_figure}
