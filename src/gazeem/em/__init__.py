"""The generic discrete-latent EM driver and its log-space E-step helpers."""

from gazeem.em.engine import (
    ConvergenceWarning,
    EMState,
    EStep,
    LikelihoodDecreaseWarning,
    run_em,
)
from gazeem.em.estep import normalize_log, prune_support, sample_support

__all__ = [
    "ConvergenceWarning",
    "EMState",
    "EStep",
    "LikelihoodDecreaseWarning",
    "normalize_log",
    "prune_support",
    "run_em",
    "sample_support",
]
