"""
Per-pixel uncertainty of a probabilistic autoencoder: normal versus Student-t output
====================================================================================

A :class:`~skprobae.ProbabilisticAutoencoder` decodes each image into the parameters
of an output distribution [Ciobanu2021]_, so besides a reconstruction it predicts how
uncertain every pixel is. This example fits it on 8x8 digits twice, with a diagonal
normal (``"normal_diag"``) and a diagonal Student-t (``"t_diag"``) output, prints the
held-out mean log-likelihood, reconstruction RMSE and mean predicted pixel standard
deviation of each, and draws originals, reconstructions and per-pixel standard
deviation maps (``plot_reconstructions``) for each distribution.

A Student-t output whose predicted ``df <= 2`` has no finite variance; its standard
deviation is NaN and drawn blank, and the example prints the share of such pixels. On
digits (most pixels exactly 0) the Student-t fit settles on very heavy tails (``df``
far below 2) for every image, so its standard-deviation map comes out blank and only
the normal output gives a usable variance map.

Run: ``python examples/plot_variance_maps.py`` (about 15 s on 2 CPU cores).
"""

# %%
# Fit both output distributions
# -----------------------------
# Same data, network and budget; only ``distribution`` changes. ``reconstruct(...,
# return_std=True)`` returns the point estimate and the per-pixel standard deviation
# of the output distribution.

import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skprobae import ProbabilisticAutoencoder
from skprobae.plotting import plot_reconstructions

X = load_digits().data / 16.0  # pixel intensities in [0, 1]
X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)
print(f"digits: {len(X_train)} training and {len(X_test)} test images of 8x8 pixels")
print("distribution   epochs   fit s   mean log-lik   RMSE     mean std   NaN std")
models = {}
for distribution in ["normal_diag", "t_diag"]:
    start = time.perf_counter()
    model = ProbabilisticAutoencoder(
        distribution=distribution,
        image_shape=(8, 8),
        n_components=16,
        hidden_layer_sizes=(128,),
        max_epochs=200,
        random_state=0,
    ).fit(X_train)
    seconds = time.perf_counter() - start
    reconstruction, std = model.reconstruct(X_test, return_std=True)
    rmse = np.sqrt(np.mean((reconstruction - X_test) ** 2))
    finite = std[np.isfinite(std)]
    mean_std = f"{finite.mean():.4f}" if finite.size else "n/a"
    print(
        f"{distribution:<14} {model.n_iter_:>6} {seconds:>7.1f} {model.score(X_test):>14.2f} "
        f"{rmse:>7.4f} {mean_std:>10} {np.mean(np.isnan(std)):>8.1%}"
    )
    models[distribution] = model

# %%
# Diagonal normal output
# ----------------------
# Originals, reconstructions and the predicted standard deviation of every pixel.

figure = plot_reconstructions(
    models["normal_diag"], X_test, (8, 8), title="ProbabilisticAutoencoder(distribution='normal_diag')"
)

# %%
# Diagonal Student-t output
# -------------------------
# The same rows for the Student-t output. Pixels whose predicted ``df <= 2`` have no
# finite variance and are drawn blank.

figure = plot_reconstructions(models["t_diag"], X_test, (8, 8), title="ProbabilisticAutoencoder(distribution='t_diag')")
