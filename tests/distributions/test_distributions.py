import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from skprobae.distributions import (
    Mixture,
    MultivariateStudentT,
    available_distributions,
    lower_cholesky,
    make_distribution,
    positive,
)

NAMES = ["mse", "normal", "normal_diag", "normal_full", "t", "t_diag", "t_full"]


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def random_tril(d, rng):
    A = rng.normal(size=(d, d))
    L = np.tril(A, -1) + np.diag(np.exp(rng.normal(size=d) * 0.3))
    return L


def test_registry_lists_every_family():
    assert set(NAMES) <= set(available_distributions())


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"Unknown distribution 'gauss'.*normal_diag.*t_full"):
        make_distribution("gauss", 3)


def test_invalid_n_mixtures():
    with pytest.raises(ValueError, match="n_mixtures"):
        make_distribution("normal", 3, n_mixtures=0)


@pytest.mark.parametrize("d", [1, 4])
def test_student_t_full_matches_scipy(d):
    rng = np.random.default_rng(d)
    L = random_tril(d, rng)
    loc, df = rng.normal(size=d), 3.7
    x = rng.normal(size=(50, d)) * 2
    dist = MultivariateStudentT(torch.tensor(df), torch.tensor(loc), scale_tril=torch.tensor(L))
    expected = stats.multivariate_t(loc=loc, shape=L @ L.T, df=df).logpdf(x)
    np.testing.assert_allclose(dist.log_prob(torch.tensor(x)).numpy(), np.atleast_1d(expected), rtol=1e-10)


def test_student_t_diag_matches_scipy_and_tril():
    rng = np.random.default_rng(1)
    d, scale, loc, df = 5, np.exp(rng.normal(size=5)), rng.normal(size=5), 0.8
    x = rng.normal(size=(30, d))
    diag = MultivariateStudentT(torch.tensor(df), torch.tensor(loc), scale_diag=torch.tensor(scale))
    tril = MultivariateStudentT(torch.tensor(df), torch.tensor(loc), scale_tril=torch.diag(torch.tensor(scale)))
    expected = stats.multivariate_t(loc=loc, shape=np.diag(scale**2), df=df).logpdf(x)
    np.testing.assert_allclose(diag.log_prob(torch.tensor(x)).numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(tril.log_prob(torch.tensor(x)).numpy(), expected, rtol=1e-10)


def test_student_t_batched_parameters():
    rng = np.random.default_rng(2)
    d = 3
    Ls = np.stack([random_tril(d, rng) for _ in range(4)])
    locs, dfs = rng.normal(size=(4, d)), np.array([1.5, 2.5, 5.0, 30.0])
    x = rng.normal(size=(4, d))
    dist = MultivariateStudentT(torch.tensor(dfs), torch.tensor(locs), scale_tril=torch.tensor(Ls))
    expected = [stats.multivariate_t(locs[i], Ls[i] @ Ls[i].T, df=dfs[i]).logpdf(x[i]) for i in range(4)]
    np.testing.assert_allclose(dist.log_prob(torch.tensor(x)).numpy(), expected, rtol=1e-10)
    # Broadcasting an extra leading dimension of values (as mixtures do).
    many = torch.tensor(rng.normal(size=(7, 4, d)))
    assert dist.log_prob(many).shape == (7, 4)


def test_student_t_sampling_moments():
    rng = np.random.default_rng(3)
    L = random_tril(2, rng)
    dist = MultivariateStudentT(torch.tensor(6.0), torch.tensor([1.0, -2.0]), scale_tril=torch.tensor(L))
    torch.manual_seed(0)
    draws = dist.sample((200_000,)).numpy()
    np.testing.assert_allclose(draws.mean(0), [1.0, -2.0], atol=0.02)
    np.testing.assert_allclose(np.cov(draws.T), L @ L.T * 6 / 4, rtol=0.05)
    np.testing.assert_allclose(dist.variance.numpy(), np.diag(L @ L.T) * 6 / 4)
    # Kolmogorov-Smirnov on the first coordinate against scipy's marginal t.
    marginal = stats.t(df=6.0, loc=1.0, scale=abs(L[0, 0]))
    assert stats.kstest(draws[:5000, 0], marginal.cdf).pvalue > 1e-3


def test_student_t_moments_undefined_for_small_df():
    dist = MultivariateStudentT(torch.tensor([0.5, 1.5, 3.0]), torch.zeros(3, 2), scale_diag=torch.ones(3, 2))
    mean, var = dist.mean.numpy(), dist.variance.numpy()
    assert np.isnan(mean[0]).all() and np.isfinite(mean[1:]).all()
    assert np.isnan(var[:2]).all() and np.allclose(var[2], 3.0)
    np.testing.assert_array_equal(dist.mode.numpy(), 0.0)


def test_lower_cholesky_structure():
    raw = torch.randn(5, 10)
    L = lower_cholesky(raw, 4)
    assert L.shape == (5, 4, 4)
    assert torch.all(torch.triu(L, 1) == 0)
    assert torch.all(L.diagonal(dim1=-2, dim2=-1) > 0)
    np.testing.assert_allclose(L.diagonal(dim1=-2, dim2=-1), positive(raw[:, :4]))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n_mixtures", [1, 3])
def test_family_shapes_and_finite_values(name, n_mixtures):
    d, n = 4, 6
    family = make_distribution(name, d, n_mixtures)
    params = torch.randn(n, family.n_params)
    x = torch.randn(n, d)
    assert family.log_prob(params, x).shape == (n,)
    assert torch.isfinite(family.loss(params, x))
    assert family.point_estimate(params).shape == (n, d)
    assert family.variance(params).shape == (n, d)
    points, log_weights = family.components(params)
    assert points.shape == (n, n_mixtures, d) and log_weights.shape == (n, n_mixtures)
    np.testing.assert_allclose(torch.logsumexp(log_weights, -1), 0.0, atol=1e-12)
    assert family.distribution(params).sample((2,)).shape == (2, n, d)


@pytest.mark.parametrize("name", ["normal", "normal_diag", "normal_full", "t", "t_diag", "t_full"])
def test_fast_log_prob_agrees_with_torch_distribution(name):
    family = make_distribution(name, 5)
    params, x = torch.randn(8, family.n_params), torch.randn(8, 5)
    np.testing.assert_allclose(family.log_prob(params, x), family.distribution(params).log_prob(x), rtol=1e-12)


def test_normal_full_matches_scipy():
    family = make_distribution("normal_full", 3)
    params = torch.randn(1, family.n_params)
    dist = family.distribution(params)
    x = np.random.default_rng(0).normal(size=(10, 3))
    cov = dist.covariance_matrix[0].numpy()
    expected = stats.multivariate_normal(dist.loc[0].numpy(), cov).logpdf(x)
    np.testing.assert_allclose(family.log_prob(params.expand(10, -1), torch.tensor(x)), expected, rtol=1e-10)


def test_mse_loss_is_mean_squared_error_and_density_is_unit_normal():
    mse, normal = make_distribution("mse", 4), make_distribution("normal", 4)
    params, x = torch.randn(7, 4), torch.randn(7, 4)
    np.testing.assert_allclose(mse.loss(params, x), ((x - params) ** 2).mean())
    np.testing.assert_allclose(mse.log_prob(params, x), normal.log_prob(params, x))
    # The mixture generalisation of the MSE loss reduces to it for one component.
    one = Mixture(mse, 1)
    np.testing.assert_allclose(one.loss(torch.cat([torch.zeros(7, 1), params], 1), x), mse.loss(params, x))


def test_mixture_log_prob_is_logsumexp_of_weighted_components():
    family = make_distribution("normal_diag", 3, n_mixtures=2)
    params, x = torch.randn(5, family.n_params), torch.randn(5, 3)
    logits, rest = params[:, :2], params[:, 2:].reshape(5, 2, 6)
    comp = make_distribution("normal_diag", 3)
    manual = [
        logsumexp(
            [comp.log_prob(rest[i, k], x[i]).item() + torch.log_softmax(logits[i], 0)[k].item() for k in range(2)]
        )
        for i in range(5)
    ]
    np.testing.assert_allclose(family.log_prob(params, x), manual, rtol=1e-10)
    np.testing.assert_allclose(family.log_prob(params, x), family.distribution(params).log_prob(x), rtol=1e-10)


def test_normal_mixture_point_estimate_is_the_mean():
    family = make_distribution("normal", 2, n_mixtures=2)
    params = torch.tensor([[0.0, math.log(3.0), 0.0, 0.0, 4.0, 8.0]])  # weights 1/4, 3/4
    np.testing.assert_allclose(family.point_estimate(params), [[3.0, 6.0]])


def test_t_mixture_point_estimate_is_the_best_component_mode():
    family = make_distribution("t", 2, n_mixtures=2)
    # Component 1 has most of the weight, so its mode has the higher mixture density.
    params = torch.tensor([[0.0, 3.0, 0.0, 0.0, 2.0, 5.0, 5.0, 2.0]])
    np.testing.assert_allclose(family.point_estimate(params), [[5.0, 5.0]])
    params = torch.tensor([[3.0, 0.0, 0.0, 0.0, 2.0, 5.0, 5.0, 2.0]])
    np.testing.assert_allclose(family.point_estimate(params), [[0.0, 0.0]])


def test_mixture_variance_law_of_total_variance():
    family = make_distribution("normal", 1, n_mixtures=2)
    params = torch.tensor([[0.0, 0.0, -1.0, 1.0]])  # equal weights, means -1 and 1, unit variances
    np.testing.assert_allclose(family.variance(params), [[2.0]])


def test_register_distribution_refuses_a_taken_name_unless_asked():
    from skprobae.distributions import _REGISTRY, register_distribution

    builtin = _REGISTRY["normal_diag"]
    with pytest.raises(ValueError, match=r"'normal_diag' is already registered \(a built-in family\); pass overwrite"):
        register_distribution("normal_diag", lambda n_features, image_shape=None: None)
    assert _REGISTRY["normal_diag"] is builtin
    with pytest.raises(TypeError, match="factory must be callable"):
        register_distribution("_test_family", "normal_diag")
    with pytest.raises(ValueError, match="non-empty string"):
        register_distribution("", builtin)
    try:
        register_distribution("_test_family", builtin)
        with pytest.raises(ValueError, match="by an earlier call"):
            register_distribution("_test_family", builtin)
        replacement = _REGISTRY["t_diag"]
        register_distribution("_test_family", replacement, overwrite=True)
        assert make_distribution("_test_family", 3).__class__ is make_distribution("t_diag", 3).__class__
    finally:
        _REGISTRY.pop("_test_family", None)
