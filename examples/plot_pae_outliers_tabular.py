"""
Outlier detection on a tabular set with PAE, next to IsolationForest
====================================================================

The breast-cancer table (569 rows, 30 features) is made an outlier problem the
way the ODDS ``wbc`` set is: benign cases are the inliers, and 5% of the rows
are malignant cases. Both detectors are fitted on the unlabelled rows in a
``Pipeline`` with ``StandardScaler``; the script prints the AUROC of every PAE
score method and of IsolationForest, and what ``predict`` flags.

Run: ``python examples/pae_outliers_tabular.py`` (about 15 s on 2 CPU cores).
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skprobae import PAE


def main() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(0)
    benign, malignant = X[y == 1], X[y == 0]
    n_outliers = int(0.05 * len(benign) / 0.95)
    X = np.vstack([benign, malignant[rng.choice(len(malignant), n_outliers, replace=False)]])
    is_outlier = np.r_[np.zeros(len(benign)), np.ones(n_outliers)]
    print(f"{len(X)} rows, {X.shape[1]} features, {n_outliers} outliers ({is_outlier.mean():.1%})")

    pae = make_pipeline(StandardScaler(), PAE(n_components=4, contamination=0.05, random_state=0)).fit(X)
    for method in ("combined", "latent", "reconstruction", "laplace"):
        pae.set_params(pae__score_method=method)
        print(f"PAE ({method:14s}) AUROC {roc_auc_score(is_outlier, -pae.score_samples(X)):.3f}")
    forest = make_pipeline(StandardScaler(), IsolationForest(contamination=0.05, random_state=0)).fit(X)
    print(f"IsolationForest         AUROC {roc_auc_score(is_outlier, -forest.score_samples(X)):.3f}")

    pae.set_params(pae__score_method="combined")
    flagged = pae.predict(X) == -1
    print(f"PAE predict flags {flagged.sum()} rows; {is_outlier[flagged].mean():.0%} of them are malignant")


if __name__ == "__main__":
    main()
