"""Reading fit and simulation settings from YAML, with ``key=value`` overrides."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema.exceptions import best_match

from gazeem.errors import GazeemError


def load_section(path: str | Path | None, section: str) -> dict[str, Any]:
    """The mapping under ``section`` in a YAML file (empty when no file is given)."""
    if path is None:
        return {}
    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise GazeemError(f"{path}: cannot read the config: {err}") from None
    if not isinstance(doc, dict):
        raise GazeemError(f"{path}: the config must be a mapping, got {type(doc).__name__}.")
    sec = doc.get(section, {}) or {}
    if not isinstance(sec, dict):
        raise GazeemError(f"{path}: field '{section}' must be a mapping.")
    return {k: _number_or_value(v) for k, v in sec.items()}


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["max_iter=5", "device=cpu"]`` -> ``{"max_iter": 5, "device": "cpu"}`` (YAML-typed)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise GazeemError(f"--set expects key=value, got {item!r}.")
        out[key.strip()] = _number_or_value(yaml.safe_load(value))
    return out


def _number_or_value(v: Any) -> Any:
    """YAML 1.1 reads ``1e-6`` (no dot) as a string; read it as the number it is."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def check_keys(given: dict[str, Any], allowed: list[str], where: str) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise GazeemError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}.")


def config_schema_path() -> Path:
    """The workflow config's JSON schema, shipped in the package (the workflow reads it too)."""
    return Path(str(resources.files("gazeem.schemas").joinpath("config.schema.yaml")))


def section_schema(section: str) -> dict:
    """The schema of one section (``fit``, ``ingest``, ``simulate``) of config.yaml."""
    return yaml.safe_load(config_schema_path().read_text())["properties"][section]


def _specific(err: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For a value that fails every branch of an ``anyOf`` (``l2: -5`` against a number
    >= 0 or ``cv``), jsonschema's ``best_match`` picks the branch whose type the value
    has; the message also names the branch's alternatives."""
    best = best_match([err])
    if best is err or best.parent is None:
        return err
    choices = [str(v) for s in best.parent.validator_value for v in s.get("enum", [])]
    if choices:
        best.message += f" (or one of {', '.join(choices)})"
    return best


def validate_section(
    params: dict[str, Any], section: str, sources: dict[str, str] | None = None
) -> None:
    """Check settings against the section's schema, exactly as the workflow does.

    Whole-number floats given for integer settings (``1e3``) are turned into ints in place.

    ``sources`` maps a key to where it was given (a config file, ``--set``), for the
    message; one error names that place and the field.
    """
    schema = section_schema(section)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    if not errors:
        # JSON Schema counts 1e3 as an integer; hand the code the int it expects
        for key, value in params.items():
            spec = schema.get("properties", {}).get(key, {})
            if spec.get("type") == "integer" and isinstance(value, float):
                params[key] = int(value)
        return
    err = _specific(errors[0])
    key = str(err.absolute_path[0]) if err.absolute_path else ""
    if not key and err.validator == "additionalProperties":
        key = err.message.split("'")[1] if "'" in err.message else ""
    where = (sources or {}).get(key, "settings")
    raise GazeemError(f"{where}: field '{section}.{key}': {err.message}")
