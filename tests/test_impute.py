import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from skprobae.impute import PAEImputer

FAST = {"max_epochs": 40, "flow_max_epochs": 40, "n_posterior_samples": 50, "posterior_steps": 100, "random_state": 0}


@pytest.fixture(scope="module")
def cancer_missing():
    X, y = load_breast_cancer(return_X_y=True)
    missing = np.random.default_rng(0).random(X.shape) < 0.2
    return X, np.where(missing, np.nan, X), missing, y


@pytest.fixture(scope="module")
def fitted(cancer_missing):
    _, X_missing, _, _ = cancer_missing
    return PAEImputer(**FAST).fit(X_missing)


def test_beats_mean_imputation_with_calibrated_intervals(cancer_missing, fitted):
    X, X_missing, missing, _ = cancer_missing
    filled, std = fitted.transform(X_missing, return_std=True)
    mean_filled = SimpleImputer().fit_transform(X_missing)
    scale = X.std(axis=0)  # compare on standardized features: raw scales differ by 1e4

    def rmse(A):
        return np.sqrt(np.mean(((A - X) / scale)[missing] ** 2))

    assert rmse(filled) < 0.8 * rmse(mean_filled)
    np.testing.assert_array_equal(filled[~missing], X[~missing])
    assert (std[~missing] == 0).all() and (std[missing] > 0).all()
    coverage = np.mean(np.abs(filled - X)[missing] <= 1.645 * std[missing])
    assert 0.8 <= coverage <= 0.97, coverage


def test_in_a_pipeline_with_a_classifier(cancer_missing):
    _, X_missing, _, y = cancer_missing
    pipeline = make_pipeline(
        PAEImputer(**{**FAST, "max_epochs": 10, "flow_max_epochs": 10}), HistGradientBoostingClassifier()
    )
    assert cross_val_score(pipeline, X_missing, y, cv=2).mean() > 0.85


def test_all_missing_feature_and_complete_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)) @ rng.normal(size=(4, 4))
    X_missing = X.copy()
    X_missing[:, 2] = np.nan
    imputer = PAEImputer(n_components=2, **{**FAST, "max_epochs": 5, "flow_max_epochs": 5}).fit(X_missing)
    filled = imputer.transform(X_missing)
    assert np.isfinite(filled).all()
    np.testing.assert_array_equal(imputer.transform(X), X)  # nothing missing: unchanged
    assert imputer.get_feature_names_out().tolist() == ["x0", "x1", "x2", "x3"]


def test_held_out_calibration_falls_back_to_the_mean_without_structure():
    # independent features: nothing to learn from the observed entries, so the
    # held-out shrinkage should pull the fill to the feature mean
    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 6))
    missing = rng.random(X.shape) < 0.2
    X_missing = np.where(missing, np.nan, X)
    imputer = PAEImputer(n_components=2, **{**FAST, "max_epochs": 20, "flow_max_epochs": 20}).fit(X_missing)
    assert imputer.shrinkage_.shape == imputer.std_scale_.shape == (6,)
    assert (imputer.shrinkage_ >= 0).all() and (imputer.shrinkage_ <= 1).all()
    assert imputer.shrinkage_.mean() < 0.5
    filled, std = imputer.transform(X_missing, return_std=True)
    mean_filled = SimpleImputer().fit_transform(X_missing)

    def rmse(A):
        return np.sqrt(np.mean((A - X)[missing] ** 2))

    assert rmse(filled) < 1.02 * rmse(mean_filled)
    coverage = np.mean(np.abs(filled - X)[missing] <= 1.645 * std[missing])
    assert 0.8 <= coverage <= 0.97, coverage


def test_calibration_can_be_turned_off(cancer_missing):
    _, X_missing, missing, _ = cancer_missing
    fast = {**FAST, "max_epochs": 5, "flow_max_epochs": 5}
    imputer = PAEImputer(calibration_fraction=0.0, **fast).fit(X_missing[:200])
    np.testing.assert_array_equal(imputer.shrinkage_, np.ones(X_missing.shape[1]))
    np.testing.assert_array_equal(imputer.std_scale_, np.ones(X_missing.shape[1]))
    filled = imputer.transform(X_missing[:200])
    assert np.isfinite(filled).all()
    np.testing.assert_array_equal(filled[~missing[:200]], X_missing[:200][~missing[:200]])


@pytest.fixture(scope="module")
def mixed_holes():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    z = rng.normal(size=600)
    levels = np.where(z > 0.5, "high", np.where(z < -0.5, "low", "mid"))
    table = pd.DataFrame(
        {
            "a": z + 0.1 * rng.normal(size=600),
            "level": pd.Categorical(levels, categories=["high", "low", "mid", "unused"]),
            "b": 2 * z + 0.1 * rng.normal(size=600),
            "positive": (z > 0).astype(object),
        }
    )
    missing = rng.random(table.shape) < 0.2
    holes = table.copy()
    for j, column in enumerate(table.columns):
        holes.loc[missing[:, j], column] = np.nan if j in (0, 2) else None
    return table, holes, missing


def test_imputes_categorical_columns_and_keeps_the_column_types(mixed_holes):
    table, holes, missing = mixed_holes
    settings = {**FAST, "max_epochs": 50, "flow_max_epochs": 20, "n_posterior_samples": 30, "posterior_steps": 50}
    imputer = PAEImputer(**settings).fit(holes)
    np.testing.assert_array_equal(imputer.is_categorical_, [False, True, False, True])
    filled, std = imputer.transform(holes, return_std=True)
    assert list(filled.dtypes) == list(table.dtypes) and filled.notna().all().all()
    assert filled[~missing[:, 1]]["level"].equals(table[~missing[:, 1]]["level"])  # observed entries kept
    for j in (1, 3):  # the row's other entries tell its category: far above the majority class
        hidden = missing[:, j]
        accuracy = (filled.iloc[hidden, j] == table.iloc[hidden, j]).mean()
        assert accuracy > max(0.8, table.iloc[hidden, j].value_counts(normalize=True).max() + 0.2), (j, accuracy)
    assert np.isnan(std[missing[:, 1], 1]).all() and (std[~missing[:, 1], 1] == 0).all()
    assert (std[missing[:, 0], 0] > 0).all() and imputer.std_scale_[1] == imputer.shrinkage_[1] == 1
    probabilities = imputer.impute_category_proba(holes)
    assert [p.shape for p in probabilities] == [(600, 4), (600, 2)]
    np.testing.assert_allclose([p.sum(axis=1) for p in probabilities], 1.0, rtol=1e-9)
    assert (probabilities[0][:, 3] == 0).all()  # a category never observed in fit is never imputed
    assert (probabilities[0].argmax(axis=1) == filled["level"].cat.codes.to_numpy()).all()
    with pytest.raises(ValueError, match="column 'level' has categories not seen in fit"):
        imputer.transform(holes.assign(level=holes["level"].cat.add_categories("new").fillna("new")))


def test_categorical_features_on_a_numeric_array_give_back_the_category_values(mixed_holes):
    _, holes, missing = mixed_holes
    X = holes.assign(
        level=holes["level"].cat.codes.replace(-1, np.nan) * 10.0, positive=holes["positive"].astype(float)
    )
    settings = {**FAST, "max_epochs": 10, "flow_max_epochs": 5, "n_posterior_samples": 10, "posterior_steps": 20}
    imputer = PAEImputer(categorical_features=[1, 3], **settings).fit(X.to_numpy())
    filled = imputer.transform(X.to_numpy())
    assert set(np.unique(filled[:, 1])) <= {0.0, 10.0, 20.0} and set(np.unique(filled[:, 3])) <= {0.0, 1.0}
    np.testing.assert_array_equal(filled[~missing], X.to_numpy()[~missing])
