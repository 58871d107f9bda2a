"""Probabilistic autoencoders with a scikit-learn interface."""

from ._net import TrainingDivergedError
from .models import PAE, VAE, ProbabilisticAutoencoder

__all__ = ["PAE", "VAE", "ProbabilisticAutoencoder", "TrainingDivergedError"]
__version__ = "0.1.0"
