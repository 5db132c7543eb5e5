"""The ``gazeem`` command: one verb per pipeline stage."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import xarray as xr
import yaml

from gazeem import __version__
from gazeem.errors import GazeemError

log = logging.getLogger("gazeem")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        stream=sys.stderr,
    )


def cmd_simulate(args: argparse.Namespace) -> None:
    from dataclasses import fields

    from gazeem.config import check_keys, load_section, parse_overrides
    from gazeem.io.dataset import write_netcdf_atomic
    from gazeem.io.hdf5 import session_to_hdf5
    from gazeem.io.nwb import session_to_nwb
    from gazeem.simulate import SimulationConfig, simulate_session

    params = {**load_section(args.config, "simulate"), **parse_overrides(args.set)}
    check_keys(params, [f.name for f in fields(SimulationConfig)], "simulate config")
    if args.seed is not None:
        params["seed"] = args.seed
    params.setdefault("session", Path(args.output).stem)
    for k in (
        "stim_center_deg",
        "rate_hz",
        "fixation_bins",
        "saccade_bins",
        "blink_bins",
        "rf_sigma_px",
    ):
        if k in params and isinstance(params[k], list):
            params[k] = tuple(params[k])
    ds = simulate_session(SimulationConfig(**params))
    suffix = Path(args.output).suffix
    if suffix == ".nwb":
        session_to_nwb(
            ds,
            args.output,
            eye_samples_per_bin=args.eye_samples_per_bin,
            seed=int(params.get("seed", 0)),
        )
    elif suffix in (".h5", ".hdf5"):
        session_to_hdf5(ds, args.output, eye_samples_per_bin=args.eye_samples_per_bin)
    else:
        write_netcdf_atomic(ds, args.output)
    log.info(
        "simulated session %s: %d bins, %d units -> %s",
        ds.attrs["session"],
        ds.sizes["time"],
        ds.sizes["unit"],
        args.output,
    )


def cmd_ingest(args: argparse.Namespace) -> None:
    from dataclasses import fields

    from gazeem.config import check_keys, load_section, parse_overrides
    from gazeem.ingest import IngestSettings, ingest_session
    from gazeem.io.sessions import read_sessions

    table = read_sessions(args.sessions)
    if args.session not in table:
        raise GazeemError(f"{args.sessions}: no session {args.session!r}; it has {sorted(table)}.")
    params = {**load_section(args.config, "ingest"), **parse_overrides(args.set)}
    check_keys(params, [f.name for f in fields(IngestSettings)], "ingest config")
    base = Path(args.base) if args.base else None
    ingest_session(table[args.session], args.output, IngestSettings(**params), base=base)


def cmd_export(args: argparse.Namespace) -> None:
    from gazeem.export import export_nwb

    export_nwb(args.source, args.fit, args.output)


def cmd_aggregate(args: argparse.Namespace) -> None:
    from gazeem.aggregate import aggregate

    aggregate(args.fits, args.params_nc, args.params_tsv, args.units_tsv)


def cmd_figures(args: argparse.Namespace) -> None:
    from gazeem.figures import session_figures, summary_figures

    if args.kind == "session":
        paths = session_figures(args.input, args.outdir, max_units=args.max_units)
    else:
        paths = summary_figures(args.input, args.outdir)
    log.info("drew %d files in %s", len(paths), args.outdir)


def cmd_fit(args: argparse.Namespace) -> None:
    from gazeem.config import check_keys, load_section, parse_overrides
    from gazeem.gaze.model import GazeEM
    from gazeem.io.dataset import validate_session, write_netcdf_atomic

    params = {**load_section(args.config, "fit"), **parse_overrides(args.set)}
    check_keys(params, [p for p in GazeEM._param_names() if p != "response_model"], "fit config")
    if args.device:
        params["device"] = args.device
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    est = GazeEM(progress=args.progress, **{k: v for k, v in params.items() if k != "progress"})
    log.info(
        "gazeem %s (torch %s, %d threads): fitting %s with config\n%s",
        __version__,
        torch.__version__,
        torch.get_num_threads(),
        args.session,
        yaml.safe_dump(est.get_params()),
    )
    with xr.open_dataset(args.session, engine="h5netcdf") as ds:
        # everything but the stimulus in memory; the fit reads frames as it needs them
        ds = validate_session(ds.drop_vars("stimulus").load().assign(stimulus=ds["stimulus"]))
        t0 = time.perf_counter()
        est.fit(ds)
        log.info(
            "device %s: %d iterations, converged=%s, log-likelihood %.6g, %.1f s",
            est.device_,
            est.n_iter_,
            est.converged_,
            est.loglik_[-1],
            time.perf_counter() - t0,
        )
        for i, (ll, s) in enumerate(zip(est.loglik_, est.state_.seconds_per_iter, strict=True)):
            log.info("iteration %d: log-likelihood %.8g, %.3f s", i, ll, s)
        write_netcdf_atomic(est.to_dataset(), args.output)
    log.info("wrote %s", args.output)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gazeem", description=__doc__)
    p.add_argument("--version", action="version", version=f"gazeem {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="simulate a session with ground truth")
    s.add_argument("output", help="output: .nwb or .h5 (a raw recording) or .nc (a binned session)")
    s.add_argument(
        "--eye-samples-per-bin", type=int, default=4, help="eye samples per bin in .nwb/.h5"
    )
    s.add_argument(
        "--config", help="YAML file; its 'simulate' mapping sets SimulationConfig fields"
    )
    s.add_argument("--seed", type=int)
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one setting")
    s.set_defaults(func=cmd_simulate)

    i = sub.add_parser("ingest", help="turn one session's NWB or HDF5 file into a session dataset")
    i.add_argument("output", help="session dataset to write (.nc)")
    i.add_argument("--sessions", required=True, help="the session table (config/sessions.tsv)")
    i.add_argument("--session", required=True, help="which row of the table")
    i.add_argument("--config", help="YAML file; its 'ingest' mapping sets the preprocessing")
    i.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one setting")
    i.add_argument(
        "--base",
        help="folder that relative paths in the table start from (default: the working directory)",
    )
    i.set_defaults(func=cmd_ingest)

    e = sub.add_parser("export-nwb", help="copy an NWB file and add the corrected gaze")
    e.add_argument("source", help="the session's source NWB file (never modified)")
    e.add_argument("fit", help="the fit result (.nc)")
    e.add_argument("output", help="the NWB file to write")
    e.set_defaults(func=cmd_export)

    a = sub.add_parser("aggregate", help="collect the parameters of many fits into one table")
    a.add_argument("fits", nargs="+", help="fit results (.nc)")
    a.add_argument("--params-nc", required=True)
    a.add_argument("--params-tsv", required=True)
    a.add_argument("--units-tsv", help="also write one row per unit here")
    a.set_defaults(func=cmd_aggregate)

    g = sub.add_parser(
        "figures", help="draw the figures of one fit (session) or of params.nc (summary)"
    )
    g.add_argument("kind", choices=["session", "summary"])
    g.add_argument("input", help="a fit result (.nc) or params.nc")
    g.add_argument("outdir", help="folder for the PNG and PDF files")
    g.add_argument("--max-units", type=int, default=12, help="units drawn in the RF figure")
    g.set_defaults(func=cmd_figures)

    f = sub.add_parser("fit", help="fit the gaze EM to one session")
    f.add_argument("session", help="session dataset (.nc)")
    f.add_argument("output", help="fit result (.nc)")
    f.add_argument("--config", help="YAML file; its 'fit' mapping sets GazeEM hyperparameters")
    f.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override one hyperparameter"
    )
    f.add_argument("--device", choices=["auto", "cpu", "cuda"])
    f.add_argument("--progress", action="store_true", help="tqdm bar per EM iteration")
    f.add_argument("--threads", type=int, help="CPU threads for torch (default: all cores)")
    f.set_defaults(func=cmd_fit)

    from gazeem.mixtures.cli import add_parser as add_mixture_parser

    add_mixture_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    if "SLURM_JOB_ID" in os.environ:
        log.info(
            "running as SLURM job %s on %s",
            os.environ["SLURM_JOB_ID"],
            os.environ.get("SLURMD_NODENAME", "?"),
        )
    try:
        args.func(args)
    except GazeemError as err:
        log.error("%s", err)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
