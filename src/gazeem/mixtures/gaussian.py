"""Gaussian mixture with full, tied, diagonal or spherical covariances.

The updates and the numerics follow scikit-learn's ``GaussianMixture`` (the same
closed-form M-step, ``reg_covar`` on the diagonal, Cholesky factors of the
precisions), so that from the same initialisation both give the same fit. The
E-step runs in torch, in chunks of samples, on the CPU or a GPU.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gazeem.errors import GazeemError
from gazeem.mixtures.base import BaseMixture, _generator
from gazeem.mixtures.kmeans import kmeans, kmeans_plusplus

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
#: the (rows, K·d) blocks of the full-covariance E- and M-steps are kept near this size,
#: so they stay in cache: 8 MB made both 4-8x faster at N = 10^6, K = 16, d = 32 than
#: 64 MB blocks did (docs/performance.md, section 6)
BLOCK_BYTES = 8 * 2**20


def _block_rows(width: int, dtype: torch.dtype, cap: int, device: torch.device) -> int:
    """Rows of a ``(rows, width)`` block of about :data:`BLOCK_BYTES`, in [256, cap].

    On a GPU, ``cap``: there, fewer and larger kernels win over cache-sized blocks.
    """
    if device.type != "cpu":
        return int(cap)
    item = torch.finfo(dtype).bits // 8
    return max(256, min(int(cap), BLOCK_BYTES // max(1, width * item)))


INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")

_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined empirical "
    "covariance (for instance caused by singleton or collapsed samples). Try to decrease "
    "the number of components, increase reg_covar, or scale the input data. "
    "(reg_covar is {reg}.)"
)


def estimate_gaussian_parameters(
    X: torch.Tensor, resp: torch.Tensor, reg_covar: float, covariance_type: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closed-form M-step: ``nk (K,)``, ``means (K, d)`` and covariances (shape by type)."""
    eps = 10 * torch.finfo(resp.dtype).eps
    nk = resp.sum(0) + eps
    means = (resp.T @ X) / nk[:, None]
    d = X.shape[1]
    eye = torch.eye(d, dtype=X.dtype, device=X.device)
    if covariance_type == "full":
        cov = _full_covariances(X, resp, nk, means) + reg_covar * eye
    elif covariance_type == "tied":
        cov = (X.T @ X - (nk[:, None] * means).T @ means) / nk.sum() + reg_covar * eye
    else:
        avg_x2 = (resp.T @ (X * X)) / nk[:, None]
        cov = avg_x2 - means**2 + reg_covar
        if covariance_type == "spherical":
            cov = cov.mean(1)
    return nk, means, cov


def _full_covariances(
    X: torch.Tensor, resp: torch.Tensor, nk: torch.Tensor, means: torch.Tensor, chunk: int = 16384
) -> torch.Tensor:
    """``Σ_k = Σ_n r_nk (x_n − μ_k)(x_n − μ_k)ᵀ / n_k`` for every component, ``(K, d, d)``.

    float64: one GEMM for all components per chunk of samples, about the global mean
    ``c``: with ``S_k = Σ r (x − c)(x − c)ᵀ``, ``a_k = Σ r (x − c)``, ``R_k = Σ r`` and
    ``m_k = μ_k − c``, ``Σ_k = (S_k − a_k m_kᵀ − m_k a_kᵀ + R_k m_k m_kᵀ) / n_k``. That
    is exact even for an empty component (``n_k`` is ``R_k`` plus a tiny epsilon, and
    everything is 0), and the rounding error grows as ``eps · (|μ_k − c| / σ_k)²``,
    about 1e-12 even for components 100 SDs from the mean. float32 keeps the
    per-component centred sums, which lose nothing to that.
    """
    n, d = X.shape
    k = nk.shape[0]
    chunk = _block_rows(k * d, X.dtype, chunk, X.device)
    if X.dtype == torch.float64:
        c = X.mean(0)
        S = torch.zeros((d, k * d), dtype=X.dtype, device=X.device)
        a = torch.zeros((k, d), dtype=X.dtype, device=X.device)
        for s in range(0, n, chunk):
            xc = X[s : s + chunk] - c
            r = resp[s : s + chunk]
            S += xc.T @ (r[:, :, None] * xc[:, None, :]).reshape(-1, k * d)
            a += r.T @ xc
        S = S.reshape(d, k, d).permute(1, 0, 2)
        m = means - c
        am = a[:, :, None] * m[:, None, :]
        outer = resp.sum(0)[:, None, None] * m[:, :, None] * m[:, None, :]
        return (S - am - am.transpose(1, 2) + outer) / nk[:, None, None]
    cov = torch.empty((k, d, d), dtype=X.dtype, device=X.device)
    xt = X.T.contiguous()
    for j in range(k):
        dt = xt - means[j][:, None]
        cov[j] = (dt * resp[:, j]) @ dt.T / nk[j]
    return cov


def precision_cholesky(cov: torch.Tensor, covariance_type: str, reg_covar: float) -> torch.Tensor:
    """Cholesky factor of the precision, ``P`` with ``P Pᵀ = Σ⁻¹`` (upper triangular, as sklearn)."""
    if covariance_type in ("full", "tied"):
        chol, info = torch.linalg.cholesky_ex(cov)
        if bool((info != 0).any()):
            raise GazeemError(_ILL_DEFINED.format(reg=reg_covar))
        eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device).expand_as(cov)
        return torch.linalg.solve_triangular(chol, eye, upper=False).transpose(-1, -2)
    if bool((cov <= 0).any()):
        raise GazeemError(_ILL_DEFINED.format(reg=reg_covar))
    return 1.0 / torch.sqrt(cov)


def precision_cholesky_from_precisions(prec: torch.Tensor, covariance_type: str) -> torch.Tensor:
    if covariance_type in ("full", "tied"):
        chol, info = torch.linalg.cholesky_ex(prec)
        if bool((info != 0).any()):
            raise GazeemError("precisions_init must be symmetric positive definite.")
        return chol
    if bool((prec <= 0).any()):
        raise GazeemError("precisions_init must be positive.")
    return torch.sqrt(prec)


def log_gaussian_prob(
    X: torch.Tensor, means: torch.Tensor, prec_chol: torch.Tensor, covariance_type: str
) -> torch.Tensor:
    """``log N(x_n; μ_k, Σ_k)`` for every sample and component, ``(N, K)``."""
    n, d = X.shape
    k = means.shape[0]
    if covariance_type == "full":
        log_det = torch.log(torch.diagonal(prec_chol, dim1=-2, dim2=-1)).sum(-1)
        # one GEMM for all components, the means folded in:
        # y = X [P_1 ... P_K] - [μ_1 P_1 ... μ_K P_K], in cache-sized blocks of rows
        # ([x, 1] against the rows [P; -μP], so the GEMM writes y with no other pass)
        p_all = prec_chol.permute(1, 0, 2).reshape(d, k * d)
        shift = torch.einsum("kd,kde->ke", means, prec_chol).reshape(1, k * d)
        aug = torch.cat([p_all, -shift])
        log_prob = torch.empty((n, k), dtype=X.dtype, device=X.device)
        rows = _block_rows(k * d, X.dtype, n, X.device)
        xa = torch.ones((rows, d + 1), dtype=X.dtype, device=X.device)
        for s in range(0, n, rows):
            m = min(rows, n - s)
            xa[:m, :d] = X[s : s + m]
            y = xa[:m] @ aug
            torch.sum(y.square_().reshape(m, k, d), -1, out=log_prob[s : s + m])
    elif covariance_type == "tied":
        log_det = torch.log(torch.diagonal(prec_chol)).sum()
        y = (X @ prec_chol)[:, None, :] - (means @ prec_chol)[None]
        log_prob = (y * y).sum(-1)
    elif covariance_type == "diag":
        log_det = torch.log(prec_chol).sum(1)
        prec = prec_chol**2
        log_prob = (means**2 * prec).sum(1) - 2.0 * X @ (means * prec).T + (X * X) @ prec.T
    else:
        log_det = d * torch.log(prec_chol)
        prec = prec_chol**2
        log_prob = (
            (means**2).sum(1) * prec - 2 * (X @ means.T) * prec + torch.outer((X * X).sum(1), prec)
        )
    return -0.5 * (d * math.log(2 * math.pi) + log_prob) + log_det


class GaussianMixture(BaseMixture):
    """Gaussian mixture model fitted by EM (scikit-learn's API).

    Parameters
    ----------
    n_components
        Number of components ``K``.
    covariance_type
        ``"full"`` (K, d, d), ``"tied"`` (d, d), ``"diag"`` (K, d) or ``"spherical"`` (K,).
    tol
        Convergence threshold on the mean log-likelihood per sample.
    reg_covar
        Added to the diagonal of every covariance; keeps them positive definite.
    max_iter, n_init, random_state, warm_start, verbose, verbose_interval
        As in scikit-learn.
    init_params
        ``"kmeans"``, ``"k-means++"``, ``"random"`` or ``"random_from_data"``: how the
        starting responsibilities are made.
    weights_init, means_init, precisions_init
        Explicit starting parameters (override ``init_params`` for that parameter).
    device, dtype, chunk_size
        torch device, precision (``None``: float32 input stays float32, anything else
        is float64, as scikit-learn keeps the input's dtype) and samples per E-step chunk.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_
        Fitted parameters (NumPy arrays).
    converged_, n_iter_
        Whether the best initialisation converged, and its number of iterations.
    lower_bound_, lower_bounds_
        Mean log-likelihood per sample before the last M-step (scikit-learn's), and
        its history.
    n_features_in_
        Number of features seen in ``fit``.
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        device: str = "auto",
        dtype: str | None = None,
        chunk_size: int = 8192,
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
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init

    # -- checks ----------------------------------------------------------------------------
    def _check_parameters(self, X: torch.Tensor) -> None:
        k, d = self.n_components, X.shape[1]
        if self.covariance_type not in COVARIANCE_TYPES:
            raise GazeemError(
                f"covariance_type must be one of {COVARIANCE_TYPES}, got {self.covariance_type!r}."
            )
        if self.init_params not in INIT_PARAMS:
            raise GazeemError(
                f"init_params must be one of {INIT_PARAMS}, got {self.init_params!r}."
            )
        if not (self.reg_covar >= 0):
            raise GazeemError(f"reg_covar must be >= 0, got {self.reg_covar!r}.")
        if self.weights_init is not None:
            w = _check_shape(self.weights_init, (k,), "weights")
            if np.any(w < 0) or np.any(w > 1):
                raise GazeemError(
                    "The parameter 'weights' should be in the range [0, 1], but got "
                    f"min value {w.min():.5f}, max value {w.max():.5f}"
                )
            atol = 1e-6 if w.dtype == np.float32 else 1e-8
            if not np.isclose(w.sum(), 1.0, rtol=0, atol=atol):
                raise GazeemError(
                    f"The parameter 'weights' should be normalized, but got sum(weights) = {w.sum():.5f}"
                )
        if self.means_init is not None:
            _check_shape(self.means_init, (k, d), "means")
        if self.precisions_init is not None:
            kind = self.covariance_type
            shapes = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}
            p = _check_shape(self.precisions_init, shapes[kind], f"{kind} precision")
            if kind in ("diag", "spherical") and np.any(p <= 0):
                raise GazeemError(f"'{kind} precision' should be positive")
            if kind in ("full", "tied"):
                mats = p.reshape(-1, d, d)
                sym = np.allclose(mats, mats.transpose(0, 2, 1))
                if not sym or np.any(np.linalg.eigvalsh(mats) <= 0):
                    raise GazeemError(f"'{kind} precision' should be symmetric, positive-definite")

    # -- initialisation ----------------------------------------------------------------------
    def _initial_resp(self, X: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        n, k = X.shape[0], self.n_components
        if self.init_params == "random":
            r = torch.as_tensor(rng.uniform(size=(n, k)), dtype=X.dtype, device=X.device)
            return r / r.sum(1, keepdim=True)
        if self.init_params == "kmeans":
            _, labels = kmeans(X, k, rng, chunk=int(self.chunk_size))
        else:
            if self.init_params == "k-means++":
                centers = kmeans_plusplus(X, k, rng)
            else:
                centers = X[torch.as_tensor(rng.choice(n, size=k, replace=False), device=X.device)]
            d2 = (X * X).sum(1)[:, None] - 2 * X @ centers.T + (centers * centers).sum(1)[None]
            labels = d2.argmin(1)
        resp = torch.zeros((n, k), dtype=X.dtype, device=X.device)
        resp[torch.arange(n, device=X.device), labels] = 1
        return resp

    def _initialize(self, X: torch.Tensor, rng: np.random.Generator) -> None:
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=X.dtype, device=X.device)  # noqa: E731
        need_resp = (
            self.weights_init is None or self.means_init is None or self.precisions_init is None
        )
        nk = means = cov = None
        if need_resp:
            nk, means, cov = estimate_gaussian_parameters(
                X, self._initial_resp(X, rng), self.reg_covar, self.covariance_type
            )
        self._w = nk / X.shape[0] if self.weights_init is None else t(self.weights_init)
        self._mu = means if self.means_init is None else t(self.means_init)
        if self.precisions_init is None:
            self._cov = cov
            self._pc = precision_cholesky(cov, self.covariance_type, self.reg_covar)
        else:
            self._cov = None
            self._pc = precision_cholesky_from_precisions(
                t(self.precisions_init), self.covariance_type
            )

    # -- EM hooks ----------------------------------------------------------------------------
    def _estimate_weighted_log_prob(self, X: torch.Tensor) -> torch.Tensor:
        return log_gaussian_prob(X, self._mu, self._pc, self.covariance_type) + torch.log(self._w)

    def _m_step(self, X: torch.Tensor, log_resp: torch.Tensor) -> None:
        nk, self._mu, self._cov = estimate_gaussian_parameters(
            X, log_resp.exp(), self.reg_covar, self.covariance_type
        )
        self._w = nk / nk.sum()
        self._pc = precision_cholesky(self._cov, self.covariance_type, self.reg_covar)

    def _get_parameters(self):
        return (self._w, self._mu, self._cov, self._pc)

    def _set_parameters(self, params) -> None:
        self._w, self._mu, self._cov, self._pc = params
        if self._cov is None:  # max_iter=0 with explicit precisions
            self._cov = _covariance_from_precision_cholesky(self._pc, self.covariance_type)

    # -- fitted attributes -------------------------------------------------------------------
    @property
    def weights_(self) -> np.ndarray:
        self._check_fitted()
        return self._w.cpu().numpy()

    @property
    def means_(self) -> np.ndarray:
        self._check_fitted()
        return self._mu.cpu().numpy()

    @property
    def covariances_(self) -> np.ndarray:
        self._check_fitted()
        return self._cov.cpu().numpy()

    @property
    def precisions_cholesky_(self) -> np.ndarray:
        self._check_fitted()
        return self._pc.cpu().numpy()

    @property
    def precisions_(self) -> np.ndarray:
        pc = self.precisions_cholesky_
        if self.covariance_type == "full":
            return np.einsum("kij,klj->kil", pc, pc)
        if self.covariance_type == "tied":
            return pc @ pc.T
        return pc**2

    # -- model selection and sampling -----------------------------------------------------------
    def _n_parameters(self) -> int:
        k, d = self._mu.shape
        cov = {"full": k * d * (d + 1) / 2, "diag": k * d, "tied": d * (d + 1) / 2, "spherical": k}
        return int(cov[self.covariance_type] + k * d + k - 1)

    def bic(self, X) -> float:
        """Bayesian information criterion on ``X`` (lower is better)."""
        n = np.shape(X)[0]
        return -2 * self.score(X) * n + self._n_parameters() * np.log(n)

    def aic(self, X) -> float:
        """Akaike information criterion on ``X`` (lower is better)."""
        return -2 * self.score(X) * np.shape(X)[0] + 2 * self._n_parameters()

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n_samples`` points; returns ``(X (n, d), component labels (n,))``."""
        self._check_fitted()
        if n_samples < 1:
            raise GazeemError(
                f"Invalid value for 'n_samples': {n_samples}. The sampling requires at least one sample."
            )
        rng = _generator(self.random_state)
        w, mu, cov = self.weights_, self.means_, self.covariances_
        counts = rng.multinomial(n_samples, w / w.sum())
        xs, ys = [], []
        for k, m in enumerate(counts):
            if self.covariance_type == "full":
                x = rng.multivariate_normal(mu[k], cov[k], m)
            elif self.covariance_type == "tied":
                x = rng.multivariate_normal(mu[k], cov, m)
            else:
                sd = np.sqrt(cov[k])
                x = mu[k] + rng.standard_normal((m, mu.shape[1])) * sd
            xs.append(x)
            ys.append(np.full(m, k))
        return np.concatenate(xs), np.concatenate(ys)


def _check_shape(value, shape: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != shape:
        raise GazeemError(
            f"The parameter '{name}' should have the shape of {shape}, but got {arr.shape}"
        )
    return arr


def _covariance_from_precision_cholesky(pc: torch.Tensor, covariance_type: str) -> torch.Tensor:
    if covariance_type == "full":
        return torch.linalg.inv(pc @ pc.transpose(-1, -2))
    if covariance_type == "tied":
        return torch.linalg.inv(pc @ pc.T)
    return 1.0 / pc**2
