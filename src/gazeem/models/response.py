"""Response models ``p(y_t | retinal image at gaze z)``.

A response model is a :class:`torch.nn.Module` whose :meth:`~ResponseModel.log_likelihood`
scores a batch of (bin, gaze) pairs. The built-in :class:`PoissonLN` also scores a
whole window of candidate gaze cells at once as a cross-correlation (``conv2d``),
which is the E-step's hot path.

Patch geometry: the retinal patch at gaze ``z = (x, y)`` (stimulus pixels, x = column,
y = row) is the ``P × P`` block of the frame whose top-left pixel is
``(y - P // 2, x - P // 2)``; pixels outside the stimulus are 0 (mean luminance).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def add_grad(param: torch.Tensor, grad: torch.Tensor) -> None:
    """Accumulate ``grad`` into ``param.grad`` as autograd would (analytic gradients)."""
    if param.grad is None:
        param.grad = grad
    else:
        param.grad += grad


def rate_and_log(drive: torch.Tensor, nonlinearity: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(λ, log λ)`` for a drive, with ``λ = f(drive)``, ``f`` = exp or softplus. With
    softplus, ``λ`` is clamped at the dtype's smallest normal, so that ``y · log λ`` is
    finite (0 where ``y = 0``)."""
    if nonlinearity == "exp":
        return drive.exp(), drive
    rate = F.softplus(drive).clamp_min(torch.finfo(drive.dtype).tiny)
    return rate, rate.log()


def poisson_log_prob(counts: torch.Tensor, drive: torch.Tensor, nonlinearity: str) -> torch.Tensor:
    """Elementwise ``log Poisson(y; f(drive))`` in nats, with ``f`` = exp or softplus."""
    rate, log_rate = rate_and_log(drive, nonlinearity)
    return counts * log_rate - rate - torch.lgamma(counts + 1)


class ResponseModel(torch.nn.Module):
    """Base class for response models over retinal patches.

    Subclasses implement :meth:`log_likelihood`; a user model with a
    ``log_likelihood(x, y, z)`` method and torch parameters plugs into the engine,
    which then fits it with the gradient (Adam or L-BFGS) M-step.

    Parameters
    ----------
    n_units
        Number of recorded units ``N``.
    patch_size
        Side ``P`` of the retinal patch, stimulus pixels.
    n_lags
        Number of stimulus frames (current and earlier bins) the response depends on.
    """

    def __init__(self, n_units: int, patch_size: int, n_lags: int = 1) -> None:
        super().__init__()
        self.n_units = int(n_units)
        self.patch_size = int(patch_size)
        self.n_lags = int(n_lags)

    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Log-likelihood of each pair, summed over units.

        Parameters
        ----------
        x
            ``(M, n_lags, P, P)`` retinal patches (stimulus contrast, unitless).
        y
            ``(M, n_units)`` spike counts.
        z
            ``(M, 2)`` gaze positions (x, y), stimulus pixels.

        Returns
        -------
        ``(M,)`` log p(y | x), nats.
        """
        raise NotImplementedError

    def window_log_likelihood(
        self, crops: torch.Tensor, y: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """Log-likelihood at every cell of a square window, per bin.

        Parameters
        ----------
        crops
            ``(T, n_lags, R, R)`` stimulus crops; the cell at window index ``(i, j)``
            sees ``crops[..., i:i+P, j:j+P]``. The window side is ``W = R - P + 1``.
        y
            ``(T, n_units)`` spike counts.
        positions
            ``(T, W * W, 2)`` gaze (x, y) of each cell, stimulus pixels.

        Returns
        -------
        ``(T, W, W)`` nats. This generic version cuts every patch; subclasses that can
        use a convolution override it.
        """
        t, lags, r, _ = crops.shape
        p = self.patch_size
        w = r - p + 1
        patches = crops.unfold(2, p, 1).unfold(3, p, 1)  # (T, L, W, W, P, P)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(t * w * w, lags, p, p)
        yy = y.repeat_interleave(w * w, dim=0)
        ll = self.log_likelihood(patches, yy, positions.reshape(-1, 2))
        return ll.reshape(t, w, w)

    def log_penalty(self) -> torch.Tensor:
        """Log prior density of the parameters (a scalar tensor; 0 for plain ML)."""
        return torch.zeros((), dtype=next(self.parameters()).dtype)


class PoissonLN(ResponseModel):
    """Poisson linear-nonlinear model, one spatio-temporal receptive field per unit.

    ``λ_n = f(bias_n + Σ_{l,i,j} rf[n, l, i, j] · x[l, i, j])`` spikes per bin.

    Parameters
    ----------
    nonlinearity
        ``"exp"`` (canonical link; the M-step is convex) or ``"softplus"``.
    l2
        Strength of the ridge penalty ``l2 · Σ rf²``.
    smooth
        Strength of the smoothness penalty ``smooth · Σ (∇² rf)²`` (discrete Laplacian
        over rows and columns of each lag). The bias is never penalised.
    """

    def __init__(
        self,
        n_units: int,
        patch_size: int,
        n_lags: int = 1,
        nonlinearity: str = "exp",
        l2: float = 0.0,
        smooth: float = 0.0,
    ) -> None:
        super().__init__(n_units, patch_size, n_lags)
        if nonlinearity not in ("exp", "softplus"):
            raise ValueError(f"nonlinearity must be 'exp' or 'softplus', got {nonlinearity!r}.")
        if l2 < 0 or smooth < 0:
            raise ValueError(f"penalty strengths must be >= 0, got l2={l2}, smooth={smooth}.")
        self.nonlinearity = nonlinearity
        #: the likelihood is Poisson in the counts: bins that see the same patch may be
        #: scored once with their summed counts (:class:`gazeem.gaze.batches.Runs`)
        self.poisson_in_counts = True
        self.l2 = float(l2)
        self.smooth = float(smooth)
        self.rf = torch.nn.Parameter(torch.zeros(n_units, n_lags, patch_size, patch_size))
        self.bias = torch.nn.Parameter(torch.zeros(n_units))

    def initialize_bias(self, mean_counts: torch.Tensor) -> None:
        """Set each bias so that the rate at zero drive is the unit's mean count per bin."""
        m = mean_counts.to(self.bias).clamp_min(1e-3)
        with torch.no_grad():
            if self.nonlinearity == "exp":
                self.bias.copy_(torch.log(m))
            else:  # inverse softplus
                self.bias.copy_(m + torch.log(-torch.expm1(-m)))

    def drive(self, x: torch.Tensor) -> torch.Tensor:
        """``(M, n_units)`` linear drive for patches ``x (M, n_lags, P, P)``."""
        return x.flatten(1) @ self.rf.flatten(1).T + self.bias

    def rate(self, drive: torch.Tensor) -> torch.Tensor:
        """Expected spikes per bin for a ``drive`` (:meth:`drive`)."""
        return torch.exp(drive) if self.nonlinearity == "exp" else F.softplus(drive)

    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return poisson_log_prob(y, self.drive(x), self.nonlinearity).sum(-1)

    def accumulate_weighted_loss(
        self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, scale: float
    ) -> float:
        """Add the gradient of ``-scale · Σ_i w_i Σ_n [y log λ − λ]`` to ``.grad``; return that loss.

        The M-step's loss, correct up to the constant ``Σ log y!``: an analytic gradient
        (two GEMMs per batch, no autograd graph), which the L-BFGS M-step uses when a
        module provides it.
        """
        with torch.no_grad():
            xf = x.flatten(1)
            g = xf @ self.rf.flatten(1).T + self.bias
            rate, log_rate = rate_and_log(g, self.nonlinearity)
            ll = y * log_rate - rate
            if self.nonlinearity == "exp":
                dll = y - rate
            else:
                dll = (y / rate - 1.0) * torch.sigmoid(g)
            r = (-scale) * w[:, None] * dll  # d loss / d drive, (M, N)
            grad_rf = (r.T @ xf).reshape(self.rf.shape)
            grad_b = r.sum(0)
            add_grad(self.rf, grad_rf)
            add_grad(self.bias, grad_b)
            return float(-scale * (w[:, None] * ll).sum())

    @property
    def window_mstep(self) -> bool:
        """Whether :meth:`accumulate_window_rate` applies: with ``exp``, the expected
        log-likelihood's linear part is a fixed spike-triggered sum (issue 19)."""
        return self.nonlinearity == "exp"

    def accumulate_window_rate(
        self, crops: torch.Tensor, wmap: torch.Tensor, scale: float
    ) -> float:
        """Add the gradient of ``scale · Σ_t Σ_c w_tc Σ_n exp(g_tcn)`` to ``.grad``; return it.

        The rate term of the M-step's loss over whole windows: ``crops (T, L, R, R)``,
        ``wmap (T, W, W)`` the weight of every cell (0 off the posterior's support),
        ``g = bias + crops ⋆ rf`` as in :meth:`window_log_likelihood`. The drive is one
        convolution and the gradient one correlation of the crops with ``w · exp(g)``,
        so no patch is ever cut per (bin, cell) pair.
        """
        with torch.no_grad():
            e = torch.exp_(F.conv2d(crops, self.rf) + self.bias[None, :, None, None])
            e.mul_(wmap[:, None].to(e.dtype))
            grad_rf = torch.nn.grad.conv2d_weight(crops, self.rf.shape, e) * scale
            rate_sum = e.sum((0, 2, 3))
            add_grad(self.rf, grad_rf)
            add_grad(self.bias, rate_sum * scale)
            return float(rate_sum.sum(dtype=torch.float64)) * scale

    def window_log_likelihood(
        self, crops: torch.Tensor, y: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        # One batched cross-correlation: (T, L, R, R) ⋆ (N, L, P, P) -> (T, N, W, W).
        g = F.conv2d(crops, self.rf) + self.bias[None, :, None, None]
        yy = y[:, :, None, None]
        if self.nonlinearity == "exp" and not g.requires_grad:
            # Σ_n y_n g_n as one batched product, then exp in place: three passes over the
            # drive instead of six, so the convolution is 90% of the time (issue 19)
            t, n, w, _ = g.shape
            gf = g.reshape(t, n, w * w)
            lin = torch.bmm(y[:, None, :].to(g.dtype), gf)[:, 0]
            ll = (lin - gf.exp_().sum(1)).reshape(t, w, w)
        else:
            rate, log_rate = rate_and_log(g, self.nonlinearity)
            ll = (yy * log_rate - rate).sum(1)
        return ll - torch.lgamma(y + 1).sum(1)[:, None, None]

    def shared_window_log_likelihood(
        self, crops: torch.Tensor, y: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        """``(T, W, W)`` nats: :meth:`window_log_likelihood` of bins whose crop is
        ``crops[rows]``. ``crops (C, L, R, R)`` are shared (bins of a held frame in one
        window), so each is convolved once and each bin adds only its ``Σ_n y_n log λ_n``:
        ``N · W²`` operations a bin instead of ``N · W² · L · P²``."""
        g = F.conv2d(crops, self.rf) + self.bias[None, :, None, None]
        c, n, w, _ = g.shape
        rate, log_rate = rate_and_log(g.reshape(c, n, w * w), self.nonlinearity)
        lin = torch.bmm(y[:, None, :].to(g.dtype), log_rate[rows])[:, 0]
        ll = lin - rate.sum(1)[rows] - torch.lgamma(y + 1).sum(1)[:, None]
        return ll.reshape(-1, w, w)

    def log_penalty(self) -> torch.Tensor:
        pen = self.l2 * (self.rf**2).sum()
        if self.smooth > 0:
            k = _LAPLACIAN.to(self.rf)[None, None]
            flat = self.rf.reshape(-1, 1, self.patch_size, self.patch_size)
            pen = pen + self.smooth * (F.conv2d(flat, k, padding=1) ** 2).sum()
        return -pen
