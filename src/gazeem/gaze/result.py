"""The fit result as an xarray Dataset (``results/fits/{session}.nc``).

:func:`fit_to_dataset` joins a :class:`~gazeem.gaze.fit.GazeFit` (what the fit learned)
with the session's coordinates, from small builders: the gaze per bin, the fixations,
the tracker, the fields, the chain (``latent: bin``), the EM trace, example posteriors
and the provenance attributes.
"""

from __future__ import annotations

import datetime as _dt

import numpy as np
import torch
import xarray as xr
import yaml

from gazeem import __version__
from gazeem.coords import StimulusGeometry
from gazeem.gaze.fit import GazeFit
from gazeem.gaze.intervals import LEVELS
from gazeem.gaze.predictive import MAX_COUNT, RATE_EDGES

Vars = dict[str, tuple]


def _deg(long_name: str) -> dict:
    return {"units": "degree", "long_name": long_name}


def _px(long_name: str) -> dict:
    return {"units": "pixel", "long_name": long_name + " (stimulus pixels: x = column, y = row)"}


def gaze_vars(fit: GazeFit) -> Vars:
    """Per-bin posterior mean, SD and mode, the correction and the reading (deg and px)."""
    geom, g = fit.geometry, fit.gaze
    mean_deg = geom.px_to_deg(g["mean"])
    eye_deg = geom.px_to_deg(fit.eye_px)
    tx = ("time", "axis")
    return {
        "gaze_mean": (tx, mean_deg, _deg("posterior mean gaze")),
        "gaze_sd": (tx, g["sd"] / geom.ppd, _deg("posterior SD of gaze")),
        "gaze_map": (tx, geom.px_to_deg(g["map"]), _deg("posterior mode of gaze")),
        "correction": (tx, mean_deg - eye_deg, _deg("gaze_mean minus tracker reading")),
        "eye": (tx, eye_deg, _deg("tracker reading")),
        "gaze_mean_px": (tx, g["mean"], _px("posterior mean gaze")),
        "gaze_sd_px": (tx, g["sd"], _px("posterior SD of gaze")),
        "gaze_map_px": (tx, g["map"], _px("posterior mode of gaze")),
        "correction_px": (tx, g["mean"] - fit.eye_px, _px("gaze_mean minus tracker reading")),
        **interval_vars(fit),
        "fixation": (
            ("time",),
            fit.fixation_of_bin.astype(np.int32),
            {"long_name": "fixation index (-1: none)"},
        ),
    }


def interval_vars(fit: GazeFit) -> Vars:
    """Central credible intervals of the gaze per bin (:mod:`gazeem.gaze.intervals`)."""
    geom, g = fit.geometry, fit.gaze
    lo_px, hi_px = g["lower"], g["upper"]
    # degrees have y up: the pixel interval's ends swap on y
    a = geom.px_to_deg(np.moveaxis(lo_px, -1, 1))
    b = geom.px_to_deg(np.moveaxis(hi_px, -1, 1))
    lo_deg, hi_deg = np.moveaxis(np.fmin(a, b), 1, -1), np.moveaxis(np.fmax(a, b), 1, -1)
    dims = ("time", "axis", "level")
    what = "central credible interval of gaze, {} end (posterior mass: level)"
    return {
        "gaze_lower": (dims, lo_deg, _deg(what.format("lower"))),
        "gaze_upper": (dims, hi_deg, _deg(what.format("upper"))),
        "gaze_lower_px": (dims, lo_px, _px(what.format("lower"))),
        "gaze_upper_px": (dims, hi_px, _px(what.format("upper"))),
    }


def fixation_vars(fit: GazeFit) -> Vars:
    f, dim = fit.fixations, ("fixation_index",)
    return {
        "fix_id": (dim, f["id"].astype(np.int64), {"long_name": "fixation id in the session"}),
        "fix_entropy": (dim, f["entropy"], {"units": "nat", "long_name": "posterior entropy"}),
        "fix_window_mass": (
            dim,
            f["window_mass"],
            {"units": "1", "long_name": "tracker-likelihood mass inside the evaluated window"},
        ),
        "fix_calibration": (
            dim,
            f["calibration"],
            {"long_name": "fixation on a known calibration target"},
        ),
    }


def tracker_vars(fit: GazeFit) -> Vars:
    geom = fit.geometry
    what = "tracker noise SD per axis"
    return {
        "sigma": ((), fit.sigma / geom.ppd, _deg(what)),
        "sigma_px": ((), fit.sigma, {"units": "pixel", "long_name": what}),
        "offset": (("axis",), geom.px_vector_to_deg(fit.offset), _deg("tracker offset b")),
        "offset_px": (
            ("axis",),
            fit.offset,
            {"units": "pixel", "long_name": "tracker offset b (y down)"},
        ),
        "gain": (
            ("axis", "axis_in"),
            fit.gain,
            {"units": "1", "long_name": "tracker gain A (centred stimulus pixels, y down)"},
        ),
    }


def field_vars(fit: GazeFit) -> Vars:
    """Receptive fields and biases after EM and from the raw-trace fit (built-in model)."""
    if fit.rf is None:
        return {}
    dims = ("unit", "lag", "rf_row", "rf_col")
    unit = "1/contrast"
    return {
        "rf": (dims, fit.rf.astype(np.float32), {"units": unit, "long_name": "receptive field"}),
        "rf_initial": (
            dims,
            fit.rf_initial.astype(np.float32),
            {"units": unit, "long_name": "receptive field fitted on the raw tracker trace"},
        ),
        "bias": (("unit",), fit.bias, {"units": "1", "long_name": "LN bias"}),
        "bias_initial": (
            ("unit",),
            fit.bias_initial,
            {"units": "1", "long_name": "raw-trace LN bias"},
        ),
    }


def chain_vars(fit: GazeFit) -> Vars:
    """``latent: bin``: the most probable path and the fitted step SDs."""
    if "viterbi" not in fit.gaze:
        return {}
    geom, path = fit.geometry, fit.gaze["viterbi"]
    out = {
        "gaze_viterbi": (
            ("time", "axis"),
            geom.px_to_deg(path),
            _deg("most probable gaze path (Viterbi)"),
        ),
        "gaze_viterbi_px": (("time", "axis"), path, _px("most probable gaze path (Viterbi)")),
    }
    for name, value, what in (
        ("sigma_drift", fit.sigma_drift, "fixational drift step SD per bin and axis"),
        ("sigma_sacc", fit.sigma_sacc, "saccade landing SD about the tracker's displacement"),
    ):
        out[name] = ((), value / geom.ppd, _deg(what))
        out[name + "_px"] = ((), value, {"units": "pixel", "long_name": what})
    return out


def trace_vars(fit: GazeFit) -> Vars:
    s, it = fit.state, ("iteration",)
    return {
        "loglik": (
            it,
            np.asarray(s.log_likelihood),
            {"units": "nat", "long_name": "marginal log-likelihood"},
        ),
        "objective": (
            it,
            np.asarray(s.objective),
            {"units": "nat", "long_name": "log-likelihood plus log prior of parameters"},
        ),
        "seconds_per_iter": (it, np.asarray(s.seconds_per_iter), {"units": "s"}),
        "gaze_change_rms_px": (
            it,
            fit.gaze_change[:, 0],
            _px("RMS move of the fixations' posterior mean gaze since the last iteration"),
        ),
        "gaze_change_max_px": (
            it,
            fit.gaze_change[:, 1],
            _px("largest move of a fixation's posterior mean gaze since the last iteration"),
        ),
    }


def example_vars(fit: GazeFit, session: xr.Dataset) -> Vars:
    """The posterior over the window cells of a few fixations (the posterior figure)."""
    ex, geom = fit.examples, fit.geometry
    if not ex:
        return {}
    side = ex["q"].shape[-1]
    xs = geom.px_to_deg(ex["cells"][:, :side, :])[..., 0]  # first row of the window: x varies
    ys = geom.px_to_deg(ex["cells"][:, ::side, :])[..., 1]  # first column: y varies
    deg = {"units": "degree"}
    out = {
        "example_fixation": (("example",), ex["fix_id"], {"long_name": "fixation id"}),
        "example_q": (
            ("example", "win_y", "win_x"),
            ex["q"],
            {"units": "1", "long_name": "posterior over window cells"},
        ),
        "example_x": (("example", "win_x"), xs, {**deg, "long_name": "window cell x"}),
        "example_y": (("example", "win_y"), ys, {**deg, "long_name": "window cell y"}),
        "example_reading": (
            ("example", "axis"),
            geom.px_to_deg(ex["reading"]),
            {**deg, "long_name": "mean tracker reading"},
        ),
        "example_expected": (
            ("example", "axis"),
            geom.px_to_deg(ex["expected"]),
            {**deg, "long_name": "gaze implied by the reading under the fitted tracker model"},
        ),
    }
    if "true_gaze" in session:
        tg = session["true_gaze"].values
        truth = np.stack([tg[fit.fixation_of_bin == f].mean(0) for f in ex["pick"]])
        out["example_truth"] = (
            ("example", "axis"),
            truth,
            {**deg, "long_name": "true gaze (mean)"},
        )
    return out


def _config_yaml(params: dict) -> str:
    params = dict(params)
    model = params.get("response_model")
    params["response_model"] = None if model is None else type(model).__name__
    if params.get("prior_weights") is not None:
        params["prior_weights"] = "<array>"
    return yaml.safe_dump(params, sort_keys=True)


def provenance_attrs(fit: GazeFit, session: xr.Dataset, params: dict) -> dict:
    """Where the fit came from and how to reproduce it, and its headline numbers."""
    geom: StimulusGeometry = fit.geometry
    prov = fit.provenance
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return {
        "title": f"gazeem fit of session {session.attrs.get('session', '')}",
        "Conventions": "CF-1.8",
        "session": session.attrs.get("session", ""),
        "source": str(session.encoding.get("source") or session.attrs.get("source", "")),
        "history": f"{now}: fitted by gazeem {__version__}",
        "gazeem_version": __version__,
        "config": _config_yaml(params),
        "seed": int(params["random_state"]),
        "device": prov["device"],
        "torch_version": str(torch.__version__),
        "torch_num_threads": int(prov["num_threads"]),
        "cpu": prov["cpu"],
        "reproducible_on": (
            "the same machine type, torch version, device and torch_num_threads "
            "(docs/architecture.md, Reproducibility)"
        ),
        "wall_time_s": float(prov["wall_time_s"]),
        "latent": fit.latent,
        "latent_reason": fit.latent_reason,
        "anneal_steps": int(fit.anneal_steps),
        "anneal_reason": fit.anneal_reason,
        "n_split_fixations": int(fit.n_split),
        **penalty_attrs(fit),
        "n_iter": int(fit.state.n_iter),
        "converged": int(fit.state.converged),
        "converged_on_gaze": int(fit.state.settled),
        "offset_mode": fit.offset_mode,
        "gauge_shift_px": [float(v) for v in fit.gauge_shift],
        "gain_se": [float(v) for v in fit.gain_se],
        **heldout_attrs(fit),
        **fit.uncertainty,
        "loglik_raw_trace": float(fit.loglik_raw),
        "loglik_corrected": float(fit.loglik_corrected),
        "n_spikes": int(fit.n_spikes),
        "bits_per_spike_gain": float(fit.bits_per_spike_gain),
        "em_warnings": "\n".join(fit.state.warnings),
        "data_warnings": "\n".join(prov["data_warnings"]),
        "ppd": float(geom.ppd),
        "bin_s": float(session.attrs["bin_s"]),
        "stim_center_x_deg": float(geom.center_deg[0]),
        "stim_center_y_deg": float(geom.center_deg[1]),
        "rf_x_deg": float(geom.rf_offset_deg[0]),
        "rf_y_deg": float(geom.rf_offset_deg[1]),
    }


def heldout_attrs(fit: GazeFit) -> dict:
    """The held-out comparison of the corrected gaze with the raw trace (NaN: not run)."""
    h = fit.heldout
    nan = float("nan")
    no_ppc = h is None or h.predictive_raw is None
    return {
        "heldout_loglik_raw": nan if h is None else h.loglik_raw,
        "heldout_loglik_corrected": nan if h is None else h.loglik_corrected,
        "heldout_bits_per_spike": nan if h is None else h.bits_per_spike,
        "heldout_z": nan if h is None else h.z,
        "heldout_agreement": nan if h is None else h.agreement,
        "heldout_agreement_chance": nan if h is None else h.agreement_chance,
        "correction_supported": -1 if h is None else int(h.supported),
        "heldout_ppc_slope_raw": nan if no_ppc else h.predictive_raw.slope(),
        "heldout_ppc_slope_corrected": nan if no_ppc else h.predictive_corrected.slope(),
        "heldout_ppc_tv_raw": nan if no_ppc else h.predictive_raw.count_distance(),
        "heldout_ppc_tv_corrected": nan if no_ppc else h.predictive_corrected.count_distance(),
        "correction_note": fit.correction_note,
    }


def predictive_vars(fit: GazeFit) -> tuple[Vars, dict]:
    """The held-out posterior-predictive check (:mod:`gazeem.gaze.predictive`), raw trace
    and correction side by side; nothing where the held-out comparison did not run."""
    h = fit.heldout
    if h is None or h.predictive_raw is None:
        return {}, {}
    checks = (h.predictive_raw, h.predictive_corrected)
    obs, pred = zip(*(c.count_fractions() for c in checks), strict=True)
    group, count = ("ppc_source", "ppc_group"), ("ppc_source", "ppc_count")
    per = "held-out (bin, unit) pairs grouped by predicted count: "
    vars_ = {
        "ppc_pairs": (group, np.stack([c.pairs for c in checks]), {"long_name": per + "pairs"}),
        "ppc_predicted": (
            group,
            np.stack([c.mean_predicted() for c in checks]),
            {"units": "spikes/bin", "long_name": per + "mean predicted count"},
        ),
        "ppc_observed": (
            group,
            np.stack([c.mean_observed() for c in checks]),
            {"units": "spikes/bin", "long_name": per + "mean observed count"},
        ),
        "ppc_count_observed": (
            count,
            np.stack(obs),
            {"units": "1", "long_name": "fraction of held-out pairs with this count"},
        ),
        "ppc_count_predicted": (
            count,
            np.stack(pred),
            {"units": "1", "long_name": "predicted fraction of held-out pairs with this count"},
        ),
    }
    edges = RATE_EDGES
    coords = {
        "ppc_source": ("ppc_source", np.array(["raw", "corrected"])),
        "ppc_group": (
            "ppc_group",
            np.sqrt(edges[:-1] * edges[1:]),
            {"units": "spikes/bin", "long_name": "predicted count (geometric centre of group)"},
        ),
        "ppc_count": (
            "ppc_count",
            np.arange(MAX_COUNT + 1),
            {"long_name": f"spike count ({MAX_COUNT}: {MAX_COUNT} or more)"},
        ),
    }
    return vars_, coords


def fit_to_dataset(fit: GazeFit, session: xr.Dataset, params: dict) -> xr.Dataset:
    """The fit result of ``session``; ``params`` are the estimator's hyperparameters."""
    vars_: Vars = {}
    for build in (gaze_vars, fixation_vars, tracker_vars, trace_vars, field_vars, chain_vars):
        vars_.update(build(fit))
    if "true_gaze" in session:
        vars_["true_gaze"] = (
            ("time", "axis"),
            session["true_gaze"].values,
            _deg("true gaze (simulation)"),
        )
    vars_.update(example_vars(fit, session))
    ppc_vars, ppc_coords = predictive_vars(fit)
    vars_.update(ppc_vars)
    axis = np.array(["x", "y"])
    ds = xr.Dataset(
        vars_,
        coords={
            "time": (
                "time",
                session["time"].values,
                {"units": "s", "long_name": "bin centre time"},
            ),
            "unit": ("unit", session["unit"].values),
            "axis": ("axis", axis),
            "axis_in": ("axis_in", axis),
            "iteration": ("iteration", np.arange(len(fit.state.log_likelihood))),
            "level": (
                "level",
                np.asarray(LEVELS),
                {"units": "1", "long_name": "posterior mass of the central interval"},
            ),
            **ppc_coords,
        },
    )
    ds.attrs.update(provenance_attrs(fit, session, params))
    return ds


def penalty_attrs(fit: GazeFit) -> dict:
    """The penalties the fields ended with (``smooth_final``, ``l2_final``) and, under
    ``cv``, the candidates and their held-out scores (:mod:`gazeem.gaze.penalty`)."""
    out = {}
    for name in ("smooth", "l2"):
        value, cv = getattr(fit, name), getattr(fit, f"{name}_cv")
        out[f"{name}_final"] = float("nan") if value is None else float(value)
        if cv is not None:
            out[f"{name}_cv_values"] = [float(v) for v in cv.values]
            out[f"{name}_cv_heldout_nats"] = [float(v) for v in cv.heldout]
    return out
