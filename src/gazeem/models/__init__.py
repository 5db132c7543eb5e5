"""The pieces of the gaze model: tracker observation, grid prior, response model."""

from gazeem.models.observation import TrackerModel
from gazeem.models.prior import CellWeightsPrior, CountsPrior, GridPrior, UniformPrior
from gazeem.models.response import PoissonLN, ResponseModel

__all__ = [
    "CellWeightsPrior",
    "CountsPrior",
    "GridPrior",
    "PoissonLN",
    "ResponseModel",
    "TrackerModel",
    "UniformPrior",
]
