"""
Tabular imputation in a pipeline: PAEImputer against scikit-learn's imputers
============================================================================

:class:`~skprobae.impute.PAEImputer` is a scikit-learn transformer that fits a
:class:`~skprobae.PAE` [Bohm2022]_ on the incomplete rows themselves (the autoencoder
maximises the likelihood of the observed entries only) and fills every missing entry
with its posterior mean given the observed entries of its row, with a posterior
standard deviation on request.

Here 20% of the entries of scikit-learn's breast-cancer table (569 rows, 30
features) are removed at random. Each imputer fills them; the example prints the RMSE
of the filled entries (on standardized features), the coverage of PAEImputer's 90%
posterior intervals, and the 3-fold cross-validated accuracy of
``make_pipeline(imputer, HistGradientBoostingClassifier())``, and draws both figures
of merit.

To keep the example under a minute (the pipeline is fitted once per fold),
PAEImputer's posterior search is much cheaper than its defaults (``n_restarts=2,
n_posterior_samples=20, posterior_steps=15`` instead of 4, 100 and 200). In our run this
costs some accuracy: RMSE 0.592, where the defaults reach 0.526 in about 25 s for one fit
and fill on one core; the 90% intervals cover 0.89-0.90 of the removed entries either way.
IterativeImputer is the most accurate here (RMSE 0.417), and all four pipelines
classify within about 0.01 of each other.

Run: ``python examples/plot_pae_imputer_pipeline.py`` (about 35 s on one CPU core).
"""

# %%
# Remove 20% of the entries
# -------------------------
# Each entry is removed independently with probability 0.2 (missing completely at
# random), so the true values are known and the filled ones can be scored. RMSEs are
# in units of each feature's standard deviation.

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from skprobae.impute import PAEImputer

X, y = load_breast_cancer(return_X_y=True)
missing = np.random.default_rng(0).random(X.shape) < 0.2
X_missing = np.where(missing, np.nan, X)
scale = X.std(axis=0)
print(f"{X.shape[0]} rows, {X.shape[1]} features, {missing.mean():.1%} of the entries removed")

# %%
# Fill, score, and classify
# -------------------------
# Every imputer is fitted on the incomplete table and fills it; then
# the same imputer, inside a pipeline with a gradient-boosting classifier, is
# cross-validated on the diagnosis. For PAEImputer, ``transform(X, return_std=True)``
# also gives the posterior standard deviation, so ``mean ± 1.645 std`` is a 90%
# interval; its posterior settings are reduced to keep the run short.

imputers = {
    "SimpleImputer(mean)": SimpleImputer(),
    "KNNImputer": KNNImputer(),
    "IterativeImputer": IterativeImputer(random_state=0),
    "PAEImputer": PAEImputer(
        max_epochs=40, flow_max_epochs=40, n_restarts=2, n_posterior_samples=20, posterior_steps=15, random_state=0
    ),
}
rmses, accuracies = {}, {}
print(f"{'imputer':<22s} RMSE (std. units)  CV accuracy")
for name, imputer in imputers.items():
    imputer.fit(X_missing)
    if isinstance(imputer, PAEImputer):
        filled, std = imputer.transform(X_missing, return_std=True)
        coverage = np.mean(np.abs(filled - X)[missing] <= 1.645 * std[missing])
    else:
        filled = imputer.transform(X_missing)
    rmses[name] = np.sqrt(np.mean(((filled - X) / scale)[missing] ** 2))
    accuracies[name] = cross_val_score(
        make_pipeline(imputer, HistGradientBoostingClassifier()), X_missing, y, cv=3
    ).mean()
    print(f"{name:<22s} {rmses[name]:17.3f}  {accuracies[name]:.3f}")
print(f"PAEImputer 90% posterior intervals cover {coverage:.2f} of the removed entries")

# %%
# The two figures of merit
# ------------------------
# Left: the error of the filled entries (lower is better). Right: the accuracy of the
# classifier downstream (higher is better); its axis covers only the range of the
# accuracies, to make the differences visible.

names = list(imputers)
figure, (ax_rmse, ax_accuracy) = plt.subplots(1, 2, figsize=(10, 3.6))
ax_rmse.barh(names, [rmses[name] for name in names], color="C0")
ax_rmse.set_xlabel("RMSE of the removed entries (std. units)")
ax_rmse.invert_yaxis()
ax_accuracy.barh(names, [accuracies[name] for name in names], color="C1")
ax_accuracy.set_xlim(min(accuracies.values()) - 0.02, max(accuracies.values()) + 0.01)
ax_accuracy.set_xlabel("3-fold CV accuracy, imputer + gradient boosting")
ax_accuracy.invert_yaxis()
ax_accuracy.set_yticklabels([])
figure.suptitle("Breast cancer, 20% of the entries removed at random")
figure.tight_layout()
