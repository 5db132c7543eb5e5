"""``gazeem mixture``."""

import numpy as np
import yaml
from sklearn.datasets import load_iris

from gazeem.cli import main
from gazeem.mixtures import GaussianMixture

from .test_bernoulli import TOSSES


def test_gaussian_from_csv_with_header(tmp_path, capsys):
    X = load_iris().data
    path = tmp_path / "iris.csv"
    np.savetxt(
        path,
        X,
        delimiter=",",
        header="sepal_length,sepal_width,petal_length,petal_width",
        comments="",
    )
    assert (
        main(
            [
                "mixture",
                "gaussian",
                str(path),
                "-k",
                "3",
                "--seed",
                "1",
                "--device",
                "cpu",
                "--set",
                "tol=1e-6",
            ]
        )
        == 0
    )
    out = yaml.safe_load(capsys.readouterr().out)
    ref = GaussianMixture(3, random_state=1, tol=1e-6, device="cpu").fit(X)
    np.testing.assert_allclose(out["means"], ref.means_, rtol=1e-12)
    assert out["converged"] is True and out["model"] == "GaussianMixture"


def test_bernoulli_from_npy_to_json(tmp_path):
    path = tmp_path / "coins.npy"
    np.save(path, TOSSES)
    out = tmp_path / "p.json"
    args = [
        "mixture",
        "bernoulli",
        str(path),
        "--set",
        "theta_init=[0.6, 0.5]",
        "--set",
        "fix_weights=true",
    ]
    assert main([*args, "--set", "tol=1e-14", "--device", "cpu", "-o", str(out)]) == 0
    np.testing.assert_allclose(yaml.safe_load(out.read_text())["theta"], [0.80, 0.52], atol=0.005)


def test_missing_file_is_a_clear_error(tmp_path, caplog):
    assert main(["mixture", "gaussian", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv: no such file" in caplog.text
