import copy

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

from skprobae import VAE

FAST = {"standardize": False, "n_components": 4, "hidden_layer_sizes": (32,), "max_epochs": 5, "random_state": 0}


@pytest.fixture(scope="module")
def digits01():
    return load_digits().data[:600] / 16


@pytest.fixture(scope="module")
def ppca_data():
    """A linear-Gaussian model: x = W z + mu + unit noise, z ~ N(0, I_2)."""
    rng = np.random.default_rng(0)
    W, mu = 2 * rng.normal(size=(5, 2)), rng.normal(size=5)
    X = rng.normal(size=(4000, 2)) @ W.T + mu + rng.normal(size=(4000, 5))
    return X[:3000], X[3000:]


def test_iwae_approaches_the_exact_likelihood_of_a_linear_vae(ppca_data):
    X_train, X_test = ppca_data
    vae = VAE(
        n_components=2,
        hidden_layer_sizes=(),  # linear encoder and decoder: the VAE is probabilistic PCA
        distribution="normal",
        standardize=False,  # probabilistic PCA's noise is isotropic in the units of X
        learning_rate=1e-2,
        max_epochs=300,
        n_iter_no_change=20,
        random_state=0,
    ).fit(X_train)
    # Its decoder x = W z + b + unit noise, z ~ N(0, I), has the exact marginal N(b, W W^T + I): the reference
    # for the importance-sampled scores of this fitted model, however well it converged.
    decoder = vae.net_.module_.decoder[0]
    W, b = decoder.weight.detach().double().numpy(), decoder.bias.detach().double().numpy()
    exact = multivariate_normal(b, W @ W.T + np.eye(len(b))).logpdf(X_test)
    gaps, rms = {}, {}
    for n_samples in (1, 10, 1000):
        error = exact - vae.set_params(n_importance_samples=n_samples).score_samples(X_test)
        gaps[n_samples], rms[n_samples] = float(np.mean(error)), float(np.sqrt(np.mean(error**2)))
    # The per-row error shrinks with S; the draws are shared by all rows, so the mean gap at small S is one draw's
    # error, of either sign. Over seeds 0-4, rms at S=1000 was 0.005-0.038 and the mean gap 0.000-0.033.
    assert rms[1] > rms[10] > rms[1000]
    assert abs(gaps[1000]) < 0.05 and rms[1000] < 0.05
    # and the fit is near probabilistic PCA's maximum likelihood (0.01-0.11 nats per row below it over seeds 0-4)
    assert abs(np.mean(PCA(n_components=2).fit(X_train).score_samples(X_test) - exact)) < 0.15


def test_history_records_elbo_terms_and_capacity_holds_kl(digits01):
    free = VAE(**{**FAST, "max_epochs": 20}).fit(digits01)
    for key in ("train_reconstruction", "train_kl", "valid_reconstruction", "valid_kl"):
        assert np.isfinite(free.history_[:, key]).all()
    np.testing.assert_allclose(
        free.history_[-1, "train_loss"],
        free.history_[-1, "train_reconstruction"] + free.history_[-1, "train_kl"],
        rtol=1e-5,  # float32 epoch sums
    )
    target = 3.0
    held = VAE(**{**FAST, "max_epochs": 40, "beta": 20.0, "capacity": target, "n_iter_no_change": None})
    held.fit(digits01)
    assert abs(held.history_[-1, "train_kl"] - target) < 0.5
    assert free.history_[-1, "train_kl"] > target + 2  # unconstrained, the KL is far from it


def test_scores_are_deterministic_and_finite(digits01):
    vae = VAE(**FAST).fit(digits01)
    first = vae.score_samples(digits01[:50])
    np.testing.assert_array_equal(first, vae.score_samples(digits01[:50]))
    # Row-independent: another call's composition moves a float32 network output by an ulp at most.
    np.testing.assert_allclose(first[10:20], vae.score_samples(digits01[10:20]), rtol=1e-6)
    assert first.dtype == np.float64 and np.isfinite(first).all()


def test_iwae_is_above_the_elbo_on_average(digits01):
    vae = VAE(**{**FAST, "max_epochs": 15}).fit(digits01)
    one = copy.deepcopy(vae).set_params(n_importance_samples=1).score(digits01)
    many = vae.set_params(n_importance_samples=200).score(digits01)
    assert many > one


@pytest.mark.parametrize(
    "flows", [{"posterior_flow": "iaf"}, {"prior_flow": "maf"}, {"posterior_flow": "iaf", "prior_flow": "maf"}]
)
def test_flow_posterior_and_prior(digits01, flows):
    vae = VAE(**FAST, **flows, flow_transforms=2, flow_hidden_layer_sizes=(16,), n_importance_samples=32)
    vae.fit(digits01)
    assert np.isfinite(vae.score_samples(digits01[:30])).all()
    assert vae.sample(6, random_state=0).shape == (6, 64)
    np.testing.assert_array_equal(vae.sample(6, random_state=0), vae.sample(6, random_state=0))
    assert vae.transform(digits01[:3]).shape == (3, 4)


def test_methods_shapes(digits01):
    vae = VAE(**FAST).fit(digits01)
    point, std = vae.reconstruct(digits01[:5], return_std=True)
    assert point.shape == std.shape == (5, 64) and (std > 0).all()
    draws = vae.sample_reconstructions(digits01[:3], n_samples=7, random_state=0)
    assert draws.shape == (3, 7, 64)
    np.testing.assert_allclose(vae.inverse_transform(vae.transform(digits01[:5])), point)
    with pytest.raises(ValueError, match="n_components=4"):
        vae.inverse_transform(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="temperature"):
        vae.sample(2, temperature=0)


def test_conv_vae_on_digit_images(digits01):
    vae = VAE(**FAST, architecture="conv", image_shape=(8, 8), n_importance_samples=16).fit(digits01[:200])
    assert np.isfinite(vae.score_samples(digits01[:20])).all()


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"beta": -1.0}, "beta"),
        ({"capacity": -0.5}, "capacity"),
        ({"posterior_flow": "nvp"}, "posterior_flow"),
        ({"prior_flow": "realnvp"}, "prior_flow"),
        ({"n_importance_samples": 0}, "n_importance_samples"),
    ],
)
def test_bad_parameters(digits01, params, match):
    with pytest.raises(ValueError, match=match):
        VAE(**{**FAST, **params}).fit(digits01[:20])


def test_custom_encoder_emits_means_and_scales():
    import torch

    X = load_digits().data[:200] / 16
    model = VAE(
        encoder=torch.nn.Linear, decoder=torch.nn.Linear, distribution="matrix_normal_diag", image_shape=(8, 8), **FAST
    )
    model.fit(X)
    assert model.net_.module_.encoder.out_features == 2 * FAST["n_components"]
    assert np.isfinite(model.score_samples(X[:20])).all()
    with pytest.raises(ValueError, match=r"must return \(2, 8\): 8 \(n_components=4, means and scales\)"):
        VAE(encoder=lambda n_in, n_out: torch.nn.Linear(n_in, n_out - 1), **FAST).fit(X)
