"""``gazeem mixture``: fit a textbook mixture to a CSV or NPY file and report the parameters."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

from gazeem.config import parse_overrides
from gazeem.errors import GazeemError

MODELS = ("gaussian", "bernoulli", "objects")


def load_matrix(path: str | Path) -> np.ndarray:
    """A 2-D float array from ``.npy`` or ``.csv`` (a non-numeric first line is a header)."""
    path = Path(path)
    if not path.exists():
        raise GazeemError(f"{path}: no such file.")
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            first = path.read_text().splitlines()[:1]
            header = bool(first) and any(
                c.isalpha() for c in first[0].replace("e", "").replace("E", "")
            )
            arr = np.loadtxt(path, delimiter=",", skiprows=int(header), ndmin=2)
    except (ValueError, OSError) as err:
        raise GazeemError(f"{path}: cannot read a numeric matrix: {err}") from None
    return np.asarray(arr, dtype=np.float64)


def build_model(args: argparse.Namespace):
    from gazeem.mixtures import BernoulliMixture, GaussianMixture, ObjectLocationMixture

    extra = parse_overrides(args.set)
    common = dict(random_state=args.seed, device=args.device)
    if args.model == "gaussian":
        return GaussianMixture(
            args.components, covariance_type=args.covariance_type, **common, **extra
        )
    if args.model == "bernoulli":
        return BernoulliMixture(args.components, input=args.input, **common, **extra)
    return ObjectLocationMixture(args.components, n_categories=args.categories, **common, **extra)


def parameters(model, X) -> dict:
    """The fitted parameters, convergence record and mean log-likelihood of ``X`` under them."""
    names = {
        "GaussianMixture": ["weights_", "means_", "covariances_"],
        "BernoulliMixture": ["theta_", "weights_"],
        "ObjectLocationMixture": ["locations_", "categories_", "sigma_", "accuracy_", "weights_"],
    }[type(model).__name__]
    out = {n.rstrip("_"): np.asarray(getattr(model, n)).tolist() for n in names}
    out.update(
        model=type(model).__name__,
        converged=bool(model.converged_),
        n_iter=int(model.n_iter_),
        mean_log_likelihood=float(model.score(X)),
    )
    return out


def run(args: argparse.Namespace) -> None:
    X = load_matrix(args.data)
    model = build_model(args).fit(X)
    params = parameters(model, X)
    if args.output:
        text = (
            json.dumps(params, indent=2)
            if args.output.endswith(".json")
            else yaml.safe_dump(params, sort_keys=False)
        )
        Path(args.output).write_text(text)
    else:
        print(yaml.safe_dump(params, sort_keys=False), end="")


def add_parser(sub) -> None:
    m = sub.add_parser("mixture", help="fit a textbook mixture model to a CSV or NPY file")
    m.add_argument("model", choices=MODELS)
    m.add_argument("data", help="samples as rows (.csv or .npy)")
    m.add_argument("-k", "--components", type=int, default=2)
    m.add_argument(
        "--covariance-type", default="full", help="gaussian: full, tied, diag or spherical"
    )
    m.add_argument(
        "--input", default="tosses", help="bernoulli: tosses (0/1 rows) or counts (heads, tosses)"
    )
    m.add_argument("--categories", type=int, default=2, help="objects: number of categories")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--device", default="auto")
    m.add_argument("--set", action="append", metavar="KEY=VALUE", help="any other hyperparameter")
    m.add_argument(
        "-o", "--output", help="write the parameters here (.yaml or .json) instead of stdout"
    )
    m.set_defaults(func=run)
