"""Refinement of CAM seeds: dense CRF (IRN / PSA settings)."""

from camflow.refine.crf import crf_labels, crf_scores

__all__ = ["crf_labels", "crf_scores"]
