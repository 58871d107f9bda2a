import numpy as np
import pytest
import torch

from skprobae.distributions import BUILTIN_DISTRIBUTIONS, make_distribution
from skprobae.nn import build_networks, parse_image_shape

NAMES = BUILTIN_DISTRIBUTIONS


@pytest.mark.parametrize("shape", [(8, 8), (1, 28, 28), (3, 5, 7), (1, 1, 3)])
@pytest.mark.parametrize("n_mixtures", [1, 3])
@pytest.mark.parametrize("name", NAMES)
def test_conv_decoder_emits_each_family_layout(shape, name, n_mixtures):
    d = int(np.prod(shape))
    if name.startswith("matrix") and len(shape) == 3 and shape[0] != 1:
        pytest.skip("matrix families model one-channel images")
    head = make_distribution(name, d, n_mixtures, image_shape=shape)
    encoder, decoder = build_networks("conv", d, 4, head, (16,), "relu", shape)
    x = torch.randn(5, d)  # float32, as in training: a 784 x 784 Cholesky factor must not overflow at init
    z = encoder(x)
    params = decoder(z)
    assert z.shape == (5, 4) and params.shape == (5, head.n_params)
    assert torch.isfinite(head.log_prob(params, x)).all()


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 9, 7), (2, 5, 6)])
@pytest.mark.parametrize("name", ["mse", "normal_diag", "t_diag"])
def test_conv_decoder_outputs_do_not_depend_on_gradient_mode(shape, name):
    # Without gradients, transposed convolutions with few output channels run on torch's native CPU kernel
    # (with them, on oneDNN's): the outputs must agree, also with a float64 evaluation.
    d = int(np.prod(shape))
    head = make_distribution(name, d, image_shape=shape)
    torch.manual_seed(0)
    _, decoder = build_networks("conv", d, 4, head, (16,), "relu", shape)
    z = torch.randn(6, 4)
    with torch.no_grad():
        inference = decoder(z)
    training = decoder(z).detach()
    exact = decoder.double()(z.double()).detach()
    scale = exact.abs().max().item()
    np.testing.assert_allclose(inference, training, rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(inference.double(), exact, rtol=0, atol=1e-6 * scale)


def test_conv_decoder_forward_mode_derivatives_without_gradients():
    # PAE's Laplace term takes Jacobian columns with torch.func.jvp under no_grad: the decoder must then use a
    # kernel that has a forward-mode derivative (the native transposed convolution has none)
    shape = (1, 10, 10)
    head = make_distribution("mse", 100, image_shape=shape)
    torch.manual_seed(0)
    _, decoder = build_networks("conv", 100, 3, head, (16,), "tanh", shape)
    decoder = decoder.double()
    z, direction = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad():
        _, column = torch.func.jvp(decoder, (z,), (direction,))
        step = 1e-6
        central = (decoder(z + step * direction) - decoder(z - step * direction)) / (2 * step)
    np.testing.assert_allclose(column, central, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["normal_diag", "t_diag"])
def test_assemble_puts_image_channels_where_the_family_reads_them(name):
    head = make_distribution(name, 6, n_mixtures=2)
    per_feature = torch.arange(2 * 2 * 6, dtype=torch.float64).view(1, 4, 6)  # K=2 x (loc, scale)
    extra = torch.zeros(1, head.n_params - 24, dtype=torch.float64)
    points, _ = head.components(head.assemble(per_feature, extra))
    # Component k's location is channel 2k of the per-pixel maps.
    np.testing.assert_array_equal(points[0, 0], per_feature[0, 0])
    np.testing.assert_array_equal(points[0, 1], per_feature[0, 2])


@pytest.mark.parametrize(
    ("shape", "n_features", "match"),
    [(None, 64, "image_shape is required"), ((8, 9), 64, "holds 72 values but X has 64"), ((8,), 8, r"\(H, W\)")],
)
def test_parse_image_shape_errors(shape, n_features, match):
    with pytest.raises(ValueError, match=match):
        parse_image_shape(shape, n_features)


def test_parse_image_shape_adds_channel():
    assert parse_image_shape((8, 8), 64) == (1, 8, 8)
    assert parse_image_shape((3, 2, 2), 12) == (3, 2, 2)
