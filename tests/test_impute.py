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
