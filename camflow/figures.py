"""Figures people would rather look at than read: CAM overlays and the threshold curve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from camflow.cache import CamCache  # noqa: E402
from camflow.data.base import SegmentationDataset  # noqa: E402
from camflow.evaluate import cam_to_seed  # noqa: E402
from camflow.io import atomic_path, voc_palette  # noqa: E402


def _colour(mask: np.ndarray) -> np.ndarray:
    palette = np.asarray(voc_palette(), dtype=np.uint8).reshape(256, 3)
    return palette[mask]


def cam_figure(cache_path: str | Path, eval_path: str | Path, dataset: SegmentationDataset,
               split: str, out_png: str | Path, n_images: int = 6) -> None:
    """Per image: the image, its mask, the CAM (max over classes) and the seed at the best
    threshold; plus mIoU, m_under and m_over against the threshold."""
    result: dict[str, Any] = json.loads(Path(eval_path).read_text())
    threshold = result["best_threshold"]
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
    curve.plot(result["thresholds"], [100 * v for v in result["miou_curve"]], "o-",
               label="seed mIoU (%)")
    curve.axvline(threshold, color="grey", linestyle=":")
    curve.set_xlabel("background threshold")
    curve.set_ylabel("mIoU (%)")
    ratios = curve.twinx()
    for key, style in (("m_under_curve", "s--"), ("m_over_curve", "^--")):
        values = [np.nan if v is None else v for v in result.get(key, [])]
        if values:
            ratios.plot(result["thresholds"], values, style, markersize=3,
                        label=key.removesuffix("_curve"))
    ratios.set_ylabel("m_under / m_over")
    ratios.legend(fontsize=7, loc="upper right")
    best = result["best"]
    curve.set_title(f"best {100 * best['miou']:.1f}% @ {threshold:.2f}\n"
                    f"m_under {best['m_under']:.2f}  m_over {best['m_over']:.2f}", fontsize=8)
    curve.grid(alpha=0.3)
    source = (result.get("provenance") or {}).get("method", "cam")
    fig.suptitle(f"{dataset.name} / {split} — source {source}", fontsize=10)
    fig.tight_layout()
    with atomic_path(out_png, ".png") as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
