"""Validation of a config block against a JSON schema, with the schema's defaults filled in.

The static schema (``schemas/config.schema.yaml``) validates the whole config when the
Snakefile is read.  A block whose keys depend on a registered name — a classifier's training
method, a refiner, a CAM source, a table — is validated here against the common part of the
static schema extended by the registered entry's own ``schema``, so each extension declares
its keys beside its code and a typo still fails naming the key.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema

from camflow.io import CamflowInputError


def _with_defaults(validator_class: type) -> type:
    """A jsonschema validator that fills in each property's ``default`` before validating."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def fill(validator: Any, properties: dict, instance: Any, schema: dict) -> Any:
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(prop, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": fill})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def extend(common: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """``common`` with the ``properties`` and ``required`` keys of ``own`` added; unknown
    keys are refused."""
    return {**common,
            "properties": {**common.get("properties", {}), **own.get("properties", {})},
            "required": [*common.get("required", []), *own.get("required", [])],
            "additionalProperties": False}


def validate_block(cfg: dict[str, Any], key: str, schema: dict[str, Any],
                   defs: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ``cfg`` validated against ``schema`` (``defs`` resolves ``#/$defs/...``),
    defaults filled in; an error names ``key`` and the offending key below it."""
    cfg = copy.deepcopy(dict(cfg))
    error = jsonschema.exceptions.best_match(
        _Validator({**schema, "$defs": defs or {}}).iter_errors(cfg))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path)
        raise CamflowInputError(f"config key {key}{'.' + where if where else ''}: "
                                f"{error.message}")
    return cfg
