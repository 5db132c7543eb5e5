"""Reading fit and simulation settings from YAML, with ``key=value`` overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

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
