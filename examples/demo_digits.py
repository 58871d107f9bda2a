"""
The main demo: an autoencoder that is also a probabilistic model
================================================================

A plain autoencoder compresses and reconstructs. A :class:`~skprobae.PAE` is an
autoencoder plus a normalizing flow fitted to its codes, which makes it a density
model of the data [Bohm2022]_. On scikit-learn's 8x8 digits (no download), one fitted
model does three things a plain autoencoder cannot:

1. **sample** new digits from the flow prior (a plain autoencoder decoding
   :math:`\\mathcal{N}(0, I)` codes draws blobs);
2. **fill in** a hidden half of each image with a posterior mean *and* a per-pixel
   posterior standard deviation;
3. **score** how normal each image is (``score_samples``, higher is more normal), which
   separates digits from images it never saw.

Run from the repository root: ``python examples/demo_digits.py [--output digits_demo.png]`` (about
30 s on 2 CPU cores); it prints the figures below and writes ``digits_demo.png``.
"""

# %%
# Fit a PAE on the training digits
# --------------------------------
# Pixel intensities are scaled to [0, 1]. ``image_shape=(8, 8)`` says the 64 columns are
# pixels that share one scale (so the estimator does not standardize them one by one);
# ``n_components=16`` is the size of the code; the flow on the codes is chosen and
# trained by the estimator (``flow="auto"``).

import argparse
import sys
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from skprobae import PAE

X = load_digits().data / 16.0
X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)

start = time.perf_counter()
pae = PAE(n_components=16, image_shape=(8, 8), hidden_layer_sizes=(128,), random_state=0).fit(X_train)
print(f"digits: {len(X_train)} training and {len(X_test)} test images of 8x8 pixels")
print(f"fit: autoencoder {pae.n_iter_} epochs, then the latent flow, in {time.perf_counter() - start:.1f} s")

reconstruction = pae.reconstruct(X_test)
rmse = np.sqrt(np.mean((reconstruction - X_test) ** 2))
mean_rmse = np.sqrt(np.mean((X_train.mean(axis=0) - X_test) ** 2))
print(f"held-out reconstruction RMSE {rmse:.3f} (the mean image: {mean_rmse:.3f})")

# %%
# Sample from the flow prior, and compare with a plain autoencoder
# -----------------------------------------------------------------
# ``sample`` draws :math:`u \sim \mathcal{N}(0, I)`, maps it through the inverse flow
# to a code and decodes it. Decoding standard-normal codes directly (what a plain
# autoencoder offers) ignores where the codes of real digits lie. The fitted model's
# log-likelihood (``score_samples``) tells the two kinds of samples apart.

n = 10
pae_samples = np.clip(pae.sample(500, random_state=0), 0, 1)
plain_codes = np.random.default_rng(0).normal(size=(500, pae.n_components_))
plain_samples = np.clip(pae.inverse_transform(plain_codes), 0, 1)
for name, rows in [("test digits", X_test), ("PAE samples", pae_samples), ("plain-autoencoder samples", plain_samples)]:
    print(f"median log-likelihood of {name}: {np.median(pae.score_samples(rows)):8.1f} nats")

# %%
# Fill in the hidden left half, with per-pixel uncertainty
# --------------------------------------------------------
# ``impute`` infers the code of each partly observed image in the flow's base space
# (multi-start MAP, then a Laplace approximation) and returns the posterior mean and
# standard deviation of every missing pixel.

hidden = np.zeros((n, 64), dtype=bool)
hidden.reshape(n, 8, 8)[:, :, :4] = True
X_half = np.where(hidden, np.nan, X_test[:n])
filled, filled_std = pae.impute(X_half, return_std=True)
coverage = np.mean(np.abs(filled - X_test[:n])[hidden] <= 1.645 * filled_std[hidden])
print(f"hidden halves: RMSE {np.sqrt(np.mean((filled - X_test[:n])[hidden] ** 2)):.3f}, ", end="")
print(f"90% posterior intervals cover {coverage:.0%} of the hidden pixels")

# %%
# Score images it never saw
# -------------------------
# ``score_samples`` is a log-likelihood (higher is more normal, scikit-learn's sign).
# Uniform noise and digits turned upside down should score lower than test digits.

rng = np.random.default_rng(0)
noise = rng.uniform(0, 1, size=(len(X_test), 64))
flipped = X_test.reshape(-1, 8, 8)[:, ::-1].reshape(-1, 64)
rows_by_name = {"test digits": X_test, "upside down": flipped, "noise": noise}
scores = {name: pae.score_samples(rows) for name, rows in rows_by_name.items()}
for name in ("upside down", "noise"):
    labels = np.r_[np.zeros(len(X_test)), np.ones(len(X_test))]
    auroc = roc_auc_score(labels, -np.r_[scores["test digits"], scores[name]])
    print(f"outlier AUROC, test digits vs {name}: {auroc:.3f}")
flagged = np.mean(pae.predict(X_test) == -1)
print(f"test digits below offset_ (set so that 10% of the training digits are): {flagged:.1%}")

# %%
# One figure
# ----------
# Left: test digits and their reconstructions, samples from the PAE next to a plain
# autoencoder's, the hidden-half inputs with their posterior means and standard
# deviations. Right: the score distributions.

rows = {
    "test digits": X_test[:n],
    "reconstruction": np.clip(reconstruction[:n], 0, 1),
    "PAE samples": pae_samples[:n],
    "plain AE samples": plain_samples[:n],
    "left half hidden": X_half,
    "posterior mean": filled,
    "posterior std": filled_std,
}
figure = plt.figure(figsize=(12, 6.2))
images, histogram = figure.subfigures(1, 2, width_ratios=[1.55, 1])
axes = images.subplots(len(rows), n)
images.subplots_adjust(left=0.2, right=0.98, wspace=0.08, hspace=0.12)
histogram.subplots_adjust(left=0.16, right=0.95)
for row, (label, values) in zip(axes, rows.items(), strict=True):
    for ax, image in zip(row, values, strict=True):
        is_std = label == "posterior std"
        ax.imshow(image.reshape(8, 8), cmap="magma" if is_std else "gray_r", vmin=0, vmax=0.5 if is_std else 1)
        ax.set_xticks([])
        ax.set_yticks([])
    row[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
ax = histogram.subplots()
# Bins evenly spaced on the same symmetric log scale as the axis.
low, high = min(s.min() for s in scores.values()), max(s.max() for s in scores.values())
to_symlog = lambda x: np.sign(x) * np.log1p(np.abs(x) / 100)  # noqa: E731
from_symlog = lambda t: np.sign(t) * 100 * np.expm1(np.abs(t))  # noqa: E731
bins = from_symlog(np.linspace(to_symlog(low), to_symlog(high), 60))
for name, values in scores.items():
    ax.hist(values, bins=bins, alpha=0.6, label=name)
ax.axvline(pae.offset_, color="black", linestyle="--", linewidth=1, label="offset_ (contamination=0.1)")
ax.set_xscale("symlog", linthresh=100)  # noise scores far below the digits
ax.set_xlabel("score_samples: log-likelihood in nats (symlog axis)")
ax.set_ylabel("images")
ax.legend(fontsize=8)
figure.suptitle("PAE(n_components=16) on scikit-learn's digits: samples, inpainting with uncertainty, outlier scores")

if __name__ == "__main__" and "sphinx_gallery" not in sys.modules:  # run as a script, not in the docs build
    parser = argparse.ArgumentParser(description="skprobae's main demo on scikit-learn's digits")
    parser.add_argument("--output", default="digits_demo.png", help="where to write the figure")
    output = parser.parse_args().output
    figure.savefig(output, dpi=100)
    print(f"wrote {output}")
