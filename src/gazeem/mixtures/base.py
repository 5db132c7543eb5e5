"""The base class of gazeem's mixture estimators (scikit-learn conventions, torch kernels).

A subclass declares its hyperparameters and fills in four hooks:
``_initialize(X, rng)``, ``_estimate_weighted_log_prob(X) -> (N, K)``,
``_m_step(X, log_resp)`` and ``_get_parameters()/_set_parameters()``. The EM loop is
:func:`gazeem.em.engine.run_em`, the same one the gaze model uses.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from typing import Any

import numpy as np
import torch

from gazeem.device import resolve_device, resolve_dtype
from gazeem.em import engine
from gazeem.em.engine import EStep, run_em
from gazeem.em.estep import normalize_log
from gazeem.errors import GazeemError
from gazeem.mixtures.sklearn_compat import (
    ConvergenceWarning,
    NotFittedError,
    density_estimator_tags,
)

#: scikit-learn's words, so that code matching them keeps working
NOT_CONVERGED = (
    "Best performing initialization did not converge. Try different init parameters, "
    "or increase max_iter, tol, or check for degenerate data."
)


class BaseMixture:
    """Shared ``fit`` with ``n_init`` restarts, warm starts, prediction and scoring.

    Subclasses call ``super().__init__`` with the shared hyperparameters below.

    Parameters
    ----------
    n_components
        Number of mixture components ``K``.
    tol
        Convergence threshold on the change of the mean log-likelihood per sample.
    max_iter
        Most EM iterations (M-steps) per initialisation.
    n_init
        Number of initialisations; the best (highest log-likelihood) is kept.
    random_state
        ``None``, an int, a ``numpy.random.RandomState`` or a ``numpy.random.Generator``.
    warm_start
        When a fitted estimator is fitted again, start from its parameters (one
        initialisation) instead of initialising anew.
    verbose, verbose_interval
        ``1`` prints each initialisation and every ``verbose_interval``-th iteration,
        ``2`` adds times and log-likelihood changes (scikit-learn's format).
    device, dtype
        torch device (``"auto" | "cpu" | "cuda"``) and precision; ``dtype=None`` keeps
        float32 input in float32 and computes everything else in float64.
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
        random_state,
        warm_start: bool,
        verbose: int,
        verbose_interval: int,
        device: str,
        dtype: str | None,
        chunk_size: int,
    ) -> None:
        self.n_components = n_components
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.device = device
        self.dtype = dtype
        self.chunk_size = chunk_size

    # -- parameters (scikit-learn's estimator protocol) ------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        return sorted(
            p
            for p in inspect.signature(cls.__init__).parameters
            if p not in ("self", "args", "kwargs")
        )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The hyperparameters by name (there are no nested estimators, so ``deep`` is moot)."""
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> BaseMixture:
        valid = self._param_names()
        for k, v in params.items():
            if k not in valid:
                raise GazeemError(
                    f"Invalid parameter {k!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {valid!r}."
                )
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        defaults = inspect.signature(type(self).__init__).parameters
        changed = [
            f"{k}={v!r}" for k, v in self.get_params().items() if not _same(v, defaults[k].default)
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        return density_estimator_tags(self)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "converged_")

    def _check_common_parameters(self, n_samples: int) -> None:
        if not isinstance(self.n_components, int | np.integer) or self.n_components < 1:
            raise GazeemError(f"n_components must be an integer >= 1, got {self.n_components!r}.")
        if self.n_components > n_samples:
            raise GazeemError(
                f"Expected n_samples >= n_components but got n_components = "
                f"{self.n_components}, n_samples = {n_samples}; use fewer components or more data."
            )
        if not (self.tol >= 0):
            raise GazeemError(f"tol must be >= 0, got {self.tol!r}.")
        if int(self.max_iter) < 0 or int(self.n_init) < 1:
            raise GazeemError(
                f"need max_iter >= 0 and n_init >= 1, got {self.max_iter}, {self.n_init}."
            )
        if int(self.chunk_size) < 1:
            raise GazeemError(f"chunk_size must be >= 1, got {self.chunk_size!r}.")
        if int(self.verbose_interval) < 1:
            raise GazeemError(f"verbose_interval must be >= 1, got {self.verbose_interval!r}.")

    # -- data ------------------------------------------------------------------------------
    def _as_tensor(self, X, name: str = "X", ndim: int = 2) -> torch.Tensor:
        arr = _as_array(X, name)
        if arr.ndim != ndim:
            raise GazeemError(
                f"{name} must be {ndim}-D, got shape {arr.shape}"
                + (
                    "; Reshape your data with X.reshape(-1, 1) if it has a single feature."
                    if arr.ndim == 1 and ndim == 2
                    else "."
                )
            )
        if arr.size == 0:
            raise GazeemError(
                f"{name} is empty: {arr.shape[-1]} feature(s) (shape={arr.shape}) while a "
                "minimum of 1 is required, or no samples."
            )
        if not np.all(np.isfinite(arr)):
            raise GazeemError(f"{name} contains NaN or inf; remove or impute those samples first.")
        if hasattr(self, "n_features_in_") and arr.ndim == 2:
            if arr.shape[1] != self.n_features_in_:
                raise GazeemError(
                    f"{name} has {arr.shape[1]} features, but {type(self).__name__} is "
                    f"expecting {self.n_features_in_} features as input."
                )
        return torch.as_tensor(arr, dtype=self._dtype, device=self._device)

    def _setup_device(self, X: np.ndarray | None = None) -> None:
        """The device, and for ``fit`` (``X``, the data as an array) the precision;
        prediction keeps fit's."""
        self._device = resolve_device(self.device)
        if X is None:
            return
        if self.dtype is None:
            self._dtype = torch.float32 if X.dtype == np.float32 else torch.float64
        else:
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
        """Estimate the parameters with EM; returns ``self``.

        The iterations are scikit-learn's: each one is an E-step, an M-step and a
        convergence check on the log-likelihood of the E-step, so the last M-step
        follows the last check. From the same start, ``n_iter_``, the parameters and
        ``lower_bound_`` (the mean log-likelihood *before* the last M-step) are
        scikit-learn's; ``score(X)`` is the log-likelihood of the fitted parameters.
        """
        X = _as_array(X)
        self._setup_device(X)
        warm = bool(self.warm_start) and hasattr(self, "converged_")
        if not warm:
            self.__dict__.pop("n_features_in_", None)
        n_features = X.shape[-1] if X.ndim else 0
        X = self._prepare_fit_data(X)
        self._check_common_parameters(X.shape[0])
        self._check_parameters(X)
        rng = _generator(self.random_state)
        n, max_iter = X.shape[0], int(self.max_iter)
        best_lb, best = -math.inf, None
        for init in range(1 if warm else int(self.n_init)):
            log = _VerboseLog(int(self.verbose), int(self.verbose_interval), init)
            if not warm:
                self._initialize(X, rng)
            if max_iter == 0:
                result = (-math.inf, self._get_parameters(), 0, False, [])
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", engine.ConvergenceWarning)
                    estep, state = run_em(
                        _MixtureProblem(self, X),
                        tol=self.tol,
                        max_iter=max_iter - 1,
                        previous=self.lower_bound_ * n if warm else None,
                        callback=log.iteration,
                    )
                self._m_step(X, estep.posterior)
                lbs = [v / n for v in state.log_likelihood]
                result = (lbs[-1], self._get_parameters(), state.n_iter + 1, state.converged, lbs)
            log.end(result[0], result[3])
            # Several starts often reach the same optimum, with components in another
            # order and log-likelihoods that differ in the last bits, by CPU and thread
            # count. Only a gain larger than what convergence resolves (tol per sample)
            # picks a later start, so ties go to the first start on every machine.
            margin = max(float(self.tol), 1e-9 * abs(best_lb)) if best is not None else 0.0
            if best is None or result[0] > best_lb + margin:
                best_lb, best = result[0], result
        self.lower_bound_, params, self.n_iter_, self.converged_, self.lower_bounds_ = best
        self._set_parameters(params)
        self.n_features_in_ = n_features
        if not self.converged_ and max_iter > 0:
            warnings.warn(NOT_CONVERGED, ConvergenceWarning, stacklevel=2)
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
        return self.score_samples(X).mean()

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


class _VerboseLog:
    """scikit-learn's ``verbose`` output for one initialisation."""

    def __init__(self, verbose: int, interval: int, init: int) -> None:
        self.verbose, self.interval = verbose, interval
        self.start = self.last = time.time()
        self.previous = -math.inf
        if verbose >= 1:
            print(f"Initialization {init}")

    def iteration(self, it: int, estep: EStep) -> None:
        # run_em's E-step ``it`` is the check of scikit-learn's iteration ``it + 1``
        n_iter, ll = it + 1, estep.log_likelihood
        change, self.previous = ll - self.previous, ll
        if self.verbose >= 1 and n_iter % self.interval == 0:
            if self.verbose == 1:
                print(f"  Iteration {n_iter}")
            else:
                now = time.time()
                print(
                    f"  Iteration {n_iter}\t time lapse {now - self.last:.5f}s\t ll change {change:.5f}"
                )
                self.last = now

    def end(self, lower_bound: float, converged: bool) -> None:
        word = "converged" if converged else "did not converge"
        if self.verbose == 1:
            print(f"Initialization {word}.")
        elif self.verbose >= 2:
            print(
                f"Initialization {word}. time lapse {time.time() - self.start:.5f}s\t "
                f"lower bound {lower_bound:.5f}."
            )


def _as_array(X, name: str = "X") -> np.ndarray:
    """``X`` as a real NumPy array; sparse, complex and non-numeric input are refused."""
    if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
        raise GazeemError(
            f"{name} is a sparse {type(X).__name__}; sparse input is not supported, "
            "pass a dense array (X.toarray())."
        )
    arr = np.asarray(X.detach().cpu() if isinstance(X, torch.Tensor) else X)
    if arr.dtype.kind == "c":
        raise GazeemError(f"{name} is complex; Complex data not supported.")
    if arr.dtype.kind == "O":
        arr = arr.astype(np.float64)  # numbers stored as objects; anything else raises
    if arr.dtype.kind not in "biuf":
        raise GazeemError(f"{name} must be numeric, got dtype {arr.dtype}.")
    return arr


def _generator(random_state) -> np.random.Generator:
    """A NumPy generator from any of scikit-learn's ``random_state`` forms.

    A ``RandomState`` gives a seed from its stream, so refitting with the same
    instance starts elsewhere, as in scikit-learn.
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    return np.random.default_rng(random_state)


def _same(a, b) -> bool:
    if a is b:
        return True
    try:
        return bool(np.array_equal(a, b)) and type(a) is type(b)
    except Exception:
        return False
