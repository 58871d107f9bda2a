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
