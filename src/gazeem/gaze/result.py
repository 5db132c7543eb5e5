"""The fit result as an xarray Dataset (``results/fits/{session}.nc``)."""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING

import numpy as np
import torch
import xarray as xr
import yaml

from gazeem import __version__

if TYPE_CHECKING:
    from gazeem.gaze.model import GazeEM


def _config_yaml(est: GazeEM) -> str:
    params = est.get_params()
    params["response_model"] = (
        None if params["response_model"] is None else type(params["response_model"]).__name__
    )
    if params["prior_weights"] is not None:
        params["prior_weights"] = "<array>"
    return yaml.safe_dump(params, sort_keys=True)


def fit_to_dataset(est: GazeEM) -> xr.Dataset:
    """Per-bin gaze posterior, tracker and response parameters, and the EM trace."""
    data = est.data_
    geom = data.geometry
    ppd = geom.ppd
    per_bin = est.gaze_per_bin()
    fix = est.fixation_summary()
    eye_px = data.eye_px
    sess = est.session_
    time = sess["time"].values
    axis = np.array(["x", "y"])

    def deg_attrs(long_name: str) -> dict:
        return {"units": "degree", "long_name": long_name}

    def px_attrs(long_name: str) -> dict:
        return {
            "units": "pixel",
            "long_name": long_name + " (stimulus pixels: x = column, y = row)",
        }

    mean_deg = geom.px_to_deg(per_bin["mean"])
    eye_deg = geom.px_to_deg(eye_px)
    vars_ = {
        "gaze_mean": (("time", "axis"), mean_deg, deg_attrs("posterior mean gaze")),
        "gaze_sd": (("time", "axis"), per_bin["sd"] / ppd, deg_attrs("posterior SD of gaze")),
        "gaze_map": (
            ("time", "axis"),
            geom.px_to_deg(per_bin["map"]),
            deg_attrs("posterior mode of gaze"),
        ),
        "correction": (
            ("time", "axis"),
            mean_deg - eye_deg,
            deg_attrs("gaze_mean minus tracker reading"),
        ),
        "eye": (("time", "axis"), eye_deg, deg_attrs("tracker reading")),
        "gaze_mean_px": (("time", "axis"), per_bin["mean"], px_attrs("posterior mean gaze")),
        "gaze_sd_px": (("time", "axis"), per_bin["sd"], px_attrs("posterior SD of gaze")),
        "gaze_map_px": (("time", "axis"), per_bin["map"], px_attrs("posterior mode of gaze")),
        "correction_px": (
            ("time", "axis"),
            per_bin["mean"] - eye_px,
            px_attrs("gaze_mean minus tracker reading"),
        ),
        "fixation": (
            ("time",),
            data.fixation.cpu().numpy().astype(np.int32),
            {"long_name": "fixation index (-1: none)"},
        ),
        "fix_id": (
            ("fixation_index",),
            data.fix_ids.astype(np.int64),
            {"long_name": "fixation id in the session"},
        ),
        "fix_entropy": (
            ("fixation_index",),
            fix["entropy"],
            {"units": "nat", "long_name": "posterior entropy"},
        ),
        "fix_window_mass": (
            ("fixation_index",),
            fix["window_mass"],
            {"units": "1", "long_name": "tracker-likelihood mass inside the evaluated window"},
        ),
        "fix_calibration": (
            ("fixation_index",),
            np.isfinite(data.fix_calib[:, 0].numpy()),
            {"long_name": "fixation on a known calibration target"},
        ),
        "sigma": ((), est.sigma_ / ppd, deg_attrs("tracker noise SD per axis")),
        "sigma_px": ((), est.sigma_, {"units": "pixel", "long_name": "tracker noise SD per axis"}),
        "offset": (("axis",), geom.px_vector_to_deg(est.offset_), deg_attrs("tracker offset b")),
        "offset_px": (
            ("axis",),
            est.offset_,
            {"units": "pixel", "long_name": "tracker offset b (y down)"},
        ),
        "gain": (
            ("axis", "axis_in"),
            est.gain_,
            {"units": "1", "long_name": "tracker gain A (centred stimulus pixels, y down)"},
        ),
        "loglik": (
            ("iteration",),
            est.loglik_,
            {"units": "nat", "long_name": "marginal log-likelihood"},
        ),
        "objective": (
            ("iteration",),
            np.asarray(est.state_.objective),
            {"units": "nat", "long_name": "log-likelihood plus log prior of parameters"},
        ),
        "seconds_per_iter": (
            ("iteration",),
            np.asarray(est.state_.seconds_per_iter),
            {"units": "s"},
        ),
    }
    if est.rf_ is not None:
        rf_dims = ("unit", "lag", "rf_row", "rf_col")
        vars_["rf"] = (
            rf_dims,
            est.rf_.astype(np.float32),
            {"units": "1/contrast", "long_name": "receptive field"},
        )
        vars_["rf_initial"] = (
            rf_dims,
            est.rf_initial_.astype(np.float32),
            {"units": "1/contrast", "long_name": "receptive field fitted on the raw tracker trace"},
        )
        vars_["bias"] = (("unit",), est.bias_, {"units": "1", "long_name": "LN bias"})
        vars_["bias_initial"] = (
            ("unit",),
            est.bias_initial_,
            {"units": "1", "long_name": "raw-trace LN bias"},
        )
    if "viterbi" in per_bin:
        vars_["gaze_viterbi"] = (
            ("time", "axis"),
            geom.px_to_deg(per_bin["viterbi"]),
            deg_attrs("most probable gaze path (Viterbi)"),
        )
        vars_["gaze_viterbi_px"] = (
            ("time", "axis"),
            per_bin["viterbi"],
            px_attrs("most probable gaze path (Viterbi)"),
        )
        for name, value, what in (
            ("sigma_drift", est.sigma_drift_, "fixational drift step SD per bin and axis"),
            ("sigma_sacc", est.sigma_sacc_, "saccade landing SD about the tracker's displacement"),
        ):
            vars_[name] = ((), value / ppd, deg_attrs(what))
            vars_[name + "_px"] = ((), value, {"units": "pixel", "long_name": what})
    if "true_gaze" in sess:
        vars_["true_gaze"] = (
            ("time", "axis"),
            sess["true_gaze"].values,
            deg_attrs("true gaze (simulation)"),
        )
    vars_.update(_example_posteriors(est, geom))
    ds = xr.Dataset(
        vars_,
        coords={
            "time": ("time", time, {"units": "s", "long_name": "bin centre time"}),
            "unit": ("unit", sess["unit"].values),
            "axis": ("axis", axis),
            "axis_in": ("axis_in", axis),
            "iteration": ("iteration", np.arange(len(est.loglik_))),
        },
    )
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    ds.attrs.update(
        {
            "title": f"gazeem fit of session {sess.attrs.get('session', '')}",
            "Conventions": "CF-1.8",
            "session": sess.attrs.get("session", ""),
            "source": str(sess.encoding.get("source") or sess.attrs.get("source", "")),
            "history": f"{now}: fitted by gazeem {__version__}",
            "gazeem_version": __version__,
            "config": _config_yaml(est),
            "seed": int(est.random_state),
            "device": est.device_,
            "torch_version": str(torch.__version__),
            "torch_num_threads": int(est.num_threads_),
            "cpu": est.cpu_,
            "reproducible_on": (
                "the same machine type, torch version, device and torch_num_threads "
                "(docs/architecture.md, Reproducibility)"
            ),
            "wall_time_s": float(est.wall_time_s_),
            "n_iter": int(est.n_iter_),
            "converged": int(est.converged_),
            "offset_mode": est.offset_mode_,
            "loglik_raw_trace": float(est.loglik_raw_),
            "loglik_corrected": float(est.loglik_corrected_),
            "n_spikes": int(est.n_spikes_),
            "bits_per_spike_gain": float(
                (est.loglik_corrected_ - est.loglik_raw_) / max(est.n_spikes_, 1) / np.log(2)
            ),
            "em_warnings": "\n".join(est.state_.warnings),
            "data_warnings": "\n".join(est.data_warnings_),
            "ppd": float(ppd),
            "bin_s": float(sess.attrs["bin_s"]),
            "stim_center_x_deg": float(geom.center_deg[0]),
            "stim_center_y_deg": float(geom.center_deg[1]),
        }
    )
    return ds


def _example_posteriors(est: GazeEM, geom, n_examples: int = 6) -> dict:
    """The posterior over the window cells of a few fixations, evenly spaced in the session."""
    post = est.posterior_
    data = est.data_
    regular = np.flatnonzero(~np.isfinite(data.fix_calib[:, 0].numpy()))
    if regular.size == 0:
        return {}
    pick = regular[
        np.linspace(0, regular.size - 1, min(n_examples, regular.size)).round().astype(int)
    ]
    side = post.windows.side
    q = post.log_q.exp().cpu().numpy()[pick].reshape(-1, side, side)
    cells = post.windows.cells.cpu().numpy()[pick].astype(np.float64)  # (E, K, 2) stimulus pixels
    xs = geom.px_to_deg(cells[:, :side, :])[..., 0]  # first row of the window: x varies
    ys = geom.px_to_deg(cells[:, ::side, :])[..., 1]  # first column: y varies
    center = data.geometry.center_px
    reading = geom.px_to_deg(data.fix_reading.numpy()[pick] + center)
    expected = geom.px_to_deg(est.tracker_.invert(data.fix_reading[pick]).numpy() + center)
    out = {
        "example_fixation": (
            ("example",),
            data.fix_ids[pick].astype(np.int64),
            {"long_name": "fixation id"},
        ),
        "example_q": (
            ("example", "win_y", "win_x"),
            q,
            {"units": "1", "long_name": "posterior over window cells"},
        ),
        "example_x": (("example", "win_x"), xs, {"units": "degree", "long_name": "window cell x"}),
        "example_y": (("example", "win_y"), ys, {"units": "degree", "long_name": "window cell y"}),
        "example_reading": (
            ("example", "axis"),
            reading,
            {"units": "degree", "long_name": "mean tracker reading"},
        ),
        "example_expected": (
            ("example", "axis"),
            expected,
            {
                "units": "degree",
                "long_name": "gaze implied by the reading under the fitted tracker model",
            },
        ),
    }
    if "true_gaze" in est.session_:
        fix = data.fixation.cpu().numpy()
        tg = est.session_["true_gaze"].values
        truth = np.stack([tg[fix == f].mean(0) for f in pick])
        out["example_truth"] = (
            ("example", "axis"),
            truth,
            {"units": "degree", "long_name": "true gaze (mean)"},
        )
    return out
