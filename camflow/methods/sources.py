"""The registry of CAM sources: a ``sources.<name>`` entry → a :data:`ClassCamFn`.

A source is a function ``(trained method, spec) → ClassCamFn`` registered with
:func:`register_source` under the ``method`` its ``sources.<name>`` entries name; ``make_cams``
fuses it over the test-time transformations and writes the cache.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from camflow.methods.base import TrainingMethod
from camflow.methods.cam import ClassCamFn
from camflow.models.inference import prepare_for_inference
from camflow.registry import Registry

SourceBuilder = Callable[[TrainingMethod, dict[str, Any]], ClassCamFn]
SOURCES: Registry[SourceBuilder] = Registry("CAM source", ("camflow.methods",))


def register_source(name: str, schema: dict[str, Any] | None = None
                    ) -> Callable[[SourceBuilder], SourceBuilder]:
    """Decorator: register a source builder under ``name``, with the JSON schema of its own
    config keys (``schema``, validated with :func:`source_schema`)."""
    def register(builder: SourceBuilder) -> SourceBuilder:
        builder.schema = schema or {}
        return SOURCES.register(name)(builder)
    return register


def source_schema(method: str, key: str) -> dict[str, Any]:
    """The own keys of CAM source ``method`` (unknown names fail naming ``key``)."""
    return SOURCES.get(method, key).schema


@register_source("cam")
def method_cams(trained: TrainingMethod, spec: dict[str, Any]) -> ClassCamFn:
    """The ``cam`` source: the trained method's own inference map, on a copy of its
    classifier made fast for inference (batch norms folded into the convolutions,
    channels_last: :func:`~camflow.models.inference.prepare_for_inference`; the maps are
    unchanged up to float rounding).  ``trained`` keeps its own classifier, so a gradient
    source built from it afterwards still reads the unfolded layers."""
    fast = copy.copy(trained)
    fast.networks = {**trained.networks,
                     "classifier": prepare_for_inference(copy.deepcopy(trained.classifier))}
    return fast.cam


def build_source(trained: TrainingMethod, spec: dict[str, Any]) -> ClassCamFn:
    """The CAM function of a source spec (``method`` plus its own keys) on a trained
    method; gradient-based sources work on its CAM network (``trained.classifier``)."""
    return SOURCES.get(spec.get("method"), "sources.<name>.method")(trained, spec)
