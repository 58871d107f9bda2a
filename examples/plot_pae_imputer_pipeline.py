"""Tabular imputation in a Pipeline: PAEImputer against scikit-learn's imputers.

20% of the entries of the breast-cancer table are removed at random. Each
imputer fills them; the script prints the RMSE of the filled entries (on
standardized features), the coverage of PAEImputer's 90% posterior intervals,
and the cross-validated accuracy of ``Pipeline([imputer,
HistGradientBoostingClassifier()])``.

Run: ``python examples/pae_imputer_pipeline.py`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from skprobae.impute import PAEImputer


def main() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    missing = np.random.default_rng(0).random(X.shape) < 0.2
    X_missing = np.where(missing, np.nan, X)
    scale = X.std(axis=0)
    imputers = {
        "SimpleImputer(mean)": SimpleImputer(),
        "KNNImputer": KNNImputer(),
        "IterativeImputer": IterativeImputer(random_state=0),
        "PAEImputer": PAEImputer(max_epochs=40, flow_max_epochs=40, random_state=0),
    }
    print(f"{'imputer':<22s} RMSE (std. units)  CV accuracy")
    for name, imputer in imputers.items():
        filled = imputer.fit_transform(X_missing)
        rmse = np.sqrt(np.mean(((filled - X) / scale)[missing] ** 2))
        accuracy = cross_val_score(make_pipeline(imputer, HistGradientBoostingClassifier()), X_missing, y, cv=3)
        print(f"{name:<22s} {rmse:17.3f}  {accuracy.mean():.3f}")
        if isinstance(imputer, PAEImputer):
            filled, std = imputer.transform(X_missing, return_std=True)
            coverage = np.mean(np.abs(filled - X)[missing] <= 1.645 * std[missing])
            print(f"PAEImputer 90% posterior intervals cover {coverage:.2f} of the removed entries")


if __name__ == "__main__":
    main()
