"""Torch building blocks shared by the estimators."""

from ._mlp import ACTIVATIONS, Autoencoder, make_mlp

__all__ = ["ACTIVATIONS", "Autoencoder", "make_mlp"]
