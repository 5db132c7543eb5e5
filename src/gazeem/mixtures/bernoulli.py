"""Mixture of Bernoulli coins: the two-coin problem of Do & Batzoglou (2008).

Each row of ``X`` is one set of tosses made with one unknown coin. Component ``k`` has a
bias ``θ_k`` (probability of heads) and a mixing weight ``π_k``.
"""

from __future__ import annotations

import numpy as np
import torch

from gazeem.errors import GazeemError
from gazeem.mixtures.base import BaseMixture, _as_array, _generator


class BernoulliMixture(BaseMixture):
    """EM for a mixture of coins.

    Parameters
    ----------
    n_components
        Number of coins ``K``.
    theta_init
        ``(K,)`` starting biases in [0, 1]; random in (0.25, 0.75) when ``None``.
    weights_init
        ``(K,)`` starting mixing weights; uniform when ``None``.
    fix_weights
        Keep the mixing weights at ``weights_init`` (the slides' ``π = ½``).
    input
        ``"tosses"``: rows of 0/1 outcomes, each row one set (the likelihood of the
        sequence); ``"counts"``: rows ``(heads, tosses)`` (the binomial likelihood).

    Attributes
    ----------
    theta_, weights_
        Fitted biases and mixing weights.
    converged_, n_iter_, lower_bound_, lower_bounds_
        As in :class:`~gazeem.mixtures.GaussianMixture`.
    """

    def __init__(
        self,
        n_components: int = 2,
        *,
        theta_init=None,
        weights_init=None,
        fix_weights: bool = False,
        input: str = "tosses",
        tol: float = 1e-8,
        max_iter: int = 200,
        n_init: int = 1,
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
        self.theta_init = theta_init
        self.weights_init = weights_init
        self.fix_weights = fix_weights
        self.input = input

    def _prepare_fit_data(self, X) -> torch.Tensor:
        """``(N, 3)``: heads, tosses and the log binomial coefficient (0 for sequences)."""
        arr = self._as_tensor(X)
        if self.input == "tosses":
            if not bool(((arr == 0) | (arr == 1)).all()):
                raise GazeemError(
                    "with input='tosses' every entry of X must be 0 or 1; use input='counts' for (heads, tosses) rows."
                )
            heads = arr.sum(1)
            n = torch.full_like(heads, arr.shape[1])
            logc = torch.zeros_like(heads)
        elif self.input == "counts":
            if arr.shape[1] != 2:
                raise GazeemError(
                    f"with input='counts' X must have 2 columns (heads, tosses), got {arr.shape[1]}."
                )
            heads, n = arr[:, 0], arr[:, 1]
            if bool(
                (heads < 0).any()
                or (heads > n).any()
                or (heads != heads.round()).any()
                or (n != n.round()).any()
            ):
                raise GazeemError("counts must be whole numbers with 0 <= heads <= tosses.")
            logc = torch.lgamma(n + 1) - torch.lgamma(heads + 1) - torch.lgamma(n - heads + 1)
        else:
            raise GazeemError(f"input must be 'tosses' or 'counts', got {self.input!r}.")
        return torch.stack([heads, n, logc], dim=1)

    def _check_parameters(self, X: torch.Tensor) -> None:
        k = self.n_components
        if self.theta_init is not None:
            th = np.asarray(self.theta_init, dtype=float)
            if th.shape != (k,):
                raise GazeemError(f"theta_init must have shape ({k},), got {th.shape}.")
            if np.any(th < 0) or np.any(th > 1):
                raise GazeemError(
                    f"theta_init must lie in [0, 1] (biases are probabilities), got {th.tolist()}."
                )
        if self.weights_init is not None:
            w = np.asarray(self.weights_init, dtype=float)
            if w.shape != (k,) or np.any(w < 0) or not np.isclose(w.sum(), 1.0):
                raise GazeemError(
                    f"weights_init must be {k} non-negative values summing to 1, got {w.tolist()}."
                )

    def _initialize(self, X: torch.Tensor, rng: np.random.Generator) -> None:
        k = self.n_components
        th = (
            rng.uniform(0.25, 0.75, size=k)
            if self.theta_init is None
            else np.asarray(self.theta_init, float)
        )
        w = (
            np.full(k, 1.0 / k)
            if self.weights_init is None
            else np.asarray(self.weights_init, float)
        )
        self._theta = torch.as_tensor(th, dtype=X.dtype, device=X.device)
        self._w = torch.as_tensor(w, dtype=X.dtype, device=X.device)

    def _estimate_weighted_log_prob(self, X: torch.Tensor) -> torch.Tensor:
        heads, n, logc = X[:, 0:1], X[:, 1:2], X[:, 2:3]
        return (
            logc
            + torch.xlogy(heads, self._theta[None])
            + torch.xlogy(n - heads, 1 - self._theta[None])
            + torch.log(self._w)[None]
        )

    def _m_step(self, X: torch.Tensor, log_resp: torch.Tensor) -> None:
        resp = log_resp.exp()
        heads, n = X[:, 0], X[:, 1]
        # θ_k = Σ_i γ_ik heads_i / Σ_i γ_ik tosses_i
        self._theta = (resp.T @ heads) / (resp.T @ n).clamp_min(torch.finfo(X.dtype).tiny)
        if not self.fix_weights:
            self._w = resp.mean(0)

    def fit_complete(self, X, labels) -> BernoulliMixture:
        """Complete-data maximum likelihood when the coin of each row is known."""
        X = _as_array(X)
        self._setup_device(X)
        self.__dict__.pop("n_features_in_", None)
        Xp = self._prepare_fit_data(X)
        lab = np.asarray(labels)
        if lab.shape != (Xp.shape[0],) or lab.min() < 0 or lab.max() >= self.n_components:
            raise GazeemError(
                f"labels must be {Xp.shape[0]} integers in [0, {self.n_components - 1}]."
            )
        resp = torch.zeros((Xp.shape[0], self.n_components), dtype=Xp.dtype, device=Xp.device)
        resp[torch.arange(Xp.shape[0]), torch.as_tensor(lab)] = 1
        self._initialize(Xp, _generator(self.random_state))
        self._m_step(Xp, resp.log())
        self.converged_, self.n_iter_ = True, 0
        ll = float(
            self._estimate_weighted_log_prob(Xp)[
                torch.arange(Xp.shape[0]), torch.as_tensor(lab)
            ].sum()
        )
        self.lower_bound_ = ll / Xp.shape[0]
        self.lower_bounds_ = [self.lower_bound_]
        self.n_features_in_ = X.shape[-1]
        return self

    def _get_parameters(self):
        return (self._theta.clone(), self._w.clone())

    def _set_parameters(self, params) -> None:
        self._theta, self._w = params

    @property
    def theta_(self) -> np.ndarray:
        self._check_fitted()
        return self._theta.cpu().numpy()

    @property
    def weights_(self) -> np.ndarray:
        self._check_fitted()
        return self._w.cpu().numpy()
