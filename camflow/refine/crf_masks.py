"""The ``crf`` refiner: the dense-CRF masks of any CAM source, as a pseudo-mask set.

The seed at a background threshold (IRN's seed: a constant background score stacked in
front of the max-normalised class maps, argmax) refined by IRN's label CRF — the "+CRF"
seeds that the seed evaluation scores, written as masks so that DeepLab can train on
"seeds + CRF" (as HSC (Wu et al.) and several tables do).  The threshold is a number or
``best``: the best threshold of the source's seed evaluation (resolved by the rule).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from camflow.evaluate import crf_seed
from camflow.refine.refiners import Refiner, register_refiner


@register_refiner("crf")
class CRFRefiner(Refiner):
    """Seeds + dense CRF (module doc); ``params``: ``threshold`` (a number) and ``crf``
    (IRN's label-CRF settings)."""

    settings_keys = ("threshold", "crf")
    schema = {"required": ["threshold", "crf"],
              "properties": {
                  "threshold": {"description": "a number, or best: the source's best",
                                "oneOf": [{"const": "best"},
                                          {"type": "number", "minimum": 0, "maximum": 1}]},
                  "crf": {"$ref": "#/$defs/crf_params"}}}

    @classmethod
    def settings(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        return {"threshold": cfg["threshold"], "crf": cfg["crf"]}

    def refine(self, image: np.ndarray, keys: np.ndarray,
               cams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        channels, q = crf_seed(image, keys, cams, float(self.params["threshold"]),
                               self.params["crf"])
        return channels, q[1:]
