import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from skprobae.flows import FlowAdapter, build_flow
from skprobae.nn import FlowPrior, GaussianPrior, StandardNormalPrior


def test_standard_normal_prior_is_the_base_space():
    prior = StandardNormalPrior(3)
    z = torch.randn(5, 3)
    u, log_det = prior.to_base(z)
    assert torch.equal(u, z) and torch.equal(prior.from_base(z), z) and log_det.dtype == torch.float64
    np.testing.assert_allclose(prior.log_prob(z).numpy(), multivariate_normal(np.zeros(3)).logpdf(z.double().numpy()))


def test_gaussian_prior_matches_scipy_and_inverts():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(3, 3))
    mean, covariance = rng.normal(size=3), A @ A.T + 0.1 * np.eye(3)
    prior = GaussianPrior.from_covariance(mean, covariance)
    z = torch.as_tensor(rng.normal(size=(6, 3)))
    reference = multivariate_normal(mean, covariance).logpdf(z.numpy())
    np.testing.assert_allclose(prior.log_prob(z).numpy(), reference, rtol=1e-10)
    torch.testing.assert_close(prior.from_base(prior.to_base(z)[0]), z)
    draws = prior.from_base(torch.as_tensor(rng.normal(size=(200_000, 3)))).numpy()
    np.testing.assert_allclose(np.cov(draws, rowvar=False), covariance, atol=0.03)


def test_gaussian_prior_samples_a_singular_covariance():
    covariance = np.array([[1.0, 1.0], [1.0, 1.0]])  # codes on a line
    draws = GaussianPrior.from_covariance(np.zeros(2), covariance).from_base(torch.randn(100, 2, dtype=torch.float64))
    torch.testing.assert_close(draws[:, 0], draws[:, 1])


def test_flow_prior_standardization_is_in_the_density():
    flow = build_flow("maf", 2, transforms=2, hidden_layer_sizes=(8,)).double()
    prior = FlowPrior(FlowAdapter(flow, 2))
    z = torch.randn(5, 2, dtype=torch.float64)
    standardized_density = prior.log_prob(z)
    loc, scale = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.5])
    prior.standardize(loc, scale)
    raw = loc.double() + scale.double() * z
    torch.testing.assert_close(prior.log_prob(raw), standardized_density - scale.double().log().sum())
    torch.testing.assert_close(prior.from_base(prior.to_base(raw)[0]), raw)


def test_flow_prior_jitters_only_in_training():
    module = FlowPrior(FlowAdapter(build_flow("maf", 2), 2), noise=0.5)
    z = torch.zeros(4, 2)
    module.eval()
    assert module.loss(z, z) == module.loss(z, z)
    module.train()
    torch.manual_seed(0)
    first = module.loss(z, z)
    assert not np.isclose(float(first.detach()), float(module.loss(z, z).detach()))


@pytest.mark.parametrize("prior", [StandardNormalPrior(2), GaussianPrior.from_covariance(np.zeros(2), np.eye(2))])
def test_priors_accept_leading_dims(prior):
    z = torch.randn(3, 4, 2, dtype=torch.float64)
    assert prior.log_prob(z).shape == (3, 4)
