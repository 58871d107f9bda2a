"""Torch building blocks: networks, the AEF and VAE modules, latent priors."""

from ._aef import AEFModule, LogitActNorm
from ._conv import ConvDecoder, ConvEncoder, build_networks, parse_image_shape
from ._mlp import ACTIVATIONS, Autoencoder, make_mlp
from ._prior import FlowPrior, GaussianPrior, LatentPrior, StandardNormalPrior, standard_normal_log_prob
from ._rows import apply_rows
from ._vae import VariationalModule

__all__ = [
    "ACTIVATIONS",
    "AEFModule",
    "Autoencoder",
    "ConvDecoder",
    "ConvEncoder",
    "FlowPrior",
    "GaussianPrior",
    "LatentPrior",
    "LogitActNorm",
    "StandardNormalPrior",
    "VariationalModule",
    "apply_rows",
    "build_networks",
    "make_mlp",
    "parse_image_shape",
    "standard_normal_log_prob",
]
