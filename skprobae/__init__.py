"""Probabilistic autoencoders with a scikit-learn interface."""

from ._net import TrainingDivergedError
from .models import ProbabilisticAutoencoder

__all__ = ["ProbabilisticAutoencoder", "TrainingDivergedError"]
__version__ = "0.1.0"
