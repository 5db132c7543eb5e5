"""The session table (``config/sessions.tsv``): one row per session, validated by a schema."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import yaml

from gazeem.errors import GazeemError


@dataclass(frozen=True)
class SessionMeta:
    """Metadata of one session (see ``src/gazeem/schemas/sessions.schema.yaml``)."""

    session: str
    path: str
    format: str
    ppd: float
    simulate: bool = False
    stim_center_x_deg: float = 0.0
    stim_center_y_deg: float = 0.0
    bin_s: float | None = None
    lag_bins: int = 0
    rf_x_deg: float = 0.0
    rf_y_deg: float = 0.0
    eye_series: str | None = None
    stimulus_series: str | None = None
    screen_ppd: float | None = None
    screen_width_px: int | None = None
    screen_height_px: int | None = None
    viewing_distance_m: float | None = None
    eye_y_direction: str | None = None
    eye_origin: str | None = None


def sessions_schema_path() -> Path:
    """The session table's JSON schema, shipped in the package (the workflow reads it too)."""
    return Path(str(resources.files("gazeem.schemas").joinpath("sessions.schema.yaml")))


def sessions_schema() -> dict:
    return yaml.safe_load(sessions_schema_path().read_text())


def _check_field_counts(path: Path) -> None:
    """Every data row has as many tab-separated fields as the header.

    pandas would shift a row with an extra field onto the next column and blame a field
    that is not at fault.
    """
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise GazeemError(f"{path}: cannot read the session table: {err}") from None
    rows = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip() and not ln.startswith("#")]
    if not rows:
        raise GazeemError(f"{path}: the session table is empty.")
    header = next(csv.reader([rows[0][1]], delimiter="\t"))
    for lineno, line in rows[1:]:
        fields_ = next(csv.reader([line], delimiter="\t"))
        if len(fields_) != len(header):
            raise GazeemError(
                f"{path} row {lineno}: has {len(fields_)} tab-separated fields, the header has "
                f"{len(header)} ({', '.join(header)}); a stray or missing tab?"
            )


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)  # pandas turns integer columns with gaps into floats
    if hasattr(value, "item"):
        return value.item()
    return value


def validate_row(row: dict, where: str) -> SessionMeta:
    """Validate one row against the schema, fill defaults, and return it as :class:`SessionMeta`."""
    schema = sessions_schema()
    rec = {k: _clean(v) for k, v in row.items() if _clean(v) is not None}
    try:
        jsonschema.validate(rec, schema)
    except jsonschema.ValidationError as err:
        field = "/".join(str(p) for p in err.absolute_path)
        if not field and err.validator in ("required", "additionalProperties"):
            field = err.message.split("'")[1] if "'" in err.message else err.validator
        raise GazeemError(f"{where}: field '{field or '?'}': {err.message}") from None
    for key, spec in schema["properties"].items():
        rec.setdefault(key, spec.get("default"))
    names = {f.name for f in fields(SessionMeta)}
    return SessionMeta(**{k: v for k, v in rec.items() if k in names})


def read_sessions(path: str | Path) -> dict[str, SessionMeta]:
    """Read and validate ``sessions.tsv``; returns ``{session: SessionMeta}`` in file order."""
    path = Path(path)
    if not path.is_file():
        raise GazeemError(f"{path}: field 'sessions': no such session table.")
    _check_field_counts(path)
    try:
        table = pd.read_csv(path, sep="\t", dtype={"session": str}, comment="#")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise GazeemError(f"{path}: cannot read the session table: {err}") from None
    out: dict[str, SessionMeta] = {}
    for i, row in enumerate(table.to_dict("records")):
        meta = validate_row(row, f"{path} row {i + 2}")
        if meta.session in out:
            raise GazeemError(
                f"{path} row {i + 2}: field 'session': {meta.session!r} appears twice."
            )
        out[meta.session] = meta
    if not out:
        raise GazeemError(f"{path}: the session table has no rows.")
    return out
