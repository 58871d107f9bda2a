"""
Mixture components of a probabilistic autoencoder as data augmentation
======================================================================

With ``n_mixtures=K``, a :class:`~skprobae.ProbabilisticAutoencoder` decodes every
code into a mixture of K output distributions [Ciobanu2021]_: each image gets K
alternative reconstructions with weights. Can they serve as extra training rows for a
classifier that has few labels?

This example fits ``ProbabilisticAutoencoder(distribution="normal_diag",
n_mixtures=5)`` on unlabelled training digits. The components whose log-weight is
above a threshold become extra rows carrying the label of their image. A logistic
regression is trained on a small labelled subset (100 digits) with and without those
rows, over five random subsets, at two thresholds, and the test accuracies are printed
whichever way they come out.

On digits the extra rows do not help: in our run the test accuracy fell from 0.893 to
0.720 at the threshold ``log(0.1)`` (4.2 of 5 components kept per image), while at
``-0.9`` only 0.08 components per image pass and the accuracy stays at 0.892. The
figure shows why: the components are blurry prototypes that hardly depend on the
input (about the same five shapes, with about the same weights, for every digit), so
copying the image's label onto them adds label noise. The mixture is fitted for
likelihood, not to preserve the class.

Run: ``python examples/plot_mixture_augmentation.py`` (about 10 s on 2 CPU cores).
"""

# %%
# Fit a mixture model on unlabelled digits
# ----------------------------------------
# The labels are split off with the images but not given to the autoencoder: ``fit``
# sees only the pixels (scaled to [0, 1]).

import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from skprobae import ProbabilisticAutoencoder
from skprobae.plotting import plot_mixture_components

n_mixtures = 5
n_labelled = 100

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)

start = time.perf_counter()
model = ProbabilisticAutoencoder(
    distribution="normal_diag",
    n_mixtures=n_mixtures,
    image_shape=(8, 8),
    n_components=16,
    max_epochs=200,
    random_state=0,
).fit(X_train)  # the labels are not used
print(f"fit on {len(X_train)} unlabelled digits: {model.n_iter_} epochs in {time.perf_counter() - start:.1f} s")

# %%
# Components as extra labelled rows
# ---------------------------------
# ``predict_components`` returns every component's point estimate and log-weight for
# each image. Every component above the threshold is one more row, with its image's
# label. For each of five random labelled subsets, the classifier is trained on the
# subset alone and on the subset plus its kept components.

points, log_weights = model.predict_components(X_train)
for min_log_weight in (np.log(0.1), -0.9):
    keep = log_weights > min_log_weight
    print(
        f"\ncomponents kept per image (log-weight > {min_log_weight:.2f}): "
        f"mean {keep.sum(axis=1).mean():.2f} of {n_mixtures}"
    )
    accuracies, n_rows = [], []
    for seed in range(5):
        labelled = np.random.default_rng(seed).choice(len(X_train), n_labelled, replace=False)
        X_aug = np.vstack([X_train[labelled], points[labelled][keep[labelled]]])
        y_aug = np.r_[y_train[labelled], np.repeat(y_train[labelled], keep[labelled].sum(axis=1))]
        n_rows.append(len(X_aug))
        accuracies.append(
            [
                LogisticRegression(max_iter=2000).fit(X_fit, y_fit).score(X_test, y_test)
                for X_fit, y_fit in [(X_train[labelled], y_train[labelled]), (X_aug, y_aug)]
            ]
        )
    accuracies = np.array(accuracies)
    print(f"logistic regression, test accuracy on {len(X_test)} digits (mean ± std over 5 labelled subsets):")
    for column, label in enumerate(
        [f"{n_labelled} labelled digits", f"+ their kept components ({np.mean(n_rows):.0f} rows)"]
    ):
        print(f"  {label:<40} {accuracies[:, column].mean():.3f} ± {accuracies[:, column].std():.3f}")

# %%
# What the components look like
# -----------------------------
# Each test digit, then its components, highest weight first; the ones below the
# threshold ``log(0.1)`` are faded. Compare the rows: the components change little
# from one input to the next, whatever its class.

min_log_weight = np.log(0.1)
figure = plot_mixture_components(
    model,
    X_test,
    (8, 8),
    n_images=6,
    min_log_weight=min_log_weight,
    title=f"n_mixtures={n_mixtures}; faded: log-weight < {min_log_weight:.2f}",
)
