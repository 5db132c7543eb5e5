"""The eye tracker's observation model ``p(ẑ | z) = N(ẑ; A (z − z̄) + z̄ + b, σ² I)``.

Positions are in *centred stimulus pixels*: x to the right, y down, origin at the
stimulus centre. The gain ``A`` scales and rotates about the *anchor* ``z̄``, the mean of
the session's tracker readings (a constant of the data, not a parameter). Anchored
there, a common translation of gaze and readings changes ``b`` only, never ``A``: with
the gain about the stimulus centre, gaze that sits off that centre let a translation be
mimicked by a distorted ``A`` (a true identity came out as ``[[1.63, 0.45], [0.20,
1.13]]``), and the model's answers depended on where the stimulus happened to be.

One observation per fixation: ``ẑ`` is the mean of the valid tracker samples in
the fixation. Tracker error is dominated by slow components (calibration drift,
pupil-size artefacts) that are shared by the samples of a fixation, so treating
every sample as independent would count the same error many times over.

Identifiability of ``b``: shifting every gaze position by ``-v`` and every
receptive field by ``+v`` leaves the response likelihood unchanged, and the tracker
term is unchanged too if ``b`` moves by ``A v``. The responses alone therefore
cannot fix ``b``. gazeem anchors it either at ``b = 0`` (the tracker is unbiased on
average; corrections are relative) or, when calibration fixations on known targets
exist, by those fixations (corrections are absolute).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch

log = logging.getLogger("gazeem.fit")


@dataclass
class TrackerStats:
    """Weighted sufficient statistics for the tracker M-step (float64).

    With weights ``w``, positions ``c`` (2,) and readings ``r`` (2,):
    ``sw = Σw``, ``sc = Σ w c``, ``scc = Σ w c cᵀ``, ``sr = Σ w r``, ``src = Σ w r cᵀ``,
    ``srr = Σ w |r|²``.
    """

    sw: torch.Tensor
    sc: torch.Tensor
    scc: torch.Tensor
    sr: torch.Tensor
    src: torch.Tensor
    srr: torch.Tensor

    @classmethod
    def from_weighted(
        cls, readings: torch.Tensor, positions: torch.Tensor, weights: torch.Tensor
    ) -> TrackerStats:
        """Statistics of ``readings (F, 2)``, ``positions (F, K, 2)``, ``weights (F, K)``."""
        r = readings.to(torch.float64)
        c = positions.to(torch.float64)
        w = weights.to(torch.float64)
        wf = w.sum(-1)  # (F,)
        return cls(
            sw=wf.sum(),
            sc=torch.einsum("fk,fki->i", w, c),
            scc=torch.einsum("fk,fki,fkj->ij", w, c, c),
            sr=torch.einsum("f,fi->i", wf, r),
            src=torch.einsum("fk,fi,fkj->ij", w, r, c),
            srr=(wf * (r * r).sum(-1)).sum(),
        )

    def shifted(self, a: torch.Tensor) -> TrackerStats:
        """The statistics of readings and positions both measured from ``a`` (2,)."""
        a = a.to(torch.float64)
        return TrackerStats(
            sw=self.sw,
            sc=self.sc - self.sw * a,
            scc=self.scc
            - torch.outer(a, self.sc)
            - torch.outer(self.sc, a)
            + self.sw * torch.outer(a, a),
            sr=self.sr - self.sw * a,
            src=self.src
            - torch.outer(a, self.sc)
            - torch.outer(self.sr, a)
            + self.sw * torch.outer(a, a),
            srr=self.srr - 2 * (a @ self.sr) + self.sw * (a @ a),
        )

    def __add__(self, other: TrackerStats) -> TrackerStats:
        return TrackerStats(
            *(getattr(self, k) + getattr(other, k) for k in self.__dataclass_fields__)
        )


@dataclass
class TrackerModel:
    """Gaussian tracker noise with optional affine gain and offset.

    Attributes
    ----------
    sigma
        Tracker noise SD per axis, pixels.
    gain
        ``(2, 2)`` matrix ``A`` (scale, rotation, shear), unitless.
    offset
        ``(2,)`` offset ``b``, pixels: the tracker's error at the anchor.
    anchor
        ``(2,)`` the point ``z̄`` the gain acts about, centred pixels (default 0).
    learn_sigma, learn_gain, learn_offset
        Which parameters the M-step updates in closed form.
    min_sigma
        Floor on ``sigma`` (pixels), which keeps the likelihood bounded.
    """

    sigma: float = 3.0
    gain: torch.Tensor = field(default_factory=lambda: torch.eye(2, dtype=torch.float64))
    offset: torch.Tensor = field(default_factory=lambda: torch.zeros(2, dtype=torch.float64))
    anchor: torch.Tensor = field(default_factory=lambda: torch.zeros(2, dtype=torch.float64))
    learn_sigma: bool = True
    learn_gain: bool = False
    learn_offset: bool = False
    min_sigma: float = 0.05

    def predict(self, positions: torch.Tensor) -> torch.Tensor:
        """Expected reading ``A (z − z̄) + z̄ + b`` for positions ``(..., 2)``, pixels."""
        a = self.gain.to(positions)
        z0 = self.anchor.to(positions)
        return (positions - z0) @ a.T + z0 + self.offset.to(positions)

    def invert(self, readings: torch.Tensor) -> torch.Tensor:
        """Gaze at which the expected reading equals ``readings (..., 2)``: ``A⁻¹(ẑ − z̄ − b) + z̄``."""
        a = self.gain.to(torch.float64)
        z0 = self.anchor.to(torch.float64)
        z = torch.linalg.solve(a, (readings.to(torch.float64) - z0 - self.offset).T).T + z0
        return z.to(readings.dtype)

    def log_prob(self, readings: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``log N(ẑ_f; A z + b, σ² I)`` for readings ``(F, 2)`` and positions ``(F, K, 2)``.

        Returns ``(F, K)``, nats.
        """
        d = readings[:, None, :] - self.predict(positions)
        s2 = self.sigma**2
        return -(d * d).sum(-1) / (2 * s2) - math.log(2 * math.pi * s2)

    def m_step(self, stats: TrackerStats) -> None:
        """Closed-form weighted least squares for ``A``, ``b`` and ``σ`` (about the anchor)."""
        stats = stats.shifted(self.anchor)
        sw, sc, scc, sr, src, srr = (
            stats.sw,
            stats.sc,
            stats.scc,
            stats.sr,
            stats.src,
            stats.srr,
        )
        a = self.gain.to(torch.float64)
        b = self.offset.to(torch.float64)
        if self.learn_gain and self.learn_offset:
            # regress r on [c, 1]: normal equations of a 3x3 system per output axis
            m = torch.zeros(3, 3, dtype=torch.float64)
            m[:2, :2], m[:2, 2], m[2, :2], m[2, 2] = scc, sc, sc, sw
            rhs = torch.zeros(3, 2, dtype=torch.float64)
            rhs[:2, :], rhs[2, :] = src.T, sr
            coef = torch.linalg.solve(m, rhs)  # (3, 2)
            a, b = coef[:2, :].T.contiguous(), coef[2, :].clone()
        elif self.learn_gain:
            # A = Σ w (r - b) cᵀ (Σ w c cᵀ)⁻¹
            num = src - torch.outer(b, sc)
            a = torch.linalg.solve(scc.T, num.T).T
        elif self.learn_offset:
            b = (sr - a @ sc) / sw
        self.gain, self.offset = a, b
        if self.learn_sigma:
            # Σ w |r - A c - b|², expanded in the statistics
            sse = (
                srr
                - 2 * torch.trace(a.T @ src)
                - 2 * b @ sr
                + torch.trace(a @ scc @ a.T)
                + 2 * b @ (a @ sc)
                + sw * (b @ b)
            )
            var = max(float(sse / (2 * sw)), self.min_sigma**2)
            self.sigma = math.sqrt(var)
        log.debug(
            "tracker: sigma %.4g px, gain %s, offset %s px",
            self.sigma,
            np.round(self.gain.numpy(), 4).tolist(),
            np.round(self.offset.numpy(), 3).tolist(),
        )
