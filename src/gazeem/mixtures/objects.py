"""Object locations with categories: the MetaGen inference model.

Observations are ``N`` detections, each a 3-D location and a category label. The world
holds ``K`` objects with locations ``μ_k`` and categories ``c_k``. A detection of object
``k`` lies at ``N(μ_k, σ² I)``, and its label is ``c_k`` with probability ``p`` (the
detector's accuracy) and otherwise uniform over the other ``C − 1`` categories.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gazeem.errors import GazeemError
from gazeem.mixtures.base import BaseMixture
from gazeem.mixtures.kmeans import kmeans


class ObjectLocationMixture(BaseMixture):
    """EM for object locations, categories, noise ``σ`` and detector accuracy ``p``.

    ``fit(X)`` takes ``X (N, 4)``: columns x, y, z and the integer category label.

    Parameters
    ----------
    n_components
        Number of objects ``K``.
    n_categories
        Number of categories ``C`` (labels are ``0..C-1``).
    use_categories
        ``False`` gives the baseline: locations only, labels ignored.
    learn_weights
        Learn how many detections each object gets (``π_k``); uniform otherwise.
    mstep
        ``"closed"``: ``μ_k``, ``σ`` and ``p`` in closed form and ``c_k`` by exact
        maximisation; ``"gradient"``: ``μ``, ``σ`` and ``p`` by L-BFGS on the expected
        complete-data log-likelihood (:meth:`expected_complete_loglik`), which a user's
        variant without a closed form overrides; ``c_k`` stays exact.
    sigma_init, accuracy_init
        Starting ``σ`` (data units; from the data when ``None``) and ``p``.

    Attributes
    ----------
    locations_ (K, 3), categories_ (K,), sigma_, accuracy_, weights_
        Fitted world state and noise model.
    """

    def __init__(
        self,
        n_components: int = 2,
        *,
        n_categories: int = 2,
        use_categories: bool = True,
        learn_weights: bool = True,
        mstep: str = "closed",
        sigma_init: float | None = None,
        accuracy_init: float = 0.7,
        means_init=None,
        tol: float = 1e-8,
        max_iter: int = 300,
        n_init: int = 5,
        random_state=None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        device: str = "auto",
        dtype: str | None = None,
        chunk_size: int = 65536,
    ) -> None:
        super().__init__(
            n_components,
            tol=tol,
            max_iter=max_iter,
            n_init=n_init,
            random_state=random_state,
            warm_start=warm_start,
            verbose=verbose,
            verbose_interval=verbose_interval,
            device=device,
            dtype=dtype,
            chunk_size=chunk_size,
        )
        self.n_categories = n_categories
        self.use_categories = use_categories
        self.learn_weights = learn_weights
        self.mstep = mstep
        self.sigma_init = sigma_init
        self.accuracy_init = accuracy_init
        self.means_init = means_init

    def _prepare_fit_data(self, X) -> torch.Tensor:
        arr = self._as_tensor(X)
        if arr.shape[1] != 4:
            raise GazeemError(
                f"X must have 4 columns (x, y, z, category), got shape {tuple(arr.shape)}."
            )
        lab = arr[:, 3]
        if bool((lab != lab.round()).any() or (lab < 0).any() or (lab >= self.n_categories).any()):
            raise GazeemError(
                f"category labels (column 4) must be integers in [0, {self.n_categories - 1}]."
            )
        return arr

    def _check_parameters(self, X: torch.Tensor) -> None:
        if int(self.n_categories) < 2:
            raise GazeemError(f"n_categories must be >= 2, got {self.n_categories}.")
        if self.mstep not in ("closed", "gradient"):
            raise GazeemError(f"mstep must be 'closed' or 'gradient', got {self.mstep!r}.")
        if not 0 < self.accuracy_init < 1:
            raise GazeemError(f"accuracy_init must be in (0, 1), got {self.accuracy_init}.")
        if self.sigma_init is not None and not self.sigma_init > 0:
            raise GazeemError(f"sigma_init must be > 0, got {self.sigma_init}.")
        if self.means_init is not None and np.shape(self.means_init) != (self.n_components, 3):
            raise GazeemError(
                f"means_init must have shape ({self.n_components}, 3), got {np.shape(self.means_init)}."
            )

    def _initialize(self, X: torch.Tensor, rng: np.random.Generator) -> None:
        loc = X[:, :3]
        k = self.n_components
        if self.means_init is None:
            mu, labels = kmeans(loc, k, rng)
        else:
            mu = torch.as_tensor(np.asarray(self.means_init), dtype=X.dtype, device=X.device)
            labels = ((loc[:, None] - mu[None]) ** 2).sum(-1).argmin(1)
        self._mu = mu
        if self.sigma_init is None:
            self._sigma = float(torch.sqrt(((loc - mu[labels]) ** 2).mean()).clamp_min(1e-6))
        else:
            self._sigma = float(self.sigma_init)
        cats = X[:, 3].long()
        hist = torch.zeros((k, self.n_categories), dtype=X.dtype, device=X.device)
        hist.index_put_((labels, cats), torch.ones_like(X[:, 3]), accumulate=True)
        self._c = hist.argmax(1)
        self._p = float(self.accuracy_init)
        self._w = torch.full((k,), 1.0 / k, dtype=X.dtype, device=X.device)

    # -- likelihood ------------------------------------------------------------------------
    def _log_label_prob(self, labels: torch.Tensor, p: torch.Tensor | float) -> torch.Tensor:
        """``(N, K)`` log P(label | object's category)."""
        match = labels[:, None] == self._c[None, :]
        p = torch.as_tensor(p, dtype=torch.float64)
        wrong = torch.log((1 - p) / (self.n_categories - 1))
        return torch.where(match, torch.log(p), wrong)

    def _estimate_weighted_log_prob(self, X: torch.Tensor) -> torch.Tensor:
        d2 = ((X[:, None, :3] - self._mu[None]) ** 2).sum(-1)
        s2 = self._sigma**2
        lp = -0.5 * d2 / s2 - 1.5 * math.log(2 * math.pi * s2) + torch.log(self._w)[None]
        if self.use_categories:
            lp = lp + self._log_label_prob(X[:, 3].long(), self._p).to(lp)
        return lp

    def expected_complete_loglik(self, X, resp, mu, log_sigma, logit_p) -> torch.Tensor:
        """``Σ_ik γ_ik log p(x_i, ℓ_i | object k)`` as a differentiable function.

        The gradient M-step maximises this; a variant overrides it.
        """
        d2 = ((X[:, None, :3] - mu[None]) ** 2).sum(-1)
        s2 = torch.exp(2 * log_sigma)
        lp = -0.5 * d2 / s2 - 1.5 * torch.log(2 * math.pi * s2)
        if self.use_categories:
            match = X[:, 3].long()[:, None] == self._c[None, :]
            p = torch.sigmoid(logit_p)
            lp = lp + torch.where(match, torch.log(p), torch.log((1 - p) / (self.n_categories - 1)))
        return (resp * lp).sum()

    # -- M-step ----------------------------------------------------------------------------
    def _m_step(self, X: torch.Tensor, log_resp: torch.Tensor) -> None:
        resp = log_resp.exp()
        n = X.shape[0]
        nk = resp.sum(0) + 10 * torch.finfo(X.dtype).eps
        if self.learn_weights:
            self._w = nk / nk.sum()
        if self.use_categories:
            self._update_categories(X, resp)
        if self.mstep == "closed":
            self._mu = (resp.T @ X[:, :3]) / nk[:, None]
            d2 = ((X[:, None, :3] - self._mu[None]) ** 2).sum(-1)
            self._sigma = float(torch.sqrt((resp * d2).sum() / (3 * n)))
            if self.use_categories:
                agree = (resp * (X[:, 3].long()[:, None] == self._c[None, :])).sum() / n
                self._p = float(agree.clamp(1e-12, 1 - 1e-12))
        else:
            self._gradient_m_step(X, resp)

    def _update_categories(self, X: torch.Tensor, resp: torch.Tensor) -> None:
        """Exact joint maximisation over the categories ``c`` (and the matching ``p``).

        The expected agreement ``A(c) = Σ_ik γ_ik [ℓ_i = c_k]`` is separable over objects, and
        the profile likelihood in ``p`` is convex in ``A / N`` with its minimum at ``1 / C``:
        the optimum takes every object's most frequent (weighted) label, or, in the
        degenerate case of a detector worse than chance, every object's least frequent one.
        """
        n, cnum = X.shape[0], self.n_categories
        hist = resp.T @ torch.nn.functional.one_hot(X[:, 3].long(), cnum).to(resp)  # (K, C)

        def profile(a: float) -> float:
            a = min(max(a / n, 1e-12), 1 - 1e-12)
            return a * math.log(a) + (1 - a) * math.log((1 - a) / (cnum - 1))

        a_max, a_min = float(hist.max(1).values.sum()), float(hist.min(1).values.sum())
        self._c = hist.argmax(1) if profile(a_max) >= profile(a_min) else hist.argmin(1)

    def _gradient_m_step(self, X: torch.Tensor, resp: torch.Tensor) -> None:
        mu = self._mu.clone().requires_grad_(True)
        log_sigma = torch.tensor(
            math.log(self._sigma), dtype=X.dtype, device=X.device, requires_grad=True
        )
        p = min(max(self._p, 1e-6), 1 - 1e-6)
        logit_p = torch.tensor(
            math.log(p / (1 - p)), dtype=X.dtype, device=X.device, requires_grad=True
        )
        params = [mu, log_sigma, logit_p]
        opt = torch.optim.LBFGS(
            params,
            max_iter=200,
            tolerance_grad=1e-10,
            tolerance_change=1e-14,
            line_search_fn="strong_wolfe",
        )
        scale = 1.0 / X.shape[0]

        def closure():
            opt.zero_grad()
            loss = -self.expected_complete_loglik(X, resp, mu, log_sigma, logit_p) * scale
            loss.backward()
            return loss

        opt.step(closure)
        self._mu = mu.detach()
        self._sigma = float(torch.exp(log_sigma.detach()))
        self._p = float(torch.sigmoid(logit_p.detach()))

    def _get_parameters(self):
        return (self._mu.clone(), self._sigma, self._c.clone(), self._p, self._w.clone())

    def _set_parameters(self, params) -> None:
        self._mu, self._sigma, self._c, self._p, self._w = params

    # -- fitted attributes -------------------------------------------------------------------
    @property
    def locations_(self) -> np.ndarray:
        self._check_fitted()
        return self._mu.cpu().numpy()

    @property
    def categories_(self) -> np.ndarray:
        self._check_fitted()
        return self._c.cpu().numpy()

    @property
    def sigma_(self) -> float:
        self._check_fitted()
        return self._sigma

    @property
    def accuracy_(self) -> float:
        self._check_fitted()
        return self._p

    @property
    def weights_(self) -> np.ndarray:
        self._check_fitted()
        return self._w.cpu().numpy()


def simulate_scene(
    n_objects: int = 5,
    n_categories: int = 6,
    detections_per_object: int = 40,
    sigma: float = 0.5,
    accuracy: float = 0.8,
    extent: float = 10.0,
    seed: int = 0,
) -> tuple[np.ndarray, dict]:
    """Detections ``(N, 4)`` of a random scene, and the truth (locations, categories, object)."""
    rng = np.random.default_rng(seed)
    loc = rng.uniform(0, extent, size=(n_objects, 3))
    cat = rng.integers(0, n_categories, size=n_objects)
    obj = np.repeat(np.arange(n_objects), detections_per_object)
    x = loc[obj] + rng.normal(0, sigma, size=(len(obj), 3))
    right = rng.random(len(obj)) < accuracy
    other = (cat[obj] + rng.integers(1, n_categories, size=len(obj))) % n_categories
    label = np.where(right, cat[obj], other)
    return np.c_[x, label].astype(np.float64), {"locations": loc, "categories": cat, "object": obj}
