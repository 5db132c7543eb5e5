"""gazeem: expectation-maximisation over a grid of gaze positions.

Corrects eye-tracker error and fits receptive fields jointly, per recording session.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gazeem")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
