"""The estimators, one module each."""

from ._vanilla import ProbabilisticAutoencoder

__all__ = ["ProbabilisticAutoencoder"]
