"""The ``gazeem`` command: one verb per pipeline stage."""

from __future__ import annotations

import argparse
import logging
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
    write_netcdf_atomic(ds, args.output)
    log.info(
        "simulated session %s: %d bins, %d units -> %s",
        ds.attrs["session"],
        ds.sizes["time"],
        ds.sizes["unit"],
        args.output,
    )


def cmd_fit(args: argparse.Namespace) -> None:
    from gazeem.config import check_keys, load_section, parse_overrides
    from gazeem.gaze.model import GazeEM
    from gazeem.io.dataset import validate_session, write_netcdf_atomic

    params = {**load_section(args.config, "fit"), **parse_overrides(args.set)}
    check_keys(params, [p for p in GazeEM._param_names() if p != "response_model"], "fit config")
    if args.device:
        params["device"] = args.device
    est = GazeEM(progress=args.progress, **{k: v for k, v in params.items() if k != "progress"})
    log.info(
        "gazeem %s: fitting %s with config\n%s",
        __version__,
        args.session,
        yaml.safe_dump(est.get_params()),
    )
    with xr.open_dataset(args.session, engine="h5netcdf") as ds:
        ds = validate_session(ds.load())
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
    s.add_argument("output", help="output session file (.nc)")
    s.add_argument(
        "--config", help="YAML file; its 'simulate' mapping sets SimulationConfig fields"
    )
    s.add_argument("--seed", type=int)
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one setting")
    s.set_defaults(func=cmd_simulate)

    f = sub.add_parser("fit", help="fit the gaze EM to one session")
    f.add_argument("session", help="session dataset (.nc)")
    f.add_argument("output", help="fit result (.nc)")
    f.add_argument("--config", help="YAML file; its 'fit' mapping sets GazeEM hyperparameters")
    f.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override one hyperparameter"
    )
    f.add_argument("--device", choices=["auto", "cpu", "cuda"])
    f.add_argument("--progress", action="store_true", help="tqdm bar per EM iteration")
    f.set_defaults(func=cmd_fit)

    from gazeem.mixtures.cli import add_parser as add_mixture_parser

    add_mixture_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        args.func(args)
    except GazeemError as err:
        log.error("%s", err)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
