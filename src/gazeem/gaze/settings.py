"""Small frozen records of the settings that the gaze problems use.

:class:`~gazeem.gaze.estimator.GazeEM` holds the user's hyperparameters; at ``fit`` it
hands each problem only the records it needs, so a problem never reads the estimator
back and a reader can follow each setting from the config to where it is used
(``docs/architecture.md``, "How a setting travels").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jsonschema
import numpy as np

from gazeem.errors import GazeemError


@dataclass(frozen=True)
class WindowSettings:
    """Window half-width ``clamp(ceil(k σ), h_min, h_max)`` cells around each reading."""

    k: float = 4.0
    h_min: int = 2
    h_max: int = 40


@dataclass(frozen=True)
class MemoryBudget:
    """Working memory per chunk, and for caching M-step patches, MiB."""

    chunk_mb: float = 256
    cache_mb: float = 1024

    def items_per_chunk(self, bytes_per_item: int) -> int:
        """How many items of ``bytes_per_item`` fit in one chunk (at least one)."""
        return max(1, int(self.chunk_mb * 2**20 // max(bytes_per_item, 1)))

    def fits_cache(self, nbytes: float) -> bool:
        return nbytes <= self.cache_mb * 2**20


@dataclass(frozen=True)
class EStepSettings:
    """``mode``: ``exact``, ``mc`` (``num_samples`` draws) or ``fast`` (``fast_top_k``)."""

    mode: str = "exact"
    num_samples: int = 64
    fast_top_k: int = 25


@dataclass(frozen=True)
class MStepSettings:
    """The response M-step: method and budgets, pruning, and the cap on cells per bin."""

    method: str = "lbfgs"
    max_iter: int = 100
    adam_steps: int = 300
    adam_lr: float = 0.02
    prune_mass: float = 1e-6
    max_cells: int = 32


@dataclass(frozen=True)
class DriftSettings:
    """``latent: bin``: starting drift and saccade-landing SDs (px), and whether to refit."""

    sigma_drift_init: float = 0.5
    sigma_sacc_init: float = 2.0
    learn_sigma_drift: bool = True
    learn_sigma_sacc: bool = True


@dataclass(frozen=True)
class ProblemSettings:
    """Everything a gaze problem receives from the estimator."""

    window: WindowSettings = WindowSettings()
    estep: EStepSettings = EStepSettings()
    mstep: MStepSettings = MStepSettings()
    memory: MemoryBudget = MemoryBudget()
    drift: DriftSettings = DriftSettings()

    @classmethod
    def from_params(cls, p: dict) -> ProblemSettings:
        """The records of :class:`~gazeem.gaze.estimator.GazeEM`'s hyperparameters ``p``."""
        return cls(
            window=WindowSettings(p["window_k"], p["window_min"], p["window_max"]),
            estep=EStepSettings(p["estep"], p["num_samples"], p["fast_top_k"]),
            mstep=MStepSettings(
                p["mstep"],
                p["mstep_max_iter"],
                p["adam_steps"],
                p["adam_lr"],
                p["prune_mass"],
                p["mstep_max_cells"],
            ),
            memory=MemoryBudget(p["chunk_mb"], p["cache_mb"]),
            drift=DriftSettings(
                p["sigma_drift_init"],
                p["sigma_sacc_init"],
                p["learn_sigma_drift"],
                p["learn_sigma_sacc"],
            ),
        )


_POSITIVE_INT = {"type": "integer", "minimum": 1}
_BOOL = {"type": "boolean"}

#: One declarative table of the settings' constraints, as JSON Schema. The workflow's
#: config schema (``fit:`` section) must say exactly the same (a test checks it), so the
#: estimator, the CLI and the workflow accept the same values.
PARAMETER_CONSTRAINTS: dict[str, dict] = {
    "patch_size": _POSITIVE_INT,
    "n_lags": _POSITIVE_INT,
    "nonlinearity": {"type": "string", "enum": ["exp", "softplus"]},
    "l2": {"anyOf": [{"type": "number", "minimum": 0}, {"enum": ["cv"]}]},
    "smooth": {"anyOf": [{"type": "number", "minimum": 0}, {"enum": ["cv"]}]},
    "sigma_init": {"type": "number", "exclusiveMinimum": 0},
    "learn_sigma": _BOOL,
    "learn_gain": _BOOL,
    "offset": {"type": "string", "enum": ["auto", "zero", "calibration", "fields"]},
    "latent": {"type": "string", "enum": ["auto", "fixation", "bin"]},
    "prior": {"type": "string", "enum": ["uniform", "weights", "counts", "hmm"]},
    "prior_weights": {"type": ["array", "null"]},
    "prior_pseudocount": {"type": "number", "exclusiveMinimum": 0},
    "sigma_drift_init": {"type": "number", "exclusiveMinimum": 0},
    "sigma_sacc_init": {"type": "number", "exclusiveMinimum": 0},
    "learn_sigma_drift": _BOOL,
    "learn_sigma_sacc": _BOOL,
    "estep": {"type": "string", "enum": ["exact", "mc", "fast"]},
    "num_samples": _POSITIVE_INT,
    "fast_top_k": _POSITIVE_INT,
    "frames_in_memory": {"enum": ["auto", True, False]},
    "window_k": {"type": "number", "exclusiveMinimum": 0},
    "window_min": {"type": "integer", "minimum": 0},
    "window_max": {"type": "integer", "minimum": 0},
    "grid_margin_px": {"type": "integer", "minimum": 0},
    "mstep": {"type": "string", "enum": ["lbfgs", "adam"]},
    "mstep_max_iter": _POSITIVE_INT,
    "adam_steps": _POSITIVE_INT,
    "adam_lr": {"type": "number", "exclusiveMinimum": 0},
    "prune_mass": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
    "mstep_max_cells": _POSITIVE_INT,
    "tol": {"type": "number", "minimum": 0},
    "gaze_tol": {"type": "number", "minimum": 0},
    "max_iter": {"type": "integer", "minimum": 0},
    "device": {"type": "string", "pattern": "^(auto|cpu|cuda(:[0-9]+)?)$"},
    "dtype": {"type": "string", "enum": ["float32", "float64"]},
    "chunk_mb": _POSITIVE_INT,
    "cache_mb": {"type": "integer", "minimum": 0},
    "random_state": {"type": "integer"},
    "heldout_check": _BOOL,
    "split_fixations": _BOOL,
    "anneal": {"enum": ["auto", True, False]},
    "accelerate": _BOOL,
}


def describe(rule: dict) -> str:
    """A constraint in words: ``one of [...]``, ``a positive integer``, ``a number >= 0``."""
    if "anyOf" in rule:
        return " or ".join(describe(r) for r in rule["anyOf"])
    if "enum" in rule:
        return f"one of {rule['enum']}"
    kinds = rule.get("type", "value")
    kind = {"integer": "integer", "number": "number", "boolean": "boolean"}.get(kinds, "value")
    if rule.get("exclusiveMinimum") == 0 or (kind == "integer" and rule.get("minimum") == 1):
        text = f"a positive {kind}"
    elif "minimum" in rule:
        text = f"a finite {kind} >= {rule['minimum']}"
    else:
        text = f"a {kind}" if kind != "value" else "a " + " or ".join(map(str, kinds))
    if "exclusiveMaximum" in rule:
        text += f" below {rule['exclusiveMaximum']}"
    if "pattern" in rule:
        text += f" matching {rule['pattern']}"
    return text


def check_settings(params: dict) -> None:
    """Each setting in ``params`` against :data:`PARAMETER_CONSTRAINTS` (one error naming it)."""
    for name, value in params.items():
        rule = PARAMETER_CONSTRAINTS.get(name)
        if rule is None:
            continue
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if isinstance(value, float) and math.isnan(value):
            raise GazeemError(f"{name} must be {describe(rule)}, got nan.")
        try:
            jsonschema.validate(value, rule)
        except jsonschema.ValidationError:
            raise GazeemError(f"{name} must be {describe(rule)}, got {value!r}.") from None


def check_rules(p: dict) -> None:
    """The rules between settings (``p``: every hyperparameter of ``GazeEM``)."""
    if p["window_max"] < p["window_min"]:
        raise GazeemError(
            f"need window_min <= window_max, got {p['window_min']}, {p['window_max']}."
        )
    if p["estep"] == "fast" and p["response_model"] is not None:
        raise GazeemError("estep='fast' needs the built-in PoissonLN response model.")
    if p["prior"] == "weights" and p["prior_weights"] is None:
        raise GazeemError("prior='weights' needs prior_weights of shape (grid_rows, grid_cols).")
    if p["latent"] == "bin" or p["prior"] == "hmm":
        if p["estep"] != "exact":
            raise GazeemError("latent='bin' needs estep='exact'.")
        if p["prior"] == "counts":
            raise GazeemError(
                "latent='bin' takes prior 'uniform' or 'weights' (its reset distribution); "
                "learned 'counts' are not refitted along the chain."
            )
    if p["latent"] != "fixation" and math.isinf(p["sigma_sacc_init"]) and p["learn_sigma_sacc"]:
        raise GazeemError(
            "sigma_sacc_init=inf (independent fixations) needs learn_sigma_sacc=False."
        )
