"""Draw docs/img/gmm_iris.png: gazeem's GaussianMixture on iris, with scikit-learn's fit overlaid.

Run: .venv/bin/python docs/scripts/mixtures_figure.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Ellipse
from sklearn.datasets import load_iris
from sklearn.mixture import GaussianMixture as SkGMM

from gazeem.mixtures import GaussianMixture


def ellipse(ax, mean, cov, **kw):
    vals, vecs = np.linalg.eigh(cov)
    angle = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))
    for n_sd in (1, 2):
        w, h = 2 * n_sd * np.sqrt(vals[::-1])
        ax.add_patch(Ellipse(mean, w, h, angle=angle, fill=False, **kw))


def main() -> None:
    iris = load_iris()
    X = iris.data[:, 2:]  # petal length and width, cm
    # one shared starting point, from a one-step scikit-learn fit; then both run to convergence
    start = SkGMM(3, max_iter=1, random_state=0).fit(X)
    init = dict(weights_init=start.weights_, means_init=start.means_, precisions_init=start.precisions_)
    gz = GaussianMixture(3, tol=1e-8, device="cpu", **init).fit(X)
    sk = SkGMM(3, tol=1e-8, **init).fit(X)
    fig, ax = plt.subplots(figsize=(4.5, 3.6), dpi=200)
    labels = gz.predict(X)
    colors = ["#1b9e77", "#d95f02", "#7570b3"]
    for k in range(3):
        ax.scatter(*X[labels == k].T, s=8, color=colors[k], alpha=0.7, lw=0)
        ellipse(ax, gz.means_[k], gz.covariances_[k], color=colors[k], lw=1.4)
        ellipse(ax, sk.means_[k], sk.covariances_[k], color="k", lw=0.6, ls=":")
    ax.set_xlabel("petal length (cm)")
    ax.set_ylabel("petal width (cm)")
    ax.set_title("Iris, 3-component GMM: gazeem (colour) and scikit-learn (dotted)", fontsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    out = Path(__file__).resolve().parents[1] / "img" / "gmm_iris.png"
    fig.savefig(out)
    print(out, "mean log-likelihood: gazeem", gz.lower_bound_, "scikit-learn", sk.lower_bound_)


if __name__ == "__main__":
    main()
