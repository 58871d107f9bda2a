"""The estimators, one module each."""

from ._aef import AEF
from ._pae import PAE
from ._vae import VAE
from ._vanilla import ProbabilisticAutoencoder

__all__ = ["AEF", "PAE", "VAE", "ProbabilisticAutoencoder"]
