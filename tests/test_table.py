"""Tables through the estimators: categorical columns, missing values, internal standardization, n_components."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from skprobae import AEF, PAE, VAE, ProbabilisticAutoencoder
from skprobae._table import fit_standardization

FAST = {"max_epochs": 3, "random_state": 0, "hidden_layer_sizes": (16,)}


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    n = 120
    size = rng.normal(size=n)
    return pd.DataFrame(
        {
            "size": 10 + 3 * size,
            "colour": pd.Categorical(rng.choice(["red", "green", "blue"], n), categories=["blue", "green", "red"]),
            "weight": 50 * size + rng.normal(size=n),
            "island": rng.choice(["a", "b"], n).astype(object),
            "male": rng.random(n) > 0.5,
        }
    )


@pytest.mark.parametrize("cls", [ProbabilisticAutoencoder, PAE, VAE])
def test_categorical_labels_round_trip(cls, table):
    model = cls(**FAST).fit(table)
    np.testing.assert_array_equal(model.is_categorical_, [False, True, False, True, True])
    assert [list(c) for c in model.categories_] == [["blue", "green", "red"], ["a", "b"], [False, True]]
    for out in (
        model.reconstruct(table),
        model.sample(7, random_state=0),
        model.inverse_transform(model.transform(table)),
    ):
        assert list(out.columns) == list(table.columns)
        assert out["colour"].dtype == table["colour"].dtype  # same categories, same order
        assert out["island"].dtype == table["island"].dtype and set(out["island"]) <= {"a", "b"}
        assert out["male"].dtype == bool and out["size"].dtype == np.float64
    probabilities = model.predict_category_proba(table.iloc[:5])
    assert [p.shape for p in probabilities] == [(5, 3), (5, 2), (5, 2)]
    np.testing.assert_allclose([p.sum(axis=1) for p in probabilities], 1.0, rtol=1e-6)
    # the reconstruction's category is the most probable one
    assert (model.reconstruct(table.iloc[:5])["colour"].cat.codes.to_numpy() == probabilities[0].argmax(1)).all()
    scores = model.score_samples(table)
    assert scores.dtype == np.float64 and np.isfinite(scores).all()


def test_categorical_features_by_index_name_and_mask_agree(table):
    numeric = table.assign(colour=table["colour"].cat.codes, island=(table["island"] == "b").astype(int))
    numeric = numeric.assign(male=numeric["male"].astype(int))
    by_name = ProbabilisticAutoencoder(categorical_features=["colour", "island", "male"], **FAST).fit(numeric)
    by_index = ProbabilisticAutoencoder(categorical_features=[1, 3, 4], **FAST).fit(numeric.to_numpy(float))
    by_mask = ProbabilisticAutoencoder(categorical_features=np.array([0, 1, 0, 1, 1], bool), **FAST).fit(
        numeric.to_numpy(float)
    )
    for model in (by_name, by_index, by_mask):
        np.testing.assert_array_equal(model.is_categorical_, [False, True, False, True, True])
    np.testing.assert_allclose(
        by_index.score_samples(numeric.to_numpy(float)), by_mask.score_samples(numeric.to_numpy(float)), rtol=1e-6
    )
    # arrays come back as arrays, with the category values in their columns
    out = by_index.reconstruct(numeric.to_numpy(float))
    assert isinstance(out, np.ndarray) and set(np.unique(out[:, 1])) <= {0.0, 1.0, 2.0}


def test_bad_table_input_names_the_column(table):
    model = ProbabilisticAutoencoder(**FAST).fit(table)
    unseen = table.assign(island=table["island"].where(table.index > 0, "z"))
    with pytest.raises(ValueError, match=r"column 'island' has categories not seen in fit \('z'"):
        model.score_samples(unseen)
    with pytest.raises(ValueError, match="column 'colour' was categorical in fit but is numeric"):
        model.score_samples(table.assign(colour=table["colour"].cat.codes.astype(float)))
    with pytest.raises(ValueError, match="column 'weight' has no observed value"):
        ProbabilisticAutoencoder(**FAST).fit(table.assign(weight=np.nan))
    empty_row = table.astype({"male": object})
    empty_row.loc[3, :] = np.nan
    with pytest.raises(ValueError, match=r"every entry missing.*row 3"):
        model.score_samples(empty_row)
    with pytest.raises(ValueError, match="categorical_features names column 'height', which X does not have"):
        ProbabilisticAutoencoder(categorical_features=["height"], **FAST).fit(table)
    with pytest.raises(ValueError, match=r"categorical columns \(colour, island, male\) are not supported with AEF"):
        AEF(max_epochs=1).fit(table)


def test_missing_values_are_left_out_of_the_likelihood():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 5))
    X_missing = X.copy()
    X_missing[rng.random(X.shape) < 0.2] = np.nan
    model = ProbabilisticAutoencoder(distribution="normal_diag", **FAST).fit(X_missing)
    assert model.missing_indicators_ and model.__sklearn_tags__().input_tags.allow_nan
    scores = model.score_samples(X_missing[:20])
    mean, std = model.reconstruct(X_missing[:20], return_std=True)
    observed = ~np.isnan(X_missing[:20])
    direct = np.where(observed, stats.norm.logpdf(X_missing[:20], mean, std), 0.0).sum(axis=1)
    np.testing.assert_allclose(scores, direct, rtol=1e-5)
    # a row's score does not depend on the other rows of the call
    np.testing.assert_allclose(model.score_samples(X_missing[5:6]), scores[5:6], rtol=1e-6)


def test_complete_rows_score_as_before_under_a_model_fitted_on_complete_data():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 4))
    model = ProbabilisticAutoencoder(**FAST).fit(X)
    assert not model.missing_indicators_
    mixed = np.vstack([X[:10], np.where(rng.random((10, 4)) < 0.5, np.nan, X[10:20])])
    mixed[10:, 0] = X[10:20, 0]  # keep one entry per row
    np.testing.assert_allclose(model.score_samples(mixed)[:10], model.score_samples(X[:10]), rtol=1e-6)


@pytest.mark.parametrize(
    "cls, params",
    [(PAE, {"flow_max_epochs": 2}), (VAE, {}), (ProbabilisticAutoencoder, {"distribution": "t_full"})],
)
def test_every_table_estimator_fits_and_scores_rows_with_missing_entries(cls, params):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(150, 6))
    X[rng.random(X.shape) < 0.3] = np.nan
    X[:, 0] = np.where(np.isnan(X).all(axis=1), 0.0, X[:, 0])
    model = cls(**FAST, **params).fit(X)
    scores = model.score_samples(X)
    assert np.isfinite(scores).all()
    assert model.predict(X).shape == (150,)


def test_aef_and_families_without_a_marginal_refuse_missing_values_clearly():
    X = np.random.default_rng(3).normal(size=(60, 4))
    X[0, 1] = np.nan
    with pytest.raises(ValueError, match="AEF's likelihood is a bijection"):
        AEF(max_epochs=1).fit(X)
    with pytest.raises(ValueError, match="distribution='maf' has no closed-form marginal"):
        ProbabilisticAutoencoder(distribution="maf", max_epochs=1).fit(X)
    fitted = AEF(max_epochs=1, random_state=0).fit(X[1:])
    with pytest.raises(ValueError, match="AEF's likelihood is a bijection"):
        fitted.score_samples(X)


@pytest.mark.parametrize("cls", [ProbabilisticAutoencoder, VAE, PAE])
def test_internal_standardization_scores_in_the_units_of_x(cls):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(150, 4)) @ rng.normal(size=(4, 4))
    # offsets of a few stds: float32 networks see the standardized values to rounding (a column whose offset
    # is 1e4 stds loses the last digits of its spread when rows are read as float32)
    scale = np.array([1e-3, 10.0, 1.0, 1e4])
    shift = scale * np.array([5.0, -3.0, 0.0, 10.0])
    # no hidden entries: their random draws make the masked PAE's flow amplify the inputs' rounding (scores moved
    # by up to 14 nats between the two fits)
    params = {**FAST, "n_components": 2, **({"mask_fraction": 0.0} if cls is PAE else {})}
    plain = cls(**params).fit(X)
    moved = cls(**params).fit(X * scale + shift)
    log_det = np.log(scale).sum()
    # the same standardized data trains the same networks (to rounding): scores move by the log-determinant
    np.testing.assert_allclose(moved.score_samples(X * scale + shift), plain.score_samples(X) - log_det, rtol=1e-3)
    np.testing.assert_allclose(moved.transform(X * scale + shift), plain.transform(X), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(moved.reconstruct(X * scale + shift), plain.reconstruct(X) * scale + shift, rtol=1e-3)


def test_standardize_false_keeps_raw_units_and_warns_on_badly_scaled_columns():
    X = np.random.default_rng(5).normal(size=(80, 3)) * [1, 1, 1e6]
    with pytest.warns(UserWarning, match="badly scaled"):
        ProbabilisticAutoencoder(standardize=False, max_epochs=1).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = ProbabilisticAutoencoder(max_epochs=1).fit(X)
    np.testing.assert_allclose(model.feature_scale_, X.std(axis=0), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_standardization_is_over_observed_entries_in_float64(dtype):
    # column statistics accumulate in float64 whatever the dtype, over the observed entries; blocks of 2**22
    # entries, so 3 columns of 2**21 rows span two blocks with and without missing entries
    rng = np.random.default_rng(7)
    X = (rng.normal(size=(2**21, 3)) * [1, 3, 0.5] + [1e3, -2, 0]).astype(dtype)
    X[: 2**20 : 97, 1] = np.nan

    class Fitted:
        is_categorical_ = np.zeros(3, dtype=bool)

    fitted = Fitted()
    fit_standardization(fitted, X, standardize=True)
    reference = X.astype(np.float64)
    np.testing.assert_allclose(fitted.feature_loc_, np.nanmean(reference, axis=0), rtol=1e-12)
    np.testing.assert_allclose(fitted.feature_scale_, np.nanstd(reference, axis=0), rtol=1e-10)


def test_n_components_auto_follows_the_data():
    rng = np.random.default_rng(6)
    low_rank = rng.normal(size=(300, 3)) @ rng.normal(size=(3, 20)) + 0.01 * rng.normal(size=(300, 20))
    assert ProbabilisticAutoencoder(max_epochs=1).fit(low_rank).n_components_ <= 3
    two_d = rng.normal(size=(100, 2))
    model = ProbabilisticAutoencoder(max_epochs=1).fit(two_d)
    assert model.n_components_ == 1 and model.transform(two_d).shape == (100, 1)
    images = rng.random((40, 64))
    assert PAE(image_shape=(8, 8), max_epochs=1, flow_max_epochs=1).fit(images).n_components_ == 16
    with pytest.warns(UserWarning, match="n_components=50 is larger than the 5 feature"):
        ProbabilisticAutoencoder(n_components=50, max_epochs=1).fit(rng.normal(size=(30, 5)))


def test_a_fitted_table_model_saves_and_loads_with_its_categories(table, tmp_path):
    from skprobae import load, save

    model = ProbabilisticAutoencoder(**FAST).fit(table)
    save(model, tmp_path / "model.skprobae")
    loaded = load(tmp_path / "model.skprobae")
    np.testing.assert_array_equal(loaded.score_samples(table), model.score_samples(table))
    pd.testing.assert_frame_equal(loaded.reconstruct(table), model.reconstruct(table))


def test_contamination_auto_is_tukeys_lower_fence_of_the_training_scores():
    X = np.random.default_rng(7).normal(size=(300, 4))
    model = ProbabilisticAutoencoder(contamination="auto", **FAST).fit(X)
    q1, q3 = np.percentile(model.score_samples(X), [25, 75])
    assert model.offset_ == pytest.approx(q1 - 1.5 * (q3 - q1), rel=1e-6)
    flagged = np.mean(model.predict(X) == -1)
    assert 0 <= flagged < 0.05  # far fewer than the 10% of the default contamination


def test_pae_imputer_trains_on_the_masked_likelihood_once():
    from skprobae import PAEImputer

    rng = np.random.default_rng(8)
    X = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(200, 6))
    X_missing = np.where(rng.random(X.shape) < 0.2, np.nan, X)
    X_missing[0] = np.nan  # a row with nothing observed is left out of training, imputed from the prior
    imputer = PAEImputer(max_epochs=20, flow_max_epochs=5, random_state=0).fit(X_missing)
    assert imputer.pae_.missing_indicators_ and 190 <= imputer.pae_.n_samples_seen_ <= 199
    assert imputer.pae_.mask_fraction == imputer.mask_fraction == 0.3  # trained to predict entries it does not see
    filled = imputer.transform(X_missing)
    hidden = np.isnan(X_missing)
    assert np.isfinite(filled).all()
    rmse, mean_rmse = (np.sqrt(np.mean((v - X)[hidden] ** 2)) for v in (filled, np.nanmean(X_missing, 0) + 0 * X))
    assert rmse < mean_rmse


def test_a_dataframe_with_categories_and_missing_entries_keeps_its_categorical_columns(table):
    holes = table.copy()
    holes.loc[::7, "weight"] = np.nan
    holes.loc[::5, "colour"] = np.nan
    model = PAE(**FAST, flow_max_epochs=2).fit(holes)
    np.testing.assert_array_equal(model.is_categorical_, [False, True, False, True, True])
    assert model.missing_indicators_
    assert np.isfinite(model.score_samples(holes)).all()
    assert model.reconstruct(holes)["colour"].notna().all()  # a missing category is reconstructed


def test_mask_fraction_teaches_the_encoder_to_predict_entries_it_does_not_see():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(600, 2)) @ rng.normal(size=(2, 6)) + 0.05 * rng.normal(size=(600, 6))
    hidden = X.copy()
    hidden[:, :3] = np.nan  # predict the first three columns from the other three
    errors = {}
    for mask_fraction in (0.0, 0.5):
        model = ProbabilisticAutoencoder(
            n_components=2, max_epochs=60, mask_fraction=mask_fraction, random_state=0
        ).fit(X)
        assert model.missing_indicators_ == (mask_fraction > 0)
        errors[mask_fraction] = np.sqrt(np.mean((model.reconstruct(hidden)[:, :3] - X[:, :3]) ** 2))
    assert errors[0.5] < 0.5 * errors[0.0], errors
    assert errors[0.5] < 0.5 * X[:, :3].std()


def test_mask_fraction_is_seeded_and_refused_for_images():
    X = np.random.default_rng(10).normal(size=(100, 4))
    scores = [PAE(**FAST, flow_max_epochs=2, mask_fraction=0.3).fit(X).score_samples(X) for _ in range(2)]
    np.testing.assert_array_equal(scores[0], scores[1])
    with pytest.raises(ValueError, match=r"mask_fraction=0\.3 .* does not apply to images"):
        ProbabilisticAutoencoder(mask_fraction=0.3, image_shape=(2, 2), max_epochs=1).fit(X)
    # PAE's "auto": entries hidden on tables, none on images; the others hide none unless asked
    pae_options = {**FAST, "flow_max_epochs": 1}
    assert PAE(**pae_options).fit(X).mask_fraction_ == 0.3
    image_pae = PAE(**pae_options, image_shape=(2, 2)).fit(X)
    assert image_pae.mask_fraction_ == 0.0 and not image_pae.missing_indicators_
    assert ProbabilisticAutoencoder(**FAST).fit(X).mask_fraction_ == 0.0
