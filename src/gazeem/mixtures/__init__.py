"""Textbook mixture models on gazeem's EM core (see ``docs/mixtures.md``).

- :class:`BernoulliMixture`: the two-coin problem.
- :class:`GaussianMixture`: full, tied, diag and spherical covariances, checked against scikit-learn.
- :class:`ObjectLocationMixture`: 3-D object locations with categories (MetaGen).
"""

from gazeem.mixtures.bernoulli import BernoulliMixture
from gazeem.mixtures.gaussian import GaussianMixture
from gazeem.mixtures.objects import ObjectLocationMixture, simulate_scene

__all__ = ["BernoulliMixture", "GaussianMixture", "ObjectLocationMixture", "simulate_scene"]
