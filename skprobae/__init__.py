"""Probabilistic autoencoders with a scikit-learn interface."""

from ._net import TrainingDivergedError
from .impute import PAEImputer
from .models import AEF, PAE, VAE, ProbabilisticAutoencoder

__all__ = ["AEF", "PAE", "VAE", "PAEImputer", "ProbabilisticAutoencoder", "TrainingDivergedError"]
__version__ = "0.1.0"
