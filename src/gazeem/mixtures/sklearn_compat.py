"""What makes the mixtures drop-ins for scikit-learn's, without depending on it.

When scikit-learn is installed, the mixtures' :class:`NotFittedError` and
:class:`ConvergenceWarning` also subclass scikit-learn's, so code written against
scikit-learn (``except sklearn.exceptions.NotFittedError``,
``filterwarnings("ignore", category=ConvergenceWarning)``) catches gazeem's too. They
stay gazeem's own classes (:class:`gazeem.errors.NotFittedError`,
:class:`gazeem.em.engine.ConvergenceWarning`) either way. scikit-learn is imported
only here, so the gaze pipeline never pays for it.
"""

from __future__ import annotations

from gazeem import errors
from gazeem.em import engine

try:
    from sklearn.exceptions import ConvergenceWarning as _SkConvergenceWarning
    from sklearn.exceptions import NotFittedError as _SkNotFittedError

    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover - scikit-learn is in the test lock
    HAVE_SKLEARN = False

    class _SkNotFittedError(ValueError, AttributeError):
        """Stand-in base when scikit-learn is absent."""

    class _SkConvergenceWarning(UserWarning):
        """Stand-in base when scikit-learn is absent."""


class NotFittedError(errors.NotFittedError, _SkNotFittedError):
    """A mixture was used before ``fit`` (also scikit-learn's ``NotFittedError``)."""


class ConvergenceWarning(engine.ConvergenceWarning, _SkConvergenceWarning):
    """The best initialisation stopped at ``max_iter`` (also scikit-learn's warning)."""


def density_estimator_tags(estimator) -> object:
    """scikit-learn's tags for a density estimator (called by scikit-learn only).

    ``requires_fit``, no target, dense 2-D float input, ``allow_nan=False``.
    """
    from sklearn.utils import InputTags, Tags, TargetTags

    return Tags(
        estimator_type="density_estimator",
        target_tags=TargetTags(required=False),
        input_tags=InputTags(two_d_array=True, allow_nan=False, sparse=False),
        transformer_tags=None,
        classifier_tags=None,
        regressor_tags=None,
    )
