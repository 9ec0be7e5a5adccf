"""Validation of a config block against a JSON schema, with the schema's defaults filled in.

The static schema (``schemas/config.schema.yaml``) validates the whole config when the
Snakefile is read.  A block whose keys depend on a registered name — a classifier's training
method, a refiner, a CAM source, a table — is validated here against the common part of the
static schema extended by the registered entry's own ``schema``, so each extension declares
its keys beside its code and a typo still fails naming the key.
"""

from __future__ import annotations

import copy
import difflib
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


def _looks_numeric(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


def describe(error: jsonschema.exceptions.ValidationError) -> str:
    """A validation error in a user's words: an unknown key with the closest known one, a
    number YAML read as a string with the reason; otherwise jsonschema's message."""
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = sorted(error.schema.get("properties", {}))
        parts = []
        for name in (k for k in error.instance if k not in known):
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = (f"did you mean {close[0]!r}?" if close
                    else f"known keys: {', '.join(known)}" if known else "no keys allowed")
            parts.append(f"unknown key {name!r} ({hint})")
        if parts:
            return "; ".join(parts)
    if error.validator == "type" and _looks_numeric(error.instance):
        return (f"{error.instance!r} is a string, not a number: YAML 1.1 reads an exponent "
                f"without a decimal point (1e-3) as text; write {float(error.instance)!r} "
                f"or 1.0e-3")
    return error.message


def validate_block(cfg: dict[str, Any], key: str, schema: dict[str, Any],
                   defs: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ``cfg`` validated against ``schema`` (``defs`` resolves ``#/$defs/...``),
    defaults filled in; an error names ``key`` and the offending key below it."""
    cfg = copy.deepcopy(dict(cfg))
    error = jsonschema.exceptions.best_match(
        _Validator({**schema, "$defs": defs or {}}).iter_errors(cfg))
    if error is not None:
        where = ".".join([key] * bool(key) + [str(p) for p in error.absolute_path])
        raise CamflowInputError(f"config key {where or '(top level)'}: {describe(error)}")
    return cfg


def validate_config(config: dict[str, Any], schema: dict[str, Any]) -> None:
    """The whole config against the static schema, in place, defaults filled in (what
    ``snakemake.utils.validate`` did, with :func:`describe`'s messages: one line per error,
    not the schema dump)."""
    filled = validate_block(config, "", schema, schema.get("$defs", {}))
    for name, value in filled.items():
        config[name] = value
