"""Multi-layer perceptrons and the autoencoder module that joins them.

The networks compute in their own dtype (float32 by default); an output
distribution evaluates its per-feature terms in that dtype and sums them in
float64.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from torch import Tensor, nn

from .._engine import network_dtype
from ..distributions import OutputDistribution
from ._rows import apply_rows

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


def make_mlp(
    in_features: int, hidden_layer_sizes: Sequence[int], out_features: int, activation: str = "relu"
) -> nn.Sequential:
    """A stack of linear layers with ``activation`` between them, none after the last.

    Parameters
    ----------
    in_features, out_features : int
        Input and output widths.
    hidden_layer_sizes : sequence of int
        Widths of the hidden layers, in order; empty for a single linear map.
    activation : str
        A key of :data:`ACTIVATIONS`.
    """
    widths = [in_features, *hidden_layer_sizes, out_features]
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class Autoencoder(nn.Module):
    """Encoder, decoder and output distribution; ``forward`` returns raw parameters.

    Parameters
    ----------
    encoder : nn.Module
        Maps ``x`` to latent codes ``z``.
    decoder : nn.Module
        Maps ``z`` to ``head.n_params`` raw values per sample.
    head : OutputDistribution
        Turns raw values into the distribution of ``x``; holds any learnable
        parameters of the family.
    inputs : nn.Module or None
        Maps raw rows to the encoder's input (a
        :class:`~skprobae.nn._table.TableInput`: standardization, one-hot
        categories, missingness indicators); None passes them as they are.
    """

    def __init__(
        self, encoder: nn.Module, decoder: nn.Module, head: OutputDistribution, inputs: nn.Module | None = None
    ):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.head = head
        self.inputs = inputs if inputs is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(self.inputs(x)))

    def loss(self, params: Tensor, x: Tensor) -> Tensor:
        """Training loss of a batch: the head's negative log-likelihood."""
        return self.head.loss(params, x)

    def encode(self, x: Tensor) -> Tensor:
        """Codes ``f(x)``, in the networks' dtype."""
        return self.encoder(self.inputs(x.to(network_dtype(self))))

    def decoder_params(self, z: Tensor) -> Tensor:
        """Raw parameters ``g(z)`` of the output distribution (codes with any leading dims), in the networks' dtype."""
        return apply_rows(self.decoder, z.to(network_dtype(self)))

    def decode(self, z: Tensor) -> Tensor:
        """The output distribution's point estimate at codes ``z``."""
        return self.head.point_estimate(self.decoder_params(z))

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x | f(x))`` per row (per-feature terms in the networks' dtype, summed in float64)."""
        return self.head.log_prob(self.decoder_params(self.encode(x)), x)
