"""Convolutional encoder and decoder for image-shaped rows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.autograd import forward_ad

from .._shapes import parse_image_shape
from ..distributions import OutputDistribution
from ._mlp import make_activation, make_mlp

NATIVE_DECONVOLUTION_MAX_CHANNELS = 4
"""Transposed convolutions with at most this many output channels run on torch's own CPU kernel (GEMM and col2im),
not oneDNN's, when no gradient is needed: 4x faster forward for 32 -> 1 channels on 14x14 maps, 2.5x for 32 -> 2,
1.4x for 32 -> 4, slower above. With gradients oneDNN's forward and backward together are faster."""


def _halve(size: int) -> int:
    """Output size of a 3x3, stride-2, padding-1 convolution."""
    return (size - 1) // 2 + 1


def _transposed_convolution(layer: nn.ConvTranspose2d, maps: Tensor) -> Tensor:
    """``layer(maps)``, on the faster CPU kernel for its shape (see :data:`NATIVE_DECONVOLUTION_MAX_CHANNELS`)."""
    if maps.device.type != "cpu" or layer.out_channels > NATIVE_DECONVOLUTION_MAX_CHANNELS:
        return layer(maps)
    # the native kernel has no forward-mode derivative (torch.func.jvp: PAE's Laplace term), nor a fast backward
    if torch.is_grad_enabled() or forward_ad.unpack_dual(maps).tangent is not None:
        return layer(maps)
    return torch.ops.aten.slow_conv_transpose2d(
        maps.contiguous(),  # the native kernel is slower on channels-last maps than the copy
        layer.weight,
        layer.kernel_size,
        layer.bias,
        layer.stride,
        layer.padding,
        layer.output_padding,
        layer.dilation,
    )


class ConvEncoder(nn.Module):
    """Strided 3x3 convolutions, then a perceptron to the latent codes.

    Parameters
    ----------
    image_shape : tuple of int (C, H, W)
        Shape of one image; rows of ``C * H * W`` features are reshaped to it.
    n_components : int
        Output width (the latent dimension, or twice it for a variational
        encoder).
    channels : sequence of int, default=(32, 64)
        Output channels of each stride-2 convolution (each halves H and W,
        rounding up).
    hidden_layer_sizes : sequence of int, default=(256,)
        Widths of the fully connected layers after the convolutions.
    activation : str, default="relu"
        A key of :data:`~skprobae.nn.ACTIVATIONS`.

    Examples
    --------
    >>> import torch
    >>> from skprobae.nn import ConvEncoder
    >>> encoder = ConvEncoder((1, 6, 6), 2, channels=(4,), hidden_layer_sizes=(8,))
    >>> encoder(torch.rand(5, 36)).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        n_components: int,
        channels: Sequence[int] = (32, 64),
        hidden_layer_sizes: Sequence[int] = (256,),
        activation: str = "relu",
    ):
        super().__init__()
        self.image_shape = tuple(image_shape)
        layers: list[nn.Module] = []
        c, h, w = self.image_shape
        for out_channels in channels:
            layers += [nn.Conv2d(c, out_channels, 3, stride=2, padding=1), make_activation(activation)]
            c, h, w = out_channels, _halve(h), _halve(w)
        self.convolutions = nn.Sequential(*layers)
        self.head = make_mlp(c * h * w, hidden_layer_sizes, n_components, activation)

    def forward(self, x: Tensor) -> Tensor:
        """Codes of flattened images.

        Parameters
        ----------
        x : Tensor of shape (..., C * H * W)
            Flattened images, with any leading dimensions.

        Returns
        -------
        Tensor of shape (..., n_components)
            The encoder's output for every image.
        """
        features = self.convolutions(x.reshape(-1, *self.image_shape))
        return self.head(features.flatten(1)).unflatten(0, x.shape[:-1])


class ConvDecoder(nn.Module):
    """Perceptron, then stride-2 transposed convolutions back to the image, plus a linear head.

    The transposed convolutions emit ``head.feature_channels`` values per
    pixel (means, scales, ...); the family's remaining raw values (degrees of
    freedom, mixture logits, Cholesky entries) come from a linear layer on the
    last hidden features. ``head.assemble`` joins both into the family's raw
    parameter layout.

    Parameters
    ----------
    n_components : int
        Latent dimension (the input width).
    image_shape : tuple of int (C, H, W)
        Shape of one image.
    head : OutputDistribution
        The output family the decoder feeds (over ``C * H * W`` features).
    channels : sequence of int, default=(32, 64)
        As for :class:`ConvEncoder`; the transposed convolutions mirror them.
    hidden_layer_sizes : sequence of int, default=(256,)
        As for :class:`ConvEncoder`, in reverse order.
    activation : str, default="relu"
        A key of :data:`~skprobae.nn.ACTIVATIONS`.

    Raises
    ------
    ValueError
        If ``head`` declares more per-feature values than raw parameters.

    Examples
    --------
    >>> import torch
    >>> from skprobae.distributions import DiagonalNormal
    >>> from skprobae.nn import ConvDecoder
    >>> head = DiagonalNormal(36)
    >>> decoder = ConvDecoder(2, (1, 6, 6), head, channels=(4,), hidden_layer_sizes=(8,))
    >>> head.n_params, decoder(torch.zeros(5, 2)).shape
    (72, torch.Size([5, 72]))
    """

    def __init__(
        self,
        n_components: int,
        image_shape: tuple[int, int, int],
        head: OutputDistribution,
        channels: Sequence[int] = (32, 64),
        hidden_layer_sizes: Sequence[int] = (256,),
        activation: str = "relu",
    ):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.assemble = head.assemble
        C, H, W = self.image_shape
        n_pixels = C * H * W
        self.feature_channels, self.n_extra = head.feature_channels, head.n_params - head.feature_channels * n_pixels
        if self.n_extra < 0:
            raise ValueError(f"{type(head).__name__} declares more per-feature values than parameters.")
        sizes = [(H, W)]
        for _ in channels:
            sizes.append((_halve(sizes[-1][0]), _halve(sizes[-1][1])))
        self.start_shape = (channels[-1], *sizes[-1]) if channels else (C, H, W)
        hidden = tuple(hidden_layer_sizes)[::-1]
        self.trunk = make_mlp(n_components, hidden[:-1], hidden[-1], activation) if hidden else nn.Identity()
        width = hidden[-1] if hidden else n_components
        self.to_map = nn.Sequential(nn.Linear(width, int(np.prod(self.start_shape))), make_activation(activation))

        layers: list[nn.Module] = []
        in_channels = self.start_shape[0]
        out_list = [*list(channels[:-1])[::-1], C * self.feature_channels]
        for i, out_channels in enumerate(out_list if channels else []):
            (h_in, w_in), (h_out, w_out) = sizes[-1 - i], sizes[-2 - i]
            padding = (h_out - (2 * h_in - 1), w_out - (2 * w_in - 1))
            layers.append(nn.ConvTranspose2d(in_channels, out_channels, 3, 2, 1, output_padding=padding))
            if i < len(out_list) - 1:
                layers.append(make_activation(activation))
            in_channels = out_channels
        self.deconvolutions = nn.Sequential(*layers)
        self.extra = nn.Linear(width, self.n_extra) if self.n_extra else None

    def forward(self, z: Tensor) -> Tensor:
        """Raw parameters of the output family at codes ``z``.

        Parameters
        ----------
        z : Tensor of shape (..., n_components)
            Codes, with any leading dimensions.

        Returns
        -------
        Tensor of shape (..., head.n_params)
            The raw parameters, in the layout of ``head.assemble``.
        """
        return self._decode(z.reshape(-1, z.shape[-1])).unflatten(0, z.shape[:-1])

    def _decode(self, z: Tensor) -> Tensor:
        hidden = self.trunk(z)
        n = hidden.shape[0]
        if self.feature_channels:
            maps = self.to_map(hidden).view(n, *self.start_shape)
            if maps.device.type == "cpu":
                # oneDNN's transposed convolutions run faster on channels-last maps (MNIST's decoder: 7.6 -> 4.7
                # ms per 128 codes, training unchanged)
                maps = maps.contiguous(memory_format=torch.channels_last)
            for layer in self.deconvolutions:
                maps = _transposed_convolution(layer, maps) if isinstance(layer, nn.ConvTranspose2d) else layer(maps)
            # (n, C * c, H, W) -> (n, c, C * H * W): each parameter channel over all pixels.
            C = self.image_shape[0]
            per_feature = maps.reshape(n, C, self.feature_channels, -1).transpose(1, 2).flatten(2)
        else:
            per_feature = hidden.new_zeros(n, 0, 0)
        extra = self.extra(hidden) if self.extra is not None else hidden.new_zeros(n, 0)
        return self.assemble(per_feature, extra)


def build_networks(
    architecture: str,
    n_features: int,
    n_components: int,
    head: OutputDistribution,
    hidden_layer_sizes: Sequence[int],
    activation: str,
    image_shape: Sequence[int] | None = None,
    channels: Sequence[int] = (32, 64),
    encoder_outputs: int | None = None,
) -> tuple[nn.Module, nn.Module]:
    """Encoder and decoder for ``architecture`` ``"mlp"`` or ``"conv"`` feeding ``head``.

    The encoder emits ``encoder_outputs`` values (default ``n_components``; a
    variational encoder asks for ``2 * n_components``: means and scales).

    Parameters
    ----------
    architecture : {"mlp", "conv"}
        Perceptrons (:func:`make_mlp`) or :class:`ConvEncoder` and
        :class:`ConvDecoder`.
    n_features : int
        Width of the encoder's input.
    n_components : int
        Latent dimension (the decoder's input width).
    head : OutputDistribution
        The output family; the decoder emits its ``n_params`` raw values.
    hidden_layer_sizes : sequence of int
        Hidden widths of the encoder; the decoder uses them in reverse order.
    activation : str
        A key of :data:`~skprobae.nn.ACTIVATIONS`.
    image_shape : sequence of int or None, default=None
        ``(H, W)`` or ``(C, H, W)`` (see :func:`parse_image_shape`); required
        for ``"conv"``, ignored for ``"mlp"``.
    channels : sequence of int, default=(32, 64)
        Convolution channels, for ``"conv"``.
    encoder_outputs : int or None, default=None
        Output width of the encoder; None (or 0) is ``n_components``.

    Returns
    -------
    encoder : nn.Module
        Maps ``(batch, n_features)`` to ``(batch, encoder_outputs)``.
    decoder : nn.Module
        Maps ``(batch, n_components)`` to ``(batch, head.n_params)``.

    Raises
    ------
    ValueError
        If ``architecture`` is neither ``"mlp"`` nor ``"conv"``, or
        ``image_shape`` is invalid for ``"conv"``.

    Examples
    --------
    >>> from skprobae.distributions import DiagonalNormal
    >>> from skprobae.nn import build_networks
    >>> encoder, decoder = build_networks("mlp", 4, 2, DiagonalNormal(4), (8,), "relu", encoder_outputs=4)
    >>> encoder[-1], decoder[-1]
    (Linear(in_features=8, out_features=4, bias=True), Linear(in_features=8, out_features=8, bias=True))
    """
    hidden = tuple(hidden_layer_sizes)
    n_out = encoder_outputs or n_components
    if architecture == "mlp":
        return (
            make_mlp(n_features, hidden, n_out, activation),
            make_mlp(n_components, hidden[::-1], head.n_params, activation),
        )
    if architecture == "conv":
        shape = parse_image_shape(image_shape, n_features)
        return (
            ConvEncoder(shape, n_out, channels, hidden, activation),
            ConvDecoder(n_components, shape, head, channels, hidden, activation),
        )
    raise ValueError(f"architecture must be 'mlp' or 'conv', got {architecture!r}.")
