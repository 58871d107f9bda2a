"""Torch building blocks shared by the estimators."""

from ._conv import ConvDecoder, ConvEncoder, build_networks, parse_image_shape
from ._mlp import ACTIVATIONS, Autoencoder, make_mlp

__all__ = [
    "ACTIVATIONS",
    "Autoencoder",
    "ConvDecoder",
    "ConvEncoder",
    "build_networks",
    "make_mlp",
    "parse_image_shape",
]
