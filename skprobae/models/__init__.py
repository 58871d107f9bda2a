"""The estimators, one module each."""

from ._pae import PAE
from ._vae import VAE
from ._vanilla import ProbabilisticAutoencoder

__all__ = ["PAE", "VAE", "ProbabilisticAutoencoder"]
