"""Probabilistic autoencoders with a scikit-learn interface."""

from ._net import TrainingDivergedError
from .models import AEF, PAE, VAE, ProbabilisticAutoencoder

__all__ = ["AEF", "PAE", "VAE", "ProbabilisticAutoencoder", "TrainingDivergedError"]
__version__ = "0.1.0"
