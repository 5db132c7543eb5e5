"""Textbook mixture models on gazeem's EM core (see ``docs/mixtures.md``).

- :class:`BernoulliMixture`: the two-coin problem.
- :class:`GaussianMixture`: full, tied, diag and spherical covariances, a drop-in for
  scikit-learn's.
- :class:`ObjectLocationMixture`: 3-D object locations with categories (MetaGen).

The classes load on first use, so that ``gazeem``'s command line, which registers the
``mixture`` verb, does not import scikit-learn (``sklearn_compat``) for every command.
"""

from importlib import import_module

_WHERE = {
    "BernoulliMixture": "gazeem.mixtures.bernoulli",
    "GaussianMixture": "gazeem.mixtures.gaussian",
    "ObjectLocationMixture": "gazeem.mixtures.objects",
    "simulate_scene": "gazeem.mixtures.objects",
}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'gazeem.mixtures' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
