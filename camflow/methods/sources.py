"""The registry of CAM sources: a ``sources.<name>`` config entry → a :data:`ClassCamFn`."""

from __future__ import annotations

from typing import Any

from camflow.io import CamflowInputError
from camflow.methods.base import TrainingMethod
from camflow.methods.cam import ClassCamFn
from camflow.methods.fullcam import fullcam, gradient_cam

METHODS = ("cam", "fullcam", "gradcam", "gradcampp")


def build_source(trained: TrainingMethod, spec: dict[str, Any]) -> ClassCamFn:
    """Build the CAM function of a source spec (``method`` plus its own keys) on a trained
    method: ``cam`` is the method's own inference map; the gradient-based sources work on
    its CAM network (``classifier``)."""
    method = spec.get("method")
    if method == "cam":
        return trained.cam
    if method == "fullcam":
        return fullcam(trained.classifier, spec["layers"], chunk=int(spec.get("chunk", 1)))
    if method in ("gradcam", "gradcampp"):
        return gradient_cam(trained.classifier, spec["layer"], method)
    raise CamflowInputError(f"unknown CAM source method {method!r} (config key "
                            f"sources.<name>.method); known: {', '.join(METHODS)}")
