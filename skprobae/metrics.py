"""Metrics for density models."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["bits_per_dim"]


def bits_per_dim(log_likelihood: ArrayLike, n_features: int, n_bins: int = 256) -> np.ndarray | float:
    r"""Bits per dimension of discrete data from log-densities of its dequantized version in [0, 1).

    Data with ``n_bins`` levels per feature dequantized as
    :math:`(x + U[0, 1)) / n_\mathrm{bins}` has densities
    :math:`n_\mathrm{bins}^{D}` times larger than on the integer scale, so

    .. math:: \mathrm{bpd} = -\frac{\log p(x) - D \log n_\mathrm{bins}}{D \log 2}.

    Parameters
    ----------
    log_likelihood : float or array-like
        Natural-log densities of the dequantized rows (e.g. ``score_samples``).
    n_features : int
        D, the number of features (pixels) per row.
    n_bins : int, default=256
        Levels per feature before dequantization; ``n_bins=1`` gives bits per
        dimension of the continuous density itself.

    Returns
    -------
    float or ndarray of float64
        Same shape as ``log_likelihood``; lower is better.

    Examples
    --------
    >>> from skprobae.metrics import bits_per_dim
    >>> round(bits_per_dim(0.0, n_features=784), 3)  # uniform over [0, 1)^D
    8.0
    """
    if not isinstance(n_features, (int, np.integer)) or n_features < 1:
        raise ValueError(f"n_features must be a positive integer, got {n_features!r}.")
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}.")
    log_likelihood = np.asarray(log_likelihood, dtype=np.float64)
    bpd = -(log_likelihood - n_features * math.log(n_bins)) / (n_features * math.log(2))
    return float(bpd) if bpd.ndim == 0 else bpd
