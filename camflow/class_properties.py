"""Class properties of a dataset split and their groups, as P-NOC (David et al.) Tables 1 and 3
list them beside each strategy's per-class IoU.

For a class c over the images of the split whose labels contain c:

* **O**, label occurrence: the number of those images;
* **%S**, average relative size: the mean over them of c's share of the image's pixels (the
  background's: over every image);
* **%C**, co-occurrence rate: the share of them whose labels hold another class too;
* **L**, average label-set cardinality: the mean number of labels of those images.

Groups: the paper's for PASCAL VOC (size, frequency and semantic groups of Table 3);
for any other dataset, terciles of %S (small, mid, large) and of O (low, mid, high freq.),
computed.  The correlation rows are Pearson's ρ over the foreground classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from camflow.data.base import IGNORE_INDEX, SegmentationDataset
from camflow.runtime import progress_bar

PROPERTIES = ("O", "%S", "%C", "L")

#: P-NOC (David et al.) Table 3's groups of the 20 VOC classes (the dataset's class names).
VOC_GROUPS: dict[str, dict[str, list[str]]] = {
    "size": {
        "small": ["aeroplane", "bicycle", "bird", "boat", "bottle", "chair", "pottedplant"],
        "mid": ["car", "cow", "person", "tvmonitor"],
        "large": ["bus", "cat", "diningtable", "dog", "horse", "motorbike", "sheep", "sofa",
                  "train"],
    },
    "frequency": {
        "low freq.": ["bicycle", "boat", "bus", "cow", "horse", "sheep"],
        "mid freq.": ["aeroplane", "bottle", "diningtable", "motorbike", "pottedplant", "sofa",
                      "train", "tvmonitor"],
        "high freq.": ["bird", "car", "cat", "chair", "dog", "person"],
    },
    "group": {
        "singleton": ["aeroplane", "bird", "boat", "sheep", "train"],
        "person": ["person"],
        "animal": ["dog", "horse"],
        "room": ["bottle", "chair", "diningtable", "pottedplant", "sofa", "tvmonitor"],
        "traffic": ["bicycle", "bus", "car", "motorbike"],
    },
}


def class_properties(dataset: SegmentationDataset, split: str,
                     progress: bool = True) -> dict[str, dict[str, float | None]]:
    """O, %S (a ratio), %C (a ratio) and L of every class of ``dataset`` on ``split`` (module
    doc), by class name; a class absent from the split has O = 0 and the others None.
    Pixels labelled ``IGNORE_INDEX`` count in the image's size."""
    k = dataset.num_classes
    count = np.zeros(k + 1)
    size = np.zeros(k + 1)
    together = np.zeros(k + 1)
    cardinality = np.zeros(k + 1)
    labels = dataset.image_labels(split)
    ids = dataset.ids(split)
    for image_id in progress_bar(progress, iterable=ids, desc=f"class properties {split}"):
        mask = dataset.load_mask(image_id, split)
        pixels = np.bincount(mask[mask != IGNORE_INDEX].ravel(), minlength=k + 1)[: k + 1]
        present = list(labels[image_id])
        for c in [0, *present]:
            count[c] += 1
            size[c] += pixels[c] / mask.size
            together[c] += len(present) > 1
            cardinality[c] += len(present)
    names = dataset.class_names
    out = {}
    for c in range(k + 1):
        n = count[c]
        out[names[c]] = {"O": float(n),
                         "%S": float(size[c] / n) if n else None,
                         "%C": float(together[c] / n) if n and c else None,
                         "L": float(cardinality[c] / n) if n and c else None}
    out[names[0]]["O"] = None   # every image has background: no occurrence to report
    return out


def tercile_groups(values: dict[str, float], labels: Sequence[str]) -> dict[str, list[str]]:
    """The classes split by the terciles of ``values`` into ``labels`` (low to high): a
    class goes to the first tercile whose upper bound it does not exceed."""
    cuts = np.quantile(np.asarray(list(values.values()), dtype=np.float64), [1 / 3, 2 / 3])
    groups: dict[str, list[str]] = {label: [] for label in labels}
    for name, v in values.items():
        groups[labels[int(np.searchsorted(cuts, v, side="left"))]].append(name)
    return groups


def class_groups(properties: dict[str, dict[str, Any]], dataset_format: str,
                 foreground: Sequence[str]) -> dict[str, dict[str, list[str]]]:
    """The group rows of Tables 1 and 3: VOC's own groups, else terciles of %S and O over
    the foreground classes that occur in the split."""
    if dataset_format == "voc12":
        return VOC_GROUPS
    seen = [c for c in foreground if properties[c]["O"]]
    return {"size": tercile_groups({c: properties[c]["%S"] for c in seen},
                                   ["small", "mid", "large"]),
            "frequency": tercile_groups({c: properties[c]["O"] for c in seen},
                                        ["low freq.", "mid freq.", "high freq."])}


def pearson(x: Sequence[float | None], y: Sequence[float | None]) -> float | None:
    """Pearson's ρ of the pairs where both are defined; None with fewer than 3 or no
    spread."""
    pairs = np.asarray([(a, b) for a, b in zip(x, y, strict=True)
                        if a is not None and b is not None], dtype=np.float64)
    if len(pairs) < 3 or np.ptp(pairs[:, 0]) == 0 or np.ptp(pairs[:, 1]) == 0:
        return None
    return float(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1])
