"""PAE posterior inference: impute, denoise, sample_posterior."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from skprobae import PAE


@pytest.fixture(scope="module")
def ppca_pae():
    """A linear PAE on data from a 2-D linear-Gaussian model in 5 dimensions."""
    rng = np.random.default_rng(0)
    W, mu = 2 * rng.normal(size=(5, 2)), rng.normal(size=5)
    X = rng.normal(size=(2600, 2)) @ W.T + mu + 0.5 * rng.normal(size=(2600, 5))
    pae = PAE(
        n_components=2,
        mask_fraction=0.0,  # the paper's autoencoder: encoder and decoder see the same complete rows
        hidden_layer_sizes=(),  # linear encoder and decoder
        max_epochs=100,
        flow_max_epochs=100,
        flow_hidden_layer_sizes=(32,),
        learning_rate=1e-2,
        random_state=0,
    ).fit(X[:2500])
    return pae, X[:2500], X[2500:]


@pytest.fixture(scope="module")
def digits_pae():
    X = load_digits().data / 16
    order = np.random.default_rng(0).permutation(len(X))
    pae = PAE(
        n_components=8,
        hidden_layer_sizes=(64,),
        max_epochs=60,
        flow_max_epochs=60,
        flow_hidden_layer_sizes=(32,),
        random_state=0,
    ).fit(X[order[:1500]])
    return pae, X[order[1500:1600]]


def model_conditional(pae, X_train, observed, missing, X_obs):
    """The exact conditional Gaussian of the PAE's own linear-Gaussian model.

    Linear decoder g(z) = A z + c, codes ~ N(m, S) (the flow's target), noise N(0, diag(sigma_**2)).
    """
    c = pae.inverse_transform(np.zeros((1, 2)))[0]
    A = (pae.inverse_transform(np.eye(2)) - c).T
    codes = pae.transform(X_train)
    cov = A @ np.cov(codes.T) @ A.T + np.diag(pae.sigma_**2)
    mean = A @ codes.mean(0) + c
    gain = np.linalg.solve(cov[np.ix_(observed, observed)], cov[np.ix_(observed, missing)])
    cond_mean = mean[missing] + (X_obs - mean[observed]) @ gain
    cond_cov = cov[np.ix_(missing, missing)] - cov[np.ix_(missing, observed)] @ gain
    return cond_mean, np.sqrt(np.diag(cond_cov))


def test_imputation_matches_the_exact_conditional_gaussian(ppca_pae):
    pae, X_train, X_test = ppca_pae
    observed, missing = [0, 2, 4], [1, 3]
    X = X_test.copy()
    X[:, missing] = np.nan
    filled, std = pae.impute(X, return_std=True, n_samples=2000)
    exact_mean, exact_std = model_conditional(pae, X_train, observed, missing, X_test[:, observed])
    # Monte-Carlo error with 2000 draws: ~0.02 std on the mean, ~2% on the std. The flow only
    # approximates the Gaussian code distribution, more loosely in its tails, so single rows may
    # be off by more: bound the average tightly and the worst row loosely.
    z = np.abs(filled[:, missing] - exact_mean) / exact_std
    assert z.mean() < 0.1 and z.max() < 0.5
    ratio = std[:, missing] / exact_std
    assert abs(ratio.mean() - 1) < 0.05 and 0.75 < ratio.min() and ratio.max() < 1.25
    np.testing.assert_array_equal(filled[:, observed], X_test[:, observed])
    assert (std[:, observed] == 0).all()


def test_ninety_percent_intervals_cover_held_out_digits(digits_pae):
    pae, X = digits_pae
    missing = np.random.default_rng(1).random(X.shape) < 0.2
    X_missing = np.where(missing, np.nan, X)
    filled, std = pae.impute(X_missing, return_std=True)
    coverage = np.mean(np.abs(filled - X)[missing] <= 1.645 * std[missing])
    assert 0.8 <= coverage <= 0.97, coverage
    mean_fill = np.broadcast_to(pae.feature_mean_, X.shape)[missing]
    assert np.sqrt(np.mean((filled[missing] - X[missing]) ** 2)) < np.sqrt(np.mean((mean_fill - X[missing]) ** 2))


def test_denoise_removes_noise_with_calibrated_uncertainty(digits_pae):
    pae, X = digits_pae
    noisy = X + 0.2 * np.random.default_rng(2).normal(size=X.shape)
    clean, std = pae.denoise(noisy, noise_std=0.2, return_std=True)
    assert np.sqrt(np.mean((clean - X) ** 2)) < 0.8 * 0.2
    assert 0.8 <= np.mean(np.abs(clean - X) <= 1.645 * std) <= 0.97
    per_feature = pae.denoise(noisy[:5], noise_std=np.full(64, 0.2))
    np.testing.assert_allclose(per_feature, clean[:5])


def test_rows_are_independent_and_calls_repeatable(digits_pae):
    pae, X = digits_pae
    X_missing = np.where(np.random.default_rng(3).random(X.shape) < 0.3, np.nan, X)
    filled = pae.impute(X_missing[:30], n_samples=20)
    np.testing.assert_allclose(pae.impute(X_missing[10:20], n_samples=20), filled[10:20], atol=1e-5)
    np.testing.assert_array_equal(pae.impute(X_missing[:30], n_samples=20), filled)


def test_complete_and_empty_rows(digits_pae):
    pae, X = digits_pae
    complete, std = pae.impute(X[:5], return_std=True)
    np.testing.assert_array_equal(complete, X[:5])
    assert (std == 0).all()
    # a row with nothing observed falls back to the prior: finite, within the data range, and spread
    empty, empty_std = pae.impute(np.full((2, 64), np.nan), return_std=True)
    assert np.isfinite(empty).all() and (empty_std > 0).all()
    np.testing.assert_allclose(empty[0], empty[1])


def test_sample_posterior_keeps_observed_entries(digits_pae):
    pae, X = digits_pae
    X_missing = X[:4].copy()
    X_missing[:, :32] = np.nan  # top half missing: inpainting
    draws = pae.sample_posterior(X_missing, n_samples=7, random_state=0)
    assert draws.shape == (4, 7, 64)
    np.testing.assert_array_equal(draws[:, :, 32:], np.broadcast_to(X[:4, None, 32:], (4, 7, 32)))
    assert draws[:, :, :32].std(axis=1).mean() > 0
    np.testing.assert_array_equal(draws, pae.sample_posterior(X_missing, n_samples=7, random_state=0))
    noisy = pae.sample_posterior(X[:4], n_samples=3, noise_std=0.1, random_state=0)
    assert not np.array_equal(noisy[:, 0], X[:4])


@pytest.mark.parametrize(
    ("method", "kwargs", "X_kind", "match"),
    [
        ("denoise", {"noise_std": -0.1}, "digits", "noise_std must be finite and >= 0"),
        ("denoise", {"noise_std": np.ones(3)}, "digits", r"shape \(64,\)"),
        ("denoise", {"noise_std": 0.1}, "nan", "denoise needs complete rows"),
        ("impute", {}, "narrow", "64 features"),
        ("impute", {"n_restarts": 0}, "nan", "n_restarts"),
        ("sample_posterior", {"noise_std": np.nan}, "digits", "noise_std"),
    ],
)
def test_bad_input(digits_pae, method, kwargs, X_kind, match):
    pae, X = digits_pae
    X = {"digits": X[:3], "nan": np.where(np.eye(3, 64) > 0, np.nan, X[:3]), "narrow": X[:3, :10]}[X_kind]
    with pytest.raises(ValueError, match=match):
        getattr(pae, method)(X, **kwargs)


def test_ill_conditioned_laplace_precision_gives_finite_draws():
    # shuttle's flow tails gave Jacobians near 1e14: I + J^T W J then rounds to a rank-1
    # matrix and a plain Cholesky factorisation fails
    import torch

    from skprobae.models._posterior import PosteriorSettings, posterior_draws

    K, d, n = 3, 4, 5
    direction = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) / 14**0.5

    def decode(u):
        return 1e14 * (u @ direction)[..., None].expand(*u.shape[:-1], d)

    x = torch.zeros(n, d, dtype=torch.float64)
    observed = torch.ones(n, d, dtype=torch.bool)
    observed[:, -1] = False
    hessian = torch.eye(K, dtype=torch.float64) + 1e34 * 3 * torch.outer(direction, direction)
    assert (torch.linalg.cholesky_ex(hessian).info != 0).item()  # the case being tested
    generator = torch.Generator().manual_seed(0)
    posterior = posterior_draws(
        decode,
        torch.zeros(n, K, dtype=torch.float64),
        x,
        observed,
        sigma=torch.full((d,), 1e-3, dtype=torch.float64),
        noise_std=torch.zeros(d, dtype=torch.float64),
        restart_noise=torch.randn(2, K, generator=generator, dtype=torch.float64),
        draw_uniform=torch.rand(20, generator=generator, dtype=torch.float64),
        draw_noise=torch.randn(20, K, generator=generator, dtype=torch.float64),
        settings=PosteriorSettings(n_restarts=3, n_steps=5, n_samples=20),
    )
    mean, std = posterior.moments()
    assert torch.isfinite(mean).all() and torch.isfinite(std).all()


def test_a_row_with_no_usable_posterior_mode_warns_with_the_count(digits_pae):
    pae, X = digits_pae
    X_missing = X[:5].copy()
    X_missing[:, :32] = np.nan
    X_missing[2, 40] = 1e200  # every MAP start overflows on this row: no mode, no Laplace factor
    with pytest.warns(RuntimeWarning, match=r"no posterior mode could be found for 1 row\(s\)"):
        filled = pae.impute(X_missing)
    assert np.isfinite(filled).all()


@pytest.fixture(scope="module")
def mixed_table():
    import pandas as pd

    rng = np.random.default_rng(3)
    z = rng.normal(size=800)
    return pd.DataFrame(
        {
            "a": z + 0.1 * rng.normal(size=800),
            "b": 2 * z + 0.1 * rng.normal(size=800),
            "level": pd.Categorical(np.where(z > 0.5, "high", np.where(z < -0.5, "low", "mid"))),
            "positive": (z > 0).astype(object),
        }
    )


@pytest.fixture(scope="module")
def mixed_pae(mixed_table):
    return PAE(n_components=1, max_epochs=60, flow_max_epochs=30, random_state=0).fit(mixed_table.iloc[:600])


def test_impute_fills_categories_from_the_posterior(mixed_pae, mixed_table):
    truth = mixed_table.iloc[600:].reset_index(drop=True)
    holes = truth.copy()
    holes.loc[:99, "level"] = np.nan
    holes.loc[50:149, "positive"] = None
    holes.loc[150:, "a"] = np.nan
    settings = {"n_samples": 30, "n_steps": 50}
    filled, std = mixed_pae.impute(holes, return_std=True, **settings)
    assert list(filled.dtypes) == list(mixed_table.dtypes) and filled.notna().all().all()
    assert (filled.iloc[100:, 2] == truth.iloc[100:, 2]).all()  # observed categories are kept
    # the continuous entries a row still has tell its category: far above the majority class
    majority = truth["level"][:100].value_counts(normalize=True).max()
    assert (filled["level"][:100] == truth["level"][:100]).mean() > max(0.75, majority + 0.2)
    assert (filled["positive"][50:150] == truth["positive"][50:150]).mean() > 0.75
    assert np.isnan(std[:100, 2]).all() and (std[100:, 2] == 0).all()  # a filled label has no std
    assert (std[150:, 0] > 0).all() and (std[:150, 0] == 0).all()
    probabilities = mixed_pae.impute_category_proba(holes, **settings)
    assert [p.shape for p in probabilities] == [(200, 3), (200, 2)]
    np.testing.assert_allclose([p.sum(axis=1) for p in probabilities], 1.0, rtol=1e-9)
    codes = filled["level"].cat.codes.to_numpy()
    assert (probabilities[0].argmax(axis=1) == codes).all()  # impute's category is the most probable one
    assert (probabilities[0][np.arange(100, 200), codes[100:]] == 1).all()  # observed: probability 1
    assert 0.02 < probabilities[0][:100].max(axis=1).min()


def test_posterior_draws_and_noise_with_categorical_columns(mixed_pae, mixed_table):
    holes = mixed_table.iloc[600:610].copy()
    holes.iloc[:5, 2] = np.nan
    draws = mixed_pae.sample_posterior(holes, n_samples=20, random_state=0, n_steps=30)
    assert draws.shape == (10, 20, 4)
    assert set(np.unique(draws[:, :, 2])) <= {0.0, 1.0, 2.0}
    np.testing.assert_array_equal(
        draws[5:, :, 2], np.broadcast_to(holes.iloc[5:, 2].cat.codes.to_numpy()[:, None], (5, 20))
    )
    clean = mixed_pae.denoise(mixed_table.iloc[600:605], noise_std=[0.1, 0.1, 0.0, 0.0], n_steps=30)
    assert list(clean["level"]) == list(mixed_table["level"].iloc[600:605])
    with pytest.raises(ValueError, match=r"noise_std must be 0 on the categorical columns \[2, 3\]"):
        mixed_pae.denoise(mixed_table.iloc[600:605], noise_std=0.1)
