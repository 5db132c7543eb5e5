"""Exceptions raised at gazeem's public entry points."""


class GazeemError(ValueError):
    """Base class: bad input or bad configuration, with a message that says what to change."""


class SessionValidationError(GazeemError):
    """A session dataset breaks the data contract (``docs/data-format.md``)."""


class NotFittedError(GazeemError, AttributeError):
    """An estimator was used before ``fit``."""
