"""The ``gazeem`` command: one verb per pipeline stage."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

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


def _settings(args: argparse.Namespace, section: str, allowed: list[str]) -> dict:
    """The ``section`` settings from ``--config`` and ``--set``, checked by the schema.

    The same schema validates the workflow's config.yaml, so the CLI accepts exactly what
    the workflow accepts; the error names where the bad value came from.
    """
    from gazeem.config import check_keys, load_section, parse_overrides, validate_section

    from_file = load_section(args.config, section)
    overrides = parse_overrides(args.set)
    params = {**from_file, **overrides}
    check_keys(params, allowed, f"{section} settings")
    sources = {k: str(args.config) for k in from_file}
    sources.update({item.partition("=")[0].strip(): f"--set {item}" for item in args.set or []})
    validate_section(params, section, sources)
    return params


def cmd_simulate(args: argparse.Namespace) -> None:
    from dataclasses import fields

    from gazeem.io.dataset import write_netcdf_atomic
    from gazeem.io.hdf5 import session_to_hdf5
    from gazeem.io.nwb import session_to_nwb
    from gazeem.simulate import SimulationConfig, simulate_session

    names = [
        f.name for f in fields(SimulationConfig) if f.name not in ("session", "extra", "images")
    ]
    params = _settings(args, "simulate", names)
    if args.seed is not None:
        params["seed"] = args.seed
    params["session"] = args.session or Path(args.output).stem
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

    from gazeem.ingest import IngestSettings, ingest_session
    from gazeem.io.sessions import read_sessions

    table = read_sessions(args.sessions)
    if args.session not in table:
        raise GazeemError(
            f"{args.sessions}: field 'session': no session {args.session!r}; "
            f"it has {sorted(table)}."
        )
    params = _settings(args, "ingest", [f.name for f in fields(IngestSettings)])
    base = Path(args.base) if args.base else None
    ingest_session(table[args.session], args.output, IngestSettings(**params), base=base)


def cmd_export(args: argparse.Namespace) -> None:
    from gazeem.export import export_nwb

    export_nwb(args.source, args.fit, args.output)


def cmd_aggregate(args: argparse.Namespace) -> None:
    from gazeem.aggregate import aggregate

    aggregate(args.fits, args.params_nc, args.params_tsv, args.units_tsv)


def cmd_figures(args: argparse.Namespace) -> None:
    from gazeem.figures import fields_figures, session_figures, summary_figures

    if args.kind == "session":
        paths = session_figures(args.input, args.outdir, max_units=args.max_units)
    elif args.kind == "fields":
        paths = fields_figures(args.input, args.outdir)
    else:
        paths = summary_figures(args.input, args.outdir)
    log.info("drew %d files in %s", len(paths), args.outdir)


def cmd_locate(args: argparse.Namespace) -> None:
    from dataclasses import fields

    from gazeem.io.dataset import validate_session, write_netcdf_atomic
    from gazeem.io.files import open_netcdf
    from gazeem.locate import LocateSettings, locate_fields

    params = _settings(args, "locate", [f.name for f in fields(LocateSettings)])
    required = ("counts", "eye", "eye_valid", "fixation", "frame", "stimulus")
    with open_netcdf(args.session, "session dataset", required) as ds:
        ds = validate_session(ds.load())
        ds.encoding["source"] = str(args.session)
        write_netcdf_atomic(locate_fields(ds, LocateSettings(**params)), args.output)
    log.info("wrote %s", args.output)


def cmd_fit(args: argparse.Namespace) -> None:
    from gazeem.gaze.checks import TrackerGainWarning
    from gazeem.gaze.estimator import GazeEM
    from gazeem.io.dataset import validate_session, write_netcdf_atomic
    from gazeem.io.files import open_netcdf

    names = [p for p in GazeEM._param_names() if p not in ("response_model", "progress")]
    params = _settings(args, "fit", names)
    if args.device:
        params["device"] = args.device
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    est = GazeEM(progress=args.progress, **params)
    log.info(
        "gazeem %s (torch %s, %d threads): fitting %s with config\n%s",
        __version__,
        torch.__version__,
        torch.get_num_threads(),
        args.session,
        yaml.safe_dump(est.get_params()),
    )
    required = ("counts", "eye", "eye_valid", "fixation", "frame", "stimulus")
    with open_netcdf(args.session, "session dataset", required) as ds:
        # everything but the stimulus in memory; the fit reads frames as it needs them
        try:
            small = ds.drop_vars("stimulus").load()
        except (OSError, ValueError) as err:
            raise GazeemError(
                f"{args.session}: field '/': cannot be read; the file may be corrupt "
                f"({type(err).__name__}: {err})."
            ) from None
        ds = validate_session(small.assign(stimulus=ds["stimulus"]))
        ds.encoding["source"] = str(args.session)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TrackerGainWarning)  # it stops the command below
            try:
                est.fit(ds)
            except OSError as err:  # frames are read lazily: a corrupt chunk shows up here
                raise GazeemError(
                    f"{args.session}: field 'stimulus': cannot be read; the file may be corrupt "
                    f"({type(err).__name__}: {err})."
                ) from None
        if est.gain_problem_:
            raise GazeemError(f"{est.gain_problem_} Nothing was written to {args.output}.")
        log.info(
            "device %s: %d iterations, converged=%s, log-likelihood %.6g, %.1f s",
            est.device_,
            est.n_iter_,
            est.converged_,
            est.loglik_[-1],
            time.perf_counter() - t0,
        )
        trace = zip(est.loglik_, est.state_.seconds_per_iter, est.fit_.gaze_change, strict=True)
        for i, (ll, s, (rms, big)) in enumerate(trace):
            log.info(
                "iteration %d: log-likelihood %.8g, gaze moved %.3g px RMS (%.3g at most), %.3f s",
                *(i, ll, rms, big, s),
            )
        write_netcdf_atomic(est.to_dataset(ds), args.output)
    log.info("wrote %s", args.output)


def cmd_resources(args: argparse.Namespace) -> None:
    import json

    from gazeem.config import section_schema
    from gazeem.sizing import SessionSize, fit_resources

    params = _settings(args, "fit", list(section_schema("fit")["properties"]))
    size = SessionSize.from_file(args.session)
    need = fit_resources(size, params, attempt=args.attempt)
    print(json.dumps({"minutes": round(size.minutes, 3), "units": size.units, **vars(need)}))


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
    s.add_argument("--session", help="the session's name (default: the output's stem)")
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
    g.add_argument("kind", choices=["session", "summary", "fields"])
    g.add_argument("input", help="a fit result (.nc), params.nc, or a locate-fields result")
    g.add_argument("outdir", help="folder for the PNG and PDF files")
    g.add_argument("--max-units", type=int, default=12, help="units drawn in the RF figure")
    g.set_defaults(func=cmd_figures)

    lf = sub.add_parser(
        "locate-fields",
        help="where the units' receptive fields sit relative to the gaze (suggests rf_x_deg, "
        "rf_y_deg and patch_size)",
    )
    lf.add_argument("session", help="session dataset (.nc)")
    lf.add_argument("output", help="field-location result (.nc)")
    lf.add_argument("--config", help="YAML file; its 'locate' mapping sets the search")
    lf.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one setting")
    lf.set_defaults(func=cmd_locate)

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

    r = sub.add_parser(
        "resources",
        help="the memory (MB) and time (min) to ask a scheduler for, for one session's fit",
    )
    r.add_argument("session", help="session dataset (.nc)")
    r.add_argument("--config", help="YAML file; its 'fit' mapping as for `gazeem fit`")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one setting")
    r.add_argument("--attempt", type=int, default=1, help="the try (each retry doubles)")
    r.set_defaults(func=cmd_resources)

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
