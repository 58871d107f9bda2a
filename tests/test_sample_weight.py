"""``fit(X, sample_weight=...)``: a row of integer weight k counts as k copies of it, weight 0 leaves it out.

With full-batch training and no validation split, every step of a weighted
fit computes the same loss as a fit on the repeated rows (up to the order of
float sums), so the two fitted models agree to float tolerance; the
stochastic VAE (one posterior draw per row) is checked by what the weights
change instead.
"""

import numpy as np
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skprobae import AEF, PAE, VAE, ProbabilisticAutoencoder
from skprobae._base import weighted_quantile
from skprobae._testing import AUTOENCODERS, small

FULL_BATCH = {"validation_fraction": 0.0, "batch_size": 1024, "flow_batch_size": 1024, "random_state": 0}

# Deterministic training objectives (no noise draws per row): weighted and repeated fits take the same steps.
DETERMINISTIC = [
    (ProbabilisticAutoencoder, {"distribution": "normal_diag"}),
    (ProbabilisticAutoencoder, {"distribution": "mse"}),
    (ProbabilisticAutoencoder, {"distribution": "normal", "n_mixtures": 2}),
    # latent_noise=0: the flow's jitter is one draw per row; few flow epochs: a flow fitted to ~90 codes
    # for long amplifies float rounding chaotically.
    # mask_fraction=0: hidden entries are drawn per row and batch, differently for repeated rows.
    (PAE, {"latent_noise": 0.0, "flow_max_epochs": 10, "mask_fraction": 0.0}),
    (AEF, {"partition": "random"}),  # the exact partition (linear's proposal scale is chosen on a row subsample)
]


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(40, 2))
    X = latent @ rng.normal(size=(2, 5)) + 0.3 * rng.normal(size=(40, 5))
    weight = rng.integers(0, 4, size=40)  # zeros included: rows left out
    return X, weight


def _fit_pair(cls, params, X, weight):
    # contamination * total weight (70) is not a whole number: the quantile falls inside a step of the weighted
    # distribution function, not on its edge, where the rescaled weights' rounding would pick either side
    settings = {**FULL_BATCH, "n_components": 2, "max_epochs": 30, "contamination": 0.13, **params}
    settings = {k: v for k, v in settings.items() if k in cls().get_params()}
    weighted = cls(**settings).fit(X, sample_weight=weight)
    repeated = cls(**settings).fit(np.repeat(X, weight, axis=0))
    return weighted, repeated


@pytest.mark.parametrize(
    ("cls", "params"), DETERMINISTIC, ids=[f"{c.__name__}-{'-'.join(map(str, p.values()))}" for c, p in DETERMINISTIC]
)
def test_integer_weights_fit_the_model_of_repeated_rows(table, cls, params):
    X, weight = table
    weighted, repeated = _fit_pair(cls, params, X, weight)
    # float32 training over 30 full-batch steps: the sums run in another order, hence the tolerance
    np.testing.assert_allclose(weighted.score_samples(X), repeated.score_samples(X), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(weighted.transform(X), repeated.transform(X), rtol=1e-4, atol=1e-4)
    assert weighted.n_samples_seen_ == len(X)
    # offset_ is the weighted contamination quantile (inverse of the weighted distribution function): of the
    # repeated rows' scores, the same quantile
    training_scores = repeated.score_samples(np.repeat(X, weight, axis=0))
    expected = np.quantile(training_scores, weighted.contamination, method="inverted_cdf")
    assert weighted.offset_ == pytest.approx(expected, abs=1e-4)


def test_weighted_fitted_statistics_match_repeated_rows(table):
    X, weight = table
    X = X.copy()
    X[3, 1] = X[10, 4] = np.nan  # missing entries: weighted means over the observed entries
    # one fit: the statistics of every row (refit_on_inliers would take them over the first fit's inliers)
    params = {"latent_noise": 0.0, "flow_max_epochs": 5, "refit_on_inliers": False, "mask_fraction": 0.0}
    weighted, repeated = _fit_pair(PAE, params, X, weight)
    for name in ("feature_loc_", "feature_scale_", "feature_mean_", "feature_bounds_"):
        np.testing.assert_allclose(getattr(weighted, name), getattr(repeated, name), rtol=1e-12, err_msg=name)
    for name in ("latent_mean_", "latent_scale_", "sigma_"):
        np.testing.assert_allclose(getattr(weighted, name), getattr(repeated, name), rtol=1e-4, err_msg=name)
    observed = ~np.isnan(X[:, 1])
    assert weighted.feature_loc_[1] == pytest.approx(np.average(X[observed, 1], weights=weight[observed]))


def test_auto_n_components_reads_the_weighted_spectrum():
    # Two groups of rows: one spans 1 direction, the other 3 orthogonal ones of equal variance; the weights
    # decide which dominates.
    rng = np.random.default_rng(1)
    directions, _ = np.linalg.qr(rng.normal(size=(6, 3)))
    line = rng.normal(size=(100, 1)) * directions[:, :1].T
    spread = rng.normal(size=(100, 3)) @ directions.T
    X = np.vstack([line, spread]) + 0.01 * rng.normal(size=(200, 6))
    on_line = np.r_[np.ones(100), np.zeros(100)]
    model = ProbabilisticAutoencoder(max_epochs=1, random_state=0)
    assert model.fit(X, sample_weight=on_line).n_components_ == 1
    assert model.fit(X, sample_weight=1 - on_line).n_components_ == 3
    repeated = ProbabilisticAutoencoder(max_epochs=1, random_state=0).fit(np.repeat(X, 1 + 2 * on_line.astype(int), 0))
    assert model.fit(X, sample_weight=1 + 2 * on_line).n_components_ == repeated.n_components_


def test_only_the_ratios_of_weights_matter_in_fit(table):
    X, weight = table
    settings = {**FULL_BATCH, "n_components": 2, "max_epochs": 10}
    del settings["flow_batch_size"]
    a = ProbabilisticAutoencoder(**settings).fit(X, sample_weight=weight)
    b = ProbabilisticAutoencoder(**settings).fit(X, sample_weight=3.5 * weight)
    np.testing.assert_allclose(a.score_samples(X), b.score_samples(X), rtol=1e-5)


@pytest.mark.parametrize("cls", AUTOENCODERS, ids=lambda cls: cls.__name__)
def test_unit_weights_fit_the_unweighted_model(cls, table):
    X, _ = table
    # PAE fits once: the unweighted offset_ interpolates between two scores, the weighted one is a score, so
    # refit_on_inliers could trim one row more or fewer
    a, b = (small(cls, **({"refit_on_inliers": False} if cls is PAE else {})) for _ in range(2))
    np.testing.assert_allclose(
        a.fit(X).score_samples(X), b.fit(X, sample_weight=np.ones(len(X))).score_samples(X), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("cls", AUTOENCODERS, ids=lambda cls: cls.__name__)
def test_rows_of_weight_zero_do_not_shape_the_model(cls):
    # A far-away cluster of weight 0 is an outlier to the fitted model; with weight 1 it is modelled.
    rng = np.random.default_rng(2)
    inliers = rng.normal(size=(150, 4))
    cluster = rng.normal(size=(150, 4)) * 0.2 + 6.0
    X = np.vstack([inliers, cluster])
    left_out = np.r_[np.ones(150), np.zeros(150)]
    params = {"max_epochs": 40, "flow_max_epochs": 40, "random_state": 0, "n_components": 2}
    params = {k: v for k, v in params.items() if k in cls().get_params()}
    weighted = cls(**params).fit(X, sample_weight=left_out)
    unweighted = cls(**params).fit(X)
    gap_weighted = weighted.score_samples(inliers).mean() - weighted.score_samples(cluster).mean()
    gap_unweighted = unweighted.score_samples(inliers).mean() - unweighted.score_samples(cluster).mean()
    assert gap_weighted > gap_unweighted + 5.0
    assert (weighted.predict(cluster) == -1).mean() > 0.95


def test_partial_fit_weights_rows_as_given():
    rng = np.random.default_rng(3)
    first, second = rng.normal(size=(50, 4)), rng.normal(size=(50, 4)) + 1.0
    w_first, w_second = np.full(50, 2.0), np.full(50, 0.5)
    model = PAE(n_components=2, random_state=0)
    model.partial_fit(first, sample_weight=w_first).partial_fit(second, sample_weight=w_second)
    both, weights = np.vstack([first, second]), np.r_[w_first, w_second]
    np.testing.assert_allclose(model.feature_mean_, np.average(both, axis=0, weights=weights))
    assert model.n_samples_seen_ == 100


def test_sample_weight_through_a_pipeline(table):
    X, weight = table
    pipeline = make_pipeline(StandardScaler(), PAE(n_components=2, max_epochs=3, flow_max_epochs=3, random_state=0))
    pipeline.fit(X, pae__sample_weight=weight)
    assert np.isfinite(pipeline.score_samples(X)).all()


@pytest.mark.parametrize(
    ("weight", "match"),
    [
        (-np.ones(40), "sample_weight.*[Nn]egative"),
        (np.ones(39), r"sample_weight.*\(39,\).*\(40,\)"),
        (np.r_[np.nan, np.ones(39)], "sample_weight.*NaN"),
        (np.zeros(40), "sample_weight.*zero"),
        (np.ones((40, 2)), "sample_weight.*1D"),
    ],
)
def test_bad_sample_weight_gets_a_clear_error(table, weight, match):
    X, _ = table
    with pytest.raises(ValueError, match=match):
        ProbabilisticAutoencoder(max_epochs=1).fit(X, sample_weight=weight)


def test_training_rows_without_weight_are_refused(table):
    X, _ = table
    model = ProbabilisticAutoencoder(max_epochs=1, validation_fraction=0.5, random_state=0)
    train = model._split(len(X), np.random.RandomState(0)).train  # the rows this seed trains on
    weight = np.ones(len(X))
    weight[train] = 0.0
    with pytest.raises(ValueError, match=r"every training row has sample_weight 0.*validation_fraction"):
        model.fit(X, sample_weight=weight)


def test_vae_weights_shift_the_fit_towards_heavy_rows():
    # The VAE's objective draws one posterior sample per row, so weighted and repeated fits differ by
    # those draws; what the weights must do is make heavily weighted rows better explained.
    rng = np.random.default_rng(4)
    X = np.vstack([rng.normal(size=(100, 4)), rng.normal(size=(100, 4)) * 0.3 + 3.0])
    heavy = np.r_[np.ones(100), np.full(100, 20.0)]
    params = {"n_components": 2, "max_epochs": 30, "random_state": 0}
    light_fit = VAE(**params).fit(X, sample_weight=heavy[::-1])
    heavy_fit = VAE(**params).fit(X, sample_weight=heavy)
    assert heavy_fit.score_samples(X[100:]).mean() > light_fit.score_samples(X[100:]).mean() + 1.0


def test_weighted_quantile_is_the_inverse_of_the_weighted_distribution_function():
    rng = np.random.default_rng(1)
    values = rng.normal(size=57)
    values[[3, 9]] = values[20]  # ties
    weight = rng.integers(0, 4, size=57)
    quantiles = [0.01, 0.1, 0.25, 0.5, 0.75, 0.999]
    # integer weights: the unweighted quantiles of the repeated values, exactly (no arithmetic on the values)
    expected = np.quantile(np.repeat(values, weight), quantiles, method="inverted_cdf")
    np.testing.assert_array_equal(weighted_quantile(values, quantiles, weight), expected)
    # real weights: NumPy 2's weighted quantile, where it exists (the helper stands in for it under NumPy 1)
    real_weight = rng.uniform(0, 2, size=57)
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        expected = np.quantile(values, quantiles, weights=real_weight, method="inverted_cdf")
        np.testing.assert_array_equal(weighted_quantile(values, quantiles, real_weight), expected)
