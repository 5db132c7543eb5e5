"""The base class of gazeem's mixture estimators (scikit-learn conventions, torch kernels).

A subclass declares its hyperparameters and fills in four hooks:
``_initialize(X, rng)``, ``_estimate_weighted_log_prob(X) -> (N, K)``,
``_m_step(X, log_resp)`` and ``_get_parameters()/_set_parameters()``. The EM loop is
:func:`gazeem.em.engine.run_em`, the same one the gaze model uses.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import numpy as np
import torch

from gazeem.device import resolve_device, resolve_dtype
from gazeem.em.engine import ConvergenceWarning, EStep, run_em
from gazeem.em.estep import normalize_log
from gazeem.errors import GazeemError, NotFittedError


class BaseMixture:
    """Shared ``fit`` with ``n_init`` restarts, prediction and scoring.

    Subclasses call ``super().__init__`` with the shared hyperparameters below.

    Parameters
    ----------
    n_components
        Number of mixture components ``K``.
    tol
        Convergence threshold on the change of the mean log-likelihood per sample.
    max_iter
        Most EM iterations per initialisation.
    n_init
        Number of initialisations; the best (highest log-likelihood) is kept.
    random_state
        Seed for the initialisation.
    device, dtype
        torch device (``"auto" | "cpu" | "cuda"``) and precision.
    chunk_size
        Samples per E-step chunk, which bounds memory for large data.
    """

    def __init__(
        self,
        n_components: int,
        *,
        tol: float,
        max_iter: int,
        n_init: int,
        random_state: int | None,
        device: str,
        dtype: str,
        chunk_size: int,
    ) -> None:
        self.n_components = n_components
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.chunk_size = chunk_size

    # -- parameters ------------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        names: list[str] = []
        for klass in cls.__mro__:
            if "__init__" in klass.__dict__ and klass is not object:
                for p in inspect.signature(klass.__init__).parameters:
                    if p != "self" and p not in names and p not in ("args", "kwargs"):
                        names.append(p)
        return names

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._param_names() if hasattr(self, k)}

    def set_params(self, **params: Any) -> BaseMixture:
        for k, v in params.items():
            if k not in self._param_names():
                raise GazeemError(f"{type(self).__name__} has no parameter {k!r}.")
            setattr(self, k, v)
        return self

    def _check_common_parameters(self, n_samples: int) -> None:
        if not isinstance(self.n_components, int | np.integer) or self.n_components < 1:
            raise GazeemError(f"n_components must be an integer >= 1, got {self.n_components!r}.")
        if self.n_components > n_samples:
            raise GazeemError(
                f"n_components={self.n_components} is more than the {n_samples} samples; "
                "use fewer components or more data."
            )
        if not (self.tol >= 0):
            raise GazeemError(f"tol must be >= 0, got {self.tol!r}.")
        if int(self.max_iter) < 0 or int(self.n_init) < 1:
            raise GazeemError(
                f"need max_iter >= 0 and n_init >= 1, got {self.max_iter}, {self.n_init}."
            )
        if int(self.chunk_size) < 1:
            raise GazeemError(f"chunk_size must be >= 1, got {self.chunk_size!r}.")

    # -- data ------------------------------------------------------------------------------
    def _as_tensor(self, X, name: str = "X", ndim: int = 2) -> torch.Tensor:
        arr = np.asarray(X.cpu() if isinstance(X, torch.Tensor) else X)
        if arr.dtype.kind not in "biuf":
            raise GazeemError(f"{name} must be numeric, got dtype {arr.dtype}.")
        if arr.ndim != ndim:
            raise GazeemError(
                f"{name} must be {ndim}-D, got shape {arr.shape}"
                + (
                    "; reshape a single feature with X.reshape(-1, 1)."
                    if arr.ndim == 1 and ndim == 2
                    else "."
                )
            )
        if arr.size == 0:
            raise GazeemError(f"{name} is empty (shape {arr.shape}).")
        if not np.all(np.isfinite(arr)):
            raise GazeemError(f"{name} contains NaN or inf; remove or impute those samples first.")
        return torch.as_tensor(arr, dtype=self._dtype, device=self._device)

    def _setup_device(self) -> None:
        self._device = resolve_device(self.device)
        self._dtype = resolve_dtype(self.dtype)

    def _check_fitted(self) -> None:
        if not hasattr(self, "converged_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. "
                "Call 'fit' with appropriate arguments before using this estimator."
            )

    # -- E-step ----------------------------------------------------------------------------
    def _estimate_log_prob_resp(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``log_prob_norm (N,)`` and ``log_resp (N, K)``, computed in chunks of samples."""
        norms, resps = [], []
        for s in range(0, X.shape[0], int(self.chunk_size)):
            lr, ln = normalize_log(
                self._estimate_weighted_log_prob(X[s : s + int(self.chunk_size)])
            )
            norms.append(ln)
            resps.append(lr)
        return torch.cat(norms), torch.cat(resps)

    def _estimate_weighted_log_prob(self, X: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- fit -------------------------------------------------------------------------------
    def fit(self, X, y=None) -> BaseMixture:
        """Estimate the parameters with EM; returns ``self``."""
        self._setup_device()
        X = self._prepare_fit_data(X)
        self._check_common_parameters(X.shape[0])
        self._check_parameters(X)
        rng = np.random.default_rng(self.random_state)
        best_ll, best_params, best_state = -np.inf, None, None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for _ in range(int(self.n_init)):
                self._initialize(X, rng)
                _, state = run_em(
                    _MixtureProblem(self, X), tol=self.tol, max_iter=int(self.max_iter)
                )
                ll = state.log_likelihood[-1]
                # Several starts often reach the same optimum, with components in another
                # order and log-likelihoods that differ in the last bits, by CPU and thread
                # count. Only a gain larger than what convergence resolves (tol per sample)
                # picks a later start, so ties go to the first start on every machine.
                margin = max(float(self.tol) * X.shape[0], 1e-9 * abs(best_ll))
                if best_params is None or ll > best_ll + margin:
                    best_ll, best_params, best_state = ll, self._get_parameters(), state
        self._set_parameters(best_params)
        n = X.shape[0]
        self.converged_ = best_state.converged or int(self.max_iter) == 0
        self.n_iter_ = best_state.n_iter
        self.lower_bounds_ = [v / n for v in best_state.log_likelihood]
        self.lower_bound_ = self.lower_bounds_[-1]
        self.em_state_ = best_state
        if not self.converged_:
            warnings.warn(
                f"Best of {self.n_init} initialisation(s) did not converge in max_iter={self.max_iter}; "
                "raise max_iter or tol, or check the data.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _prepare_fit_data(self, X) -> torch.Tensor:
        return self._as_tensor(X)

    def _prepare_predict_data(self, X) -> torch.Tensor:
        return self._prepare_fit_data(X)

    def _check_parameters(self, X: torch.Tensor) -> None:
        """Data-dependent hyperparameter checks (subclasses)."""

    # -- inference -------------------------------------------------------------------------
    def score_samples(self, X) -> np.ndarray:
        """Log-likelihood of each sample, ``(N,)``, nats."""
        self._check_fitted()
        self._setup_device()
        log_norm, _ = self._estimate_log_prob_resp(self._prepare_predict_data(X))
        return log_norm.cpu().numpy()

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample."""
        return float(self.score_samples(X).mean())

    def predict_proba(self, X) -> np.ndarray:
        """Posterior responsibilities ``(N, K)``."""
        self._check_fitted()
        self._setup_device()
        _, log_resp = self._estimate_log_prob_resp(self._prepare_predict_data(X))
        return log_resp.exp().cpu().numpy()

    def predict(self, X) -> np.ndarray:
        """Most probable component per sample, ``(N,)``."""
        return self.predict_proba(X).argmax(axis=1)

    def fit_predict(self, X, y=None) -> np.ndarray:
        return self.fit(X).predict(X)


class _MixtureProblem:
    """A mixture as seen by :func:`run_em`."""

    exact = True

    def __init__(self, est: BaseMixture, X: torch.Tensor) -> None:
        self.est = est
        self.X = X
        self.n_observations = int(X.shape[0])

    def e_step(self) -> EStep:
        log_norm, log_resp = self.est._estimate_log_prob_resp(self.X)
        return EStep(log_resp, float(log_norm.to(torch.float64).sum()))

    def m_step(self, estep: EStep) -> None:
        self.est._m_step(self.X, estep.posterior)

    def log_penalty(self) -> float:
        return 0.0
