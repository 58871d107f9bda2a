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

INPLACE_ACTIVATIONS = frozenset({"relu", "leaky_relu"})
"""Activations applied in place: their gradient reads their output only, and a layer then allocates one tensor,
not two (on a CPU, fresh megabyte tensors are memory traffic; a VAE scores 4% faster)."""


def make_activation(name: str) -> nn.Module:
    """The activation module of :data:`ACTIVATIONS` named ``name`` (in place where that is safe)."""
    return ACTIVATIONS[name](inplace=True) if name in INPLACE_ACTIVATIONS else ACTIVATIONS[name]()


def make_mlp(
    in_features: int, hidden_layer_sizes: Sequence[int], out_features: int, activation: str = "relu"
) -> nn.Sequential:
    """A stack of linear layers with ``activation`` between them, none after the last.

    Parameters
    ----------
    in_features : int
        Input width.
    hidden_layer_sizes : sequence of int
        Widths of the hidden layers, in order; empty for a single linear map.
    out_features : int
        Output width.
    activation : str, default="relu"
        A key of :data:`ACTIVATIONS`.

    Returns
    -------
    nn.Sequential
        ``Linear`` layers of widths ``in_features -> *hidden_layer_sizes ->
        out_features``, with an ``activation`` module after each but the last.

    Raises
    ------
    KeyError
        If ``activation`` is not a key of :data:`ACTIVATIONS` (and there is a hidden layer).

    Examples
    --------
    >>> from skprobae.nn import make_mlp
    >>> make_mlp(4, [8], 2, activation="tanh")
    Sequential(
      (0): Linear(in_features=4, out_features=8, bias=True)
      (1): Tanh()
      (2): Linear(in_features=8, out_features=2, bias=True)
    )
    """
    widths = [in_features, *hidden_layer_sizes, out_features]
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(widths) - 2:
            layers.append(make_activation(activation))
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
    inputs : nn.Module or None, default=None
        Maps raw rows to the encoder's input (a
        :class:`~skprobae.nn._table.TableInput`: standardization, one-hot
        categories, missingness indicators); None passes them as they are
        (:class:`torch.nn.Identity`).

    Examples
    --------
    >>> import torch
    >>> from skprobae.distributions import DiagonalNormal
    >>> from skprobae.nn import Autoencoder, make_mlp
    >>> head = DiagonalNormal(3)
    >>> model = Autoencoder(make_mlp(3, [8], 2), make_mlp(2, [8], head.n_params), head)
    >>> x = torch.zeros(5, 3)
    >>> model.encode(x).shape
    torch.Size([5, 2])
    >>> model.log_prob(x).shape, model.log_prob(x).dtype
    (torch.Size([5]), torch.float64)
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
        """Raw parameters of the output distribution, ``g(f(x))``.

        Parameters
        ----------
        x : Tensor of shape (batch, n_features)
            Raw rows, in the networks' dtype.

        Returns
        -------
        Tensor of shape (batch, head.n_params)
            The decoder's raw values, to pass to :meth:`loss`.
        """
        return self.decoder(self.encoder(self.inputs(x)))

    def loss(self, params: Tensor, x: Tensor, weight: Tensor | None = None) -> Tensor:
        """Training loss of a batch: the head's negative log-likelihood.

        Parameters
        ----------
        params : Tensor of shape (batch, head.n_params)
            The output of :meth:`forward` for ``x``.
        x : Tensor of shape (batch, n_features)
            The rows.
        weight : Tensor of shape (batch,), optional
            Per-row weights (``sample_weight``), passed to the head when given.

        Returns
        -------
        Tensor
            A scalar: ``head.loss(params, x)``.
        """
        if weight is None:
            return self.head.loss(params, x)
        return self.head.loss(params, x, weight=weight)

    def encode(self, x: Tensor) -> Tensor:
        """Codes ``f(x)``, in the networks' dtype.

        Parameters
        ----------
        x : Tensor of shape (batch, n_features)
            Raw rows; cast to the networks' dtype.

        Returns
        -------
        Tensor of shape (batch, n_components)
            The latent codes.
        """
        return self.encoder(self.inputs(x.to(network_dtype(self))))

    def decoder_params(self, z: Tensor) -> Tensor:
        """Raw parameters ``g(z)`` of the output distribution, in the networks' dtype.

        Parameters
        ----------
        z : Tensor of shape (..., n_components)
            Codes with any leading dimensions; cast to the networks' dtype.

        Returns
        -------
        Tensor of shape (..., head.n_params)
            The decoder's raw values.
        """
        return apply_rows(self.decoder, z.to(network_dtype(self)))

    def decode(self, z: Tensor) -> Tensor:
        """The output distribution's point estimate at codes ``z``.

        Parameters
        ----------
        z : Tensor of shape (..., n_components)
            Codes with any leading dimensions.

        Returns
        -------
        Tensor
            ``head.point_estimate(decoder_params(z))``: a reconstruction of
            shape ``(..., n_features)``.
        """
        return self.head.point_estimate(self.decoder_params(z))

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x | f(x))`` per row.

        Parameters
        ----------
        x : Tensor of shape (batch, n_features)
            Raw rows.

        Returns
        -------
        Tensor of shape (batch,)
            Float64 log-likelihoods (per-feature terms in the networks'
            dtype, summed in float64).
        """
        return self.head.log_prob(self.decoder_params(self.encode(x)), x)
