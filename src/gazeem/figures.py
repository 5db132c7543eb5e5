"""The figures stage: publication-style PNG and PDF figures, axes in degrees.

Per session (from its fit result): ``gaze_trace``, ``correction``, ``posteriors``,
``rfs``, ``loglik``, ``drift``, ``reliability`` (the intervals' coverage where the truth
is known, and a held-out posterior-predictive check of spike counts) and, where the
truth is known (the demo), ``truth``. Across
sessions (from ``params.nc``): ``tracker`` and ``rf_improvement``. From a field-location
result (``gazeem locate-fields``): ``fields_location``.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from scipy.stats import norm

from gazeem import __version__
from gazeem.io.files import atomic_output, open_netcdf

SESSION_FIGURES = (
    "gaze_trace",
    "correction",
    "posteriors",
    "rfs",
    "loglik",
    "truth",
    "drift",
    "reliability",
)
SUMMARY_FIGURES = ("tracker", "rf_improvement")
RAW, CORR, TRUE = "#9e9e9e", "#d95f02", "#1b1b1b"

STYLE = {
    "font.size": 7,
    "axes.titlesize": 7,
    "axes.labelsize": 7,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "legend.fontsize": 6,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "lines.linewidth": 0.9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "savefig.dpi": 300,
    "pdf.fonttype": 42,  # editable text in the PDF
    "figure.constrained_layout.use": True,
}


@contextmanager
def _style():
    with plt.rc_context(STYLE):
        yield


def _save(fig, outdir: Path, name: str) -> list[Path]:
    """Save ``name.png`` and ``name.pdf`` atomically; return the paths."""
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        final = outdir / f"{name}.{ext}"
        with atomic_output(final) as tmp:
            fig.savefig(
                tmp,
                format=ext,
                metadata={"Creator": f"gazeem {__version__}"} if ext == "pdf" else None,
            )
        paths.append(final)
    plt.close(fig)
    return paths


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


# -- per session -----------------------------------------------------------------------------
def fig_gaze_trace(fit: xr.Dataset, window_s: float = 10.0):
    t = fit["time"].values
    sel = t <= t[0] + window_s
    fig, axes = plt.subplots(2, 1, figsize=(7.0, 3.0), sharex=True)
    for a, (ax, label) in enumerate(zip(axes, ("horizontal", "vertical"), strict=True)):
        ax.plot(t[sel], fit["eye"].values[sel, a], color=RAW, label="tracker")
        ax.plot(t[sel], fit["gaze_mean"].values[sel, a], color=CORR, label="corrected")
        if "true_gaze" in fit:
            ax.plot(
                t[sel], fit["true_gaze"].values[sel, a], color=TRUE, ls=":", lw=0.7, label="true"
            )
        ax.set_ylabel(f"{label} gaze (deg)")
    axes[0].legend(ncol=3, loc="upper right")
    axes[-1].set_xlabel("time (s)")
    axes[0].set_title(
        f"Session {fit.attrs.get('session', '')}: tracker and corrected gaze, first {window_s:g} s"
    )
    return fig


def _per_fixation(fit: xr.Dataset, var: str) -> np.ndarray:
    fix = fit["fixation"].values
    v = fit[var].values
    ids = np.unique(fix[fix >= 0])
    return (
        np.stack([np.nanmean(v[fix == i], axis=0) for i in ids]) if ids.size else np.zeros((0, 2))
    )


def fig_correction(fit: xr.Dataset):
    c = _per_fixation(fit, "correction")
    fig, ax = plt.subplots(figsize=(3.2, 3.0))
    lim = float(np.nanmax(np.abs(c))) * 1.1 if c.size else 1.0
    ax.scatter(c[:, 0], c[:, 1], s=4, color=CORR, alpha=0.6, lw=0)
    sigma = float(fit["sigma"])
    theta = np.linspace(0, 2 * np.pi, 200)
    mean = np.nanmean(c, axis=0)
    ax.plot(
        mean[0] + sigma * np.cos(theta),
        mean[1] + sigma * np.sin(theta),
        color="k",
        lw=0.6,
        ls="--",
        label="σ",
    )
    ax.axhline(0, color="0.8", lw=0.5, zorder=0)
    ax.axvline(0, color="0.8", lw=0.5, zorder=0)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("horizontal correction (deg)")
    ax.set_ylabel("vertical correction (deg)")
    ax.legend(loc="upper right")
    ax.set_title(f"Correction per fixation (n = {len(c)}); fitted σ = {sigma:.3f} deg")
    return fig


def fig_posteriors(fit: xr.Dataset):
    n = fit.sizes.get("example", 0)
    fig, axes = plt.subplots(2, 3, figsize=(6.0, 4.0))
    for e, ax in enumerate(axes.ravel()):
        if e >= n:
            ax.set_visible(False)
            continue
        x, y = fit["example_x"].values[e], fit["example_y"].values[e]
        q = fit["example_q"].values[e]
        dx, dy = abs(x[1] - x[0]) / 2, abs(y[1] - y[0]) / 2
        logq = np.log10(np.clip(q, 1e-12, None))
        im = ax.imshow(
            logq,
            origin="upper",
            extent=(x[0] - dx, x[-1] + dx, y[-1] - dy, y[0] + dy),
            cmap="Greys",
            vmin=-6,
            vmax=0,
            interpolation="nearest",
        )
        r = fit["example_reading"].values[e]
        ax.plot(*r, marker="x", color=RAW, ms=5, mew=1.2, ls="", label="tracker reading")
        ax.plot(
            *fit["example_expected"].values[e],
            marker="+",
            color="#7570b3",
            ms=6,
            mew=1.0,
            ls="",
            label="reading under fitted A, b",
        )
        mean = (q.sum(0) @ x, q.sum(1) @ y)
        ax.plot(*mean, marker="o", mfc="none", color=CORR, ms=5, ls="", label="posterior mean")
        if "example_truth" in fit:
            ax.plot(
                *fit["example_truth"].values[e],
                marker="*",
                color="#1b9e77",
                ms=5,
                ls="",
                label="true",
            )
        ax.set_title(f"fixation {int(fit['example_fixation'].values[e])}")
        ax.set_xlabel("x (deg)")
        ax.set_ylabel("y (deg)")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=5)
    if n:
        fig.colorbar(im, ax=axes, shrink=0.6, label="log10 posterior probability")
    gauge = "\nrelative gauge: the truth is absolute and sits off by the common offset"
    relative = fit.attrs.get("offset_mode") == "zero" and "example_truth" in fit
    fig.suptitle(
        "Posterior over candidate gaze cells for example fixations" + (gauge if relative else ""),
        fontsize=7,
    )
    return fig


def fig_rfs(fit: xr.Dataset, max_units: int = 12):
    if "rf" not in fit:
        fig, ax = plt.subplots(figsize=(3, 2))
        _no_data(ax, "no receptive fields (custom response model)")
        return fig
    rf, rf0 = fit["rf"].values, fit["rf_initial"].values
    n = min(max_units, rf.shape[0])
    order = np.argsort(-(rf**2).reshape(rf.shape[0], -1).sum(1))[:n]
    cols = 4
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(7.0, 1.0 + 0.95 * rows), squeeze=False)
    ppd = float(fit.attrs["ppd"])
    p = rf.shape[-1]
    half = p / 2 / ppd
    ext = (-half, half, -half, half)
    for k, u in enumerate(order):
        lag = int(np.argmax((rf[u] ** 2).sum(axis=(1, 2))))
        lim = max(np.abs(rf[u, lag]).max(), np.abs(rf0[u, lag]).max())
        for j, (img, tag) in enumerate(((rf0[u, lag], "raw"), (rf[u, lag], "corrected"))):
            ax = axes[k // cols, 2 * (k % cols) + j]
            ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim, extent=ext, interpolation="nearest")
            ax.set_title(f"unit {int(fit['unit'].values[u])} {tag}", fontsize=5.5)
            ax.set_xticks([-half, 0, half] if k // cols == rows - 1 else [])
            ax.set_yticks([-half, 0, half] if (k % cols) == 0 and j == 0 else [])
            ax.tick_params(labelsize=5)
    for k in range(n, rows * cols):
        for j in range(2):
            axes[k // cols, 2 * (k % cols) + j].set_visible(False)
    fig.supxlabel("retinal x (deg)", fontsize=6)
    fig.supylabel("retinal y (deg)", fontsize=6)
    fig.suptitle(
        "Receptive fields fitted on the raw trace and after correction (red +, blue −)", fontsize=7
    )
    return fig


def fig_loglik(fit: xr.Dataset):
    ll = fit["loglik"].values
    fig, ax = plt.subplots(figsize=(3.2, 2.4))
    ax.plot(fit["iteration"].values, ll - ll[0], marker="o", ms=2.5, color=CORR)
    ax.set_xlabel("EM iteration")
    ax.set_ylabel("log-likelihood gain over iteration 0 (nats)")
    conv = "converged" if int(fit.attrs.get("converged", 0)) else "not converged"
    ax.set_title(f"Marginal log-likelihood ({conv}, {int(fit.attrs.get('n_iter', 0))} iterations)")
    bits = float(fit.attrs.get("heldout_bits_per_spike", np.nan))
    if np.isfinite(bits):
        ok = int(fit.attrs.get("correction_supported", -1)) == 1
        verdict = "supported" if ok else "NOT supported: raw trace reported"
        a = float(fit.attrs.get("heldout_agreement", np.nan))
        agree = f"spikes alone agree {a:.0%}" if np.isfinite(a) else "agreement not run"
        ax.text(
            0.98,
            0.04,
            f"held-out, corrected vs raw trace:\n{bits:+.4f} bits/spike, "
            f"z = {float(fit.attrs['heldout_z']):.1f}, {agree} ({verdict})",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=5.5,
            color="0.2" if ok else "#b2182b",
        )
    return fig


def fig_truth(fit: xr.Dataset):
    fig, axes = plt.subplots(1, 2, figsize=(6.0, 3.0), sharex=True, sharey=True)
    if "true_gaze" not in fit:
        for ax in axes:
            _no_data(ax, "no ground truth (recorded data)")
        return fig
    truth = _per_fixation(fit, "true_gaze")
    relative = fit.attrs.get("offset_mode") == "zero"
    for ax, var, color, name in (
        (axes[0], "eye", RAW, "tracker"),
        (axes[1], "gaze_mean", CORR, "corrected"),
    ):
        err = _per_fixation(fit, var) - truth
        if relative:
            err = err - np.nanmean(err, axis=0)
        rms = float(np.sqrt(np.nanmean((err**2).sum(1))))
        ax.scatter(err[:, 0], err[:, 1], s=4, lw=0, alpha=0.6, color=color)
        ax.set_title(f"{name} − truth: RMS {rms:.3f} deg")
        ax.set_xlabel("horizontal error (deg)")
        ax.axhline(0, color="0.8", lw=0.5, zorder=0)
        ax.axvline(0, color="0.8", lw=0.5, zorder=0)
        ax.set_aspect("equal")
    axes[0].set_ylabel("vertical error (deg)")
    note = " after removing the mean offset (relative gauge)" if relative else ""
    fig.suptitle(f"Error per fixation against the simulated truth{note}", fontsize=7)
    return fig


def _within_fixation(fit: xr.Dataset, var: str) -> np.ndarray:
    """``(T, 2)`` arcmin: ``var`` minus its fixation's mean (NaN outside fixations)."""
    fix = fit["fixation"].values
    v = fit[var].values * 60.0
    out = np.full(v.shape, np.nan)
    ok = fix >= 0
    ids, inv = np.unique(fix[ok], return_inverse=True)
    sums = np.zeros((ids.size, 2))
    np.add.at(sums, inv, v[ok])
    out[ok] = v[ok] - (sums / np.bincount(inv, minlength=ids.size)[:, None])[inv]
    return out


def fig_drift(fit: xr.Dataset, n_examples: int = 4):
    """Drift within fixations: per-bin posterior (and Viterbi path) against the truth."""
    fig = plt.figure(figsize=(7.0, 3.4), layout="constrained")
    grid = fig.add_gridspec(2, n_examples + 1, width_ratios=[1] * n_examples + [1.6])
    if "gaze_viterbi" not in fit:
        ax = fig.add_subplot(grid[:, :])
        _no_data(ax, "per-fixation model: no drift inferred (set fit: latent: bin)")
        return fig
    has_truth = "true_gaze" in fit
    fix = fit["fixation"].values
    t = fit["time"].values
    ids, counts = np.unique(fix[fix >= 0], return_counts=True)
    calib = fit["fix_calibration"].values if "fix_calibration" in fit else np.zeros(ids.size, bool)
    long = ids[(counts >= np.percentile(counts, 75)) & ~calib[: ids.size]]
    pick = long[np.linspace(0, long.size - 1, min(n_examples, long.size)).round().astype(int)]
    mean = _within_fixation(fit, "gaze_mean")
    vit = _within_fixation(fit, "gaze_viterbi")
    truth = _within_fixation(fit, "true_gaze") if has_truth else None
    # the band: the 68% credible interval about the mean (older fits: ± 1 SD)
    gm = fit["gaze_mean"].values
    if "gaze_lower" in fit:
        at = int(np.argmin(np.abs(fit["level"].values - 0.68)))
        below = (gm - fit["gaze_lower"].values[..., at]) * 60.0
        above = (fit["gaze_upper"].values[..., at] - gm) * 60.0
        band = "posterior mean, 68% interval"
    else:
        below = above = fit["gaze_sd"].values * 60.0
        band = "posterior mean ± SD"
    for col, f in enumerate(pick):
        b = fix == f
        tt = (t[b] - t[b][0]) * 1000.0
        for row, (axis, label) in enumerate(((0, "x"), (1, "y"))):
            ax = fig.add_subplot(grid[row, col])
            m = mean[b, axis]
            lo, hi = m - below[b, axis], m + above[b, axis]
            ax.fill_between(tt, lo, hi, color=CORR, alpha=0.25, lw=0)
            ax.plot(tt, m, color=CORR, lw=1, label=band)
            ax.step(tt, vit[b, axis], where="mid", color=CORR, lw=0.6, ls=":", label="Viterbi")
            if has_truth:
                ax.plot(tt, truth[b, axis], color=TRUE, lw=1, label="truth")
            if col == 0:
                ax.set_ylabel(f"{label} drift (arcmin)")
            if row == 1:
                ax.set_xlabel("time in fixation (ms)")
            else:
                ax.set_title(f"fixation {int(f)}")
    ax = fig.add_subplot(grid[:, n_examples])
    if has_truth:
        ok = np.isfinite(mean[:, 0]) & np.isfinite(truth[:, 0])
        x, y = truth[ok].ravel(), mean[ok].ravel()
        r = float(np.corrcoef(x, y)[0, 1]) if x.size > 2 else float("nan")
        rms = float(np.sqrt(np.mean((y - x) ** 2)))
        ax.scatter(x, y, s=2, lw=0, alpha=0.3, color=CORR)
        lim = float(np.nanpercentile(np.abs(x), 99.5)) * 1.1 or 1.0
        ax.plot([-lim, lim], [-lim, lim], color="0.6", lw=0.6, zorder=0)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xlabel("true drift (arcmin, both axes)")
        ax.set_ylabel("inferred drift (arcmin)")
        ax.set_title(f"all bins\nr = {r:.2f}, RMS error {rms:.2f}′")
    else:
        _no_data(ax, "no ground truth (recorded data)")
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3)
    sd_px = float(fit["sigma_drift_px"])
    fig.suptitle(
        f"Drift within fixations (relative to the fixation's mean); fitted σ_drift = "
        f"{sd_px:.2f} px = {float(fit['sigma_drift']) * 60:.2f}′ per bin",
        fontsize=7,
    )
    return fig


# -- across sessions -------------------------------------------------------------------------
def _session_bars(ax, params: xr.Dataset, var: str, ylabel: str, title: str) -> None:
    """One bar per session of ``params[var]``."""
    s = params["session"].values
    ax.bar(range(len(s)), params[var].values, color=CORR)
    ax.set_xticks(range(len(s)), s, rotation=45, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def fig_tracker(params: xr.Dataset):
    fig, axes = plt.subplots(1, 2, figsize=(5.5, 2.4))
    s = params["session"].values
    _session_bars(axes[0], params, "sigma_deg", "tracker σ (deg)", "Tracker noise per session")
    axes[1].scatter(params["offset_x_deg"].values, params["offset_y_deg"].values, color=CORR, s=12)
    for i, name in enumerate(s):
        axes[1].annotate(
            str(name),
            (params["offset_x_deg"].values[i], params["offset_y_deg"].values[i]),
            fontsize=5,
        )
    axes[1].axhline(0, color="0.8", lw=0.5, zorder=0)
    axes[1].axvline(0, color="0.8", lw=0.5, zorder=0)
    axes[1].set_xlabel("offset x (deg)")
    axes[1].set_ylabel("offset y (deg)")
    axes[1].set_title("Tracker offset (0 where anchored at zero)")
    return fig


def fig_rf_improvement(params: xr.Dataset):
    fig, axes = plt.subplots(1, 2, figsize=(5.5, 2.4))
    _session_bars(
        axes[0],
        params,
        "bits_per_spike_gain",
        "gain (bits / spike)",
        "Response log-likelihood gain over the raw-trace fit",
    )
    if "rf_size_deg" in params:
        before, after = params["initial_rf_size_deg"].values, params["rf_size_deg"].values
        lim = float(np.nanmax(np.r_[before, after])) * 1.1
        axes[1].scatter(before, after, s=5, lw=0, alpha=0.7, color=CORR)
        axes[1].plot([0, lim], [0, lim], color="0.6", lw=0.6, ls="--")
        axes[1].set_xlim(0, lim)
        axes[1].set_ylim(0, lim)
        axes[1].set_xlabel("RF size, raw trace (deg)")
        axes[1].set_ylabel("RF size, corrected (deg)")
        axes[1].set_title("RF size per unit (energy SD)")
    else:
        _no_data(axes[1], "no receptive fields")
    return fig


def interval_coverage(fit: xr.Dataset) -> dict | None:
    """Per-axis coverage of the truth by the fit's intervals (simulated sessions; ``None``
    without a truth): ``levels`` and ``observed`` for the stored central intervals, and
    ``nominal``, ``gaussian`` for ``mean ± z·SD`` at every nominal mass."""
    if "true_gaze" not in fit or "gaze_lower" not in fit:
        return None
    truth, mean = fit["true_gaze"].values, fit["gaze_mean"].values
    ok = np.isfinite(mean).all(1) & np.isfinite(truth).all(1)
    if not ok.any():
        return None
    shift = np.zeros(2)
    if fit.attrs.get("offset_mode") == "zero":  # relative gauge: the mean offset is free
        shift = np.mean(mean[ok] - truth[ok], axis=0)
    t = truth[ok] + shift
    lo, hi = fit["gaze_lower"].values[ok], fit["gaze_upper"].values[ok]
    observed = ((lo <= t[..., None]) & (t[..., None] <= hi)).mean(axis=(0, 1))
    nominal = np.linspace(0.02, 0.995, 80)
    zscore = np.abs(t - mean[ok]) / np.maximum(fit["gaze_sd"].values[ok], 1e-12)
    gaussian = (zscore[..., None] <= norm.ppf((1 + nominal) / 2)).mean(axis=(0, 1))
    return {
        "levels": fit["level"].values,
        "observed": observed,
        "nominal": nominal,
        "gaussian": gaussian,
    }


def fig_reliability(fit: xr.Dataset):
    """Are the intervals honest? Coverage of the truth (simulated sessions), and the
    held-out posterior-predictive check of spike counts (every session)."""
    fig, axes = plt.subplots(1, 3, figsize=(7.0, 2.4))
    cov = interval_coverage(fit)
    ax = axes[0]
    if cov is None:
        _no_data(ax, "no ground truth (recorded data):\nsee the predictive check")
    else:
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.6, ls="--")
        ax.plot(cov["nominal"], cov["gaussian"], color=CORR, lw=0.8, label="mean ± z·SD")
        ax.plot(cov["levels"], cov["observed"], "o", ms=3.5, color=TRUE, label="central interval")
        for lv, ob in zip(cov["levels"], cov["observed"], strict=True):
            ax.annotate(f"{ob:.0%}", (lv, ob), xytext=(-14, 6), textcoords="offset points")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("nominal posterior mass")
        ax.set_ylabel("fraction of (bin, axis) covering the truth")
        ax.legend(loc="upper left")
    ax.set_title("Interval coverage (simulated truth)")
    if "ppc_predicted" not in fit:
        for ax in axes[1:]:
            _no_data(ax, "held-out check not run")
        return fig
    ax = axes[1]
    for src, color in (("raw", RAW), ("corrected", CORR)):
        sel = fit.sel(ppc_source=src)
        keep = sel["ppc_pairs"].values >= 100
        slope = float(fit.attrs.get(f"heldout_ppc_slope_{src}", np.nan))
        ax.plot(
            sel["ppc_predicted"].values[keep],
            sel["ppc_observed"].values[keep],
            "o-",
            ms=2.5,
            color=color,
            label=f"{src} (slope {slope:.2f})",
        )
    pred = fit["ppc_predicted"].values
    lim = (np.nanmin(pred[pred > 0]) / 1.5, np.nanmax(pred) * 1.5)
    ax.plot(lim, lim, color="0.6", lw=0.6, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("predicted spikes / bin (group mean)")
    ax.set_ylabel("observed spikes / bin")
    ax.set_title("Held-out spikes: rate calibration")
    ax.legend(loc="upper left")
    ax = axes[2]
    k = fit["ppc_count"].values
    obs = fit["ppc_count_observed"].sel(ppc_source="corrected").values
    ax.bar(k, obs, color="0.85", label="observed")
    for src, color in (("raw", RAW), ("corrected", CORR)):
        tv = float(fit.attrs.get(f"heldout_ppc_tv_{src}", np.nan))
        ax.plot(
            k,
            fit["ppc_count_predicted"].sel(ppc_source=src).values,
            "o-",
            ms=2.5,
            color=color,
            label=f"{src} (TV {tv:.3f})",
        )
    ax.set_yscale("log")
    ax.set_ylim(top=20)  # headroom for the legend above the bars
    ax.set_xticks(k, [*map(str, k[:-1]), f"≥{k[-1]}"])
    ax.set_xlabel("spikes in a (bin, unit)")
    ax.set_ylabel("fraction of held-out pairs")
    ax.set_title("Held-out spike counts")
    ax.legend(loc="upper right", title="predicted (lines)", title_fontsize=6)
    return fig


SESSION_MAKERS = {
    "gaze_trace": fig_gaze_trace,
    "correction": fig_correction,
    "posteriors": fig_posteriors,
    "rfs": fig_rfs,
    "loglik": fig_loglik,
    "truth": fig_truth,
    "drift": fig_drift,
    "reliability": fig_reliability,
}
#: what every session figure reads from a fit result
FIT_REQUIRED = ("eye", "fixation", "gaze_mean", "gaze_sd", "rf", "rf_initial", "sigma", "loglik")
SUMMARY_MAKERS = {"tracker": fig_tracker, "rf_improvement": fig_rf_improvement}


def session_figures(fit_path, outdir, max_units: int = 12) -> list[Path]:
    """Draw every per-session figure of one fit result into ``outdir``."""
    out = []
    with open_netcdf(fit_path, "fit result", FIT_REQUIRED) as fit, _style():
        fit = fit.load()
        for name, make in SESSION_MAKERS.items():
            fig = make(fit, max_units=max_units) if make is fig_rfs else make(fit)
            out += _save(fig, Path(outdir), name)
    return out


def summary_figures(params_path, outdir) -> list[Path]:
    """Draw the across-session figures from ``params.nc`` into ``outdir``."""
    out = []
    with (
        open_netcdf(params_path, "parameter table (params.nc)", ("sigma_deg",)) as params,
        _style(),
    ):
        params = params.load()
        for name, make in SUMMARY_MAKERS.items():
            out += _save(make(params), Path(outdir), name)
    return out


# -- field location --------------------------------------------------------------------------
def fig_fields_location(loc: xr.Dataset):
    """The located units' fields around the tracker's reading, and the declared region."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(6.4, 3.0), width_ratios=(1.25, 1))
    x, y = loc["x_deg"].values, loc["y_deg"].values
    half = (x[1] - x[0]) / 2 if x.size > 1 else 0.5
    extent = (x[0] - half, x[-1] + half, y[0] - half, y[-1] + half)
    located = loc["located"].values.astype(bool)
    if located.any():
        im = ax.imshow(
            loc["population_energy"].values, extent=extent, origin="lower", cmap="magma", vmin=0
        )
        fig.colorbar(im, ax=ax, shrink=0.8, label="mean energy / peak")
    else:
        _no_data(ax, "no unit located")
    c = loc["center_deg"].values
    ax.plot(
        c[located, 0],
        c[located, 1],
        "o",
        ms=2.5,
        mfc="none",
        mec="w",
        mew=0.6,
        label=f"units ({located.sum()} of {located.size})",
    )
    ax.plot(0, 0, "+", color="c", ms=8, mew=1.0, label="tracker reading")
    ax.plot(
        loc.attrs["declared_rf_x_deg"],
        loc.attrs["declared_rf_y_deg"],
        "s",
        ms=6,
        mfc="none",
        mec="c",
        mew=0.8,
        label="declared region",
    )
    px, py = loc.attrs["population_x_deg"], loc.attrs["population_y_deg"]
    if np.isfinite(px):
        size = loc.attrs["suggested_patch_px"] / loc.attrs["ppd"]
        ax.add_patch(
            plt.Rectangle(
                (px - size / 2, py - size / 2),
                size,
                size,
                fill=False,
                ec="#66c2a5",
                lw=0.9,
                label="suggested patch",
            )
        )
    ax.set_xlabel("x from the reading (deg, right)")
    ax.set_ylabel("y from the reading (deg, up)")
    ax.set_title(
        f"population centre ({px:.2f}, {py:.2f}) deg; patch {loc.attrs['suggested_patch_px']} px"
        if np.isfinite(px)
        else "no field located"
    )
    ax.legend(loc="lower left", fontsize=5, labelcolor="0.9")
    snr = loc["snr"].values
    bx.hist(snr, bins=20, color="0.5")
    bx.axvline(float(loc["located"].attrs.get("threshold", np.nan)), color=CORR)
    bx.set_xlabel("energy peak / robust SD")
    bx.set_ylabel("units")
    bx.set_title("how clearly each field stands out")
    return fig


def fields_figures(loc_path, outdir) -> list[Path]:
    """Draw ``fields_location`` from a ``gazeem locate-fields`` result into ``outdir``."""
    with open_netcdf(loc_path, "field location", ("center_deg", "located")) as loc, _style():
        return _save(fig_fields_location(loc.load()), Path(outdir), "fields_location")
