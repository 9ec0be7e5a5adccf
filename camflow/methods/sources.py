"""The registry of CAM sources: a ``sources.<name>`` config entry → a :data:`ClassCamFn`."""

from __future__ import annotations

from typing import Any

from torch import nn

from camflow.io import CamflowInputError
from camflow.methods.cam import ClassCamFn, classifier_cams
from camflow.methods.fullcam import fullcam, gradient_cam

METHODS = ("cam", "fullcam", "gradcam", "gradcampp")


def build_source(model: nn.Module, spec: dict[str, Any]) -> ClassCamFn:
    """Build the CAM function of a source spec (``method`` plus its own keys)."""
    method = spec.get("method")
    if method == "cam":
        return classifier_cams(model)
    if method == "fullcam":
        return fullcam(model, spec["layers"], chunk=int(spec.get("chunk", 1)))
    if method in ("gradcam", "gradcampp"):
        return gradient_cam(model, spec["layer"], method)
    raise CamflowInputError(f"unknown CAM source method {method!r} (config key "
                            f"sources.<name>.method); known: {', '.join(METHODS)}")
