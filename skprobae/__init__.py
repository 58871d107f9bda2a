"""Probabilistic autoencoders with a scikit-learn interface."""

from ._net import TrainingDivergedError
from ._version import __version__ as __version__
from .impute import PAEImputer
from .models import AEF, PAE, VAE, ProbabilisticAutoencoder
from .persistence import load, save

__all__ = ["AEF", "PAE", "VAE", "PAEImputer", "ProbabilisticAutoencoder", "TrainingDivergedError", "load", "save"]
