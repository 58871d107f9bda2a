"""Gaussian output distributions: fixed, diagonal and full covariance."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Independent, MultivariateNormal, Normal

from ._base import (
    LOG_2PI,
    OutputDistribution,
    batch_mean,
    lower_cholesky,
    n_tril,
    observed_block_cholesky,
    positive,
    sum_features,
)


class UnitNormal(OutputDistribution):
    r"""``normal``: :math:`\mathcal{N}(\mu, I)`; the decoder outputs the mean only.

    Parameters
    ----------
    n_features : int
        Dimension of the data the distribution is over.

    Examples
    --------
    >>> import torch
    >>> from skprobae.distributions import make_distribution
    >>> family = make_distribution("normal", 3)
    >>> type(family).__name__, family.n_params
    ('UnitNormal', 3)
    >>> params = torch.zeros(5, family.n_params)
    >>> family.log_prob(params, torch.zeros(5, 3)).shape
    torch.Size([5])
    """

    feature_channels = 1

    @property
    def n_params(self) -> int:
        return self.n_features

    def distribution(self, params: Tensor) -> Independent:
        return Independent(Normal(params, 1.0, validate_args=False), 1)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        return -0.5 * sum_features((x.to(params.dtype) - params) ** 2) - 0.5 * self.n_features * LOG_2PI

    def log_prob_observed(self, params: Tensor, x: Tensor, observed: Tensor) -> Tensor:
        residual = torch.where(observed, x.to(params.dtype) - params, 0.0)
        return -0.5 * sum_features(residual**2) - 0.5 * LOG_2PI * observed.sum(-1, dtype=torch.float64)


class SquaredError(UnitNormal):
    r"""``mse``: the plain autoencoder, trained on the mean squared error.

    Its density is that of ``normal`` (:math:`\mathcal{N}(\mu, I)`, the
    probabilistic reading of MSE), so ``score_samples`` and sampling agree with
    ``normal``; only the training loss is rescaled to
    :math:`\frac{2}{d}\,\mathrm{NLL} - \log 2\pi`, which is exactly the mean
    squared error per feature for one component.

    Parameters
    ----------
    n_features : int
        Dimension of the data the distribution is over.

    Examples
    --------
    >>> import torch
    >>> from skprobae.distributions import make_distribution
    >>> family = make_distribution("mse", 3)
    >>> type(family).__name__, family.n_params
    ('SquaredError', 3)
    >>> params = torch.zeros(5, family.n_params)
    >>> family.log_prob(params, torch.zeros(5, 3)).shape
    torch.Size([5])
    """

    def scale_loss(self, nll: Tensor) -> Tensor:
        return nll * (2.0 / self.n_features) - LOG_2PI

    def loss(self, params: Tensor, x: Tensor, weight: Tensor | None = None) -> Tensor:
        if weight is None:
            return ((x - params) ** 2).mean()
        return batch_mean(((x - params) ** 2).mean(-1), weight)

    def loss_observed(self, params: Tensor, x: Tensor, observed: Tensor, weight: Tensor | None = None) -> Tensor:
        """Mean squared error over the observed entries.

        Parameters
        ----------
        params : Tensor of shape (n, n_features)
            Decoded means.
        x : Tensor of shape (n, n_features)
            The batch; any finite value where ``observed`` is False.
        observed : bool Tensor of shape (n, n_features)
            True where the entry of ``x`` is observed.
        weight : Tensor of shape (n,), optional
            Per-row weights: each row's squared errors and its count of
            observed entries are weighted by it.

        Returns
        -------
        Tensor
            A scalar: the squared error summed over observed entries, divided
            by their count (at least 1).
        """
        residual = torch.where(observed, x - params, 0.0)
        if weight is None:
            return (residual**2).sum() / observed.sum().clamp_min(1)
        weight = weight.to(residual.dtype)
        return ((residual**2).sum(-1) * weight).sum() / (observed.sum(-1) * weight).sum().clamp_min(1e-12)


class DiagonalNormal(OutputDistribution):
    r"""``normal_diag``: :math:`\mathcal{N}(\mu, \mathrm{diag}(\sigma^2))`, softplus scales.

    The decoder outputs ``n_features`` means, then ``n_features`` raw scales
    (mapped through :func:`positive`).

    Parameters
    ----------
    n_features : int
        Dimension of the data the distribution is over.

    Examples
    --------
    >>> import torch
    >>> from skprobae.distributions import make_distribution
    >>> family = make_distribution("normal_diag", 3)
    >>> type(family).__name__, family.n_params
    ('DiagonalNormal', 6)
    >>> params = torch.zeros(5, family.n_params)
    >>> family.log_prob(params, torch.zeros(5, 3)).shape
    torch.Size([5])
    """

    feature_channels = 2

    @property
    def n_params(self) -> int:
        return 2 * self.n_features

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor]:
        loc, raw_scale = params.split(self.n_features, dim=-1)
        return loc, positive(raw_scale)

    def distribution(self, params: Tensor) -> Independent:
        loc, scale = self._split(params)
        return Independent(Normal(loc, scale, validate_args=False), 1)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        return -sum_features(self._half_z2_plus_log_scale(params, x)) - 0.5 * self.n_features * LOG_2PI

    def log_prob_observed(self, params: Tensor, x: Tensor, observed: Tensor) -> Tensor:
        terms = torch.where(observed, self._half_z2_plus_log_scale(params, x), 0.0)
        return -sum_features(terms) - 0.5 * LOG_2PI * observed.sum(-1, dtype=torch.float64)

    def _half_z2_plus_log_scale(self, params: Tensor, x: Tensor) -> Tensor:
        # z^2 / 2 + log(scale) per feature: four elementwise passes over a (draws, rows, features) block and three
        # new tensors, where the written-out expression took six of each
        loc, scale = self._split(params)
        z = (x.to(params.dtype) - loc).div_(scale)
        return torch.addcmul(scale.log(), z, z, value=0.5)


class FullNormal(OutputDistribution):
    r"""``normal_full``: :math:`\mathcal{N}(\mu, LL^\top)` with a Cholesky factor ``L``.

    The decoder outputs ``d`` means and ``d (d + 1) / 2`` factor entries, so the
    last layer grows with the square of the number of features.

    Parameters
    ----------
    n_features : int
        Dimension of the data the distribution is over.

    Examples
    --------
    >>> import torch
    >>> from skprobae.distributions import make_distribution
    >>> family = make_distribution("normal_full", 3)
    >>> type(family).__name__, family.n_params
    ('FullNormal', 9)
    >>> params = torch.zeros(5, family.n_params)
    >>> family.log_prob(params, torch.zeros(5, 3)).shape
    torch.Size([5])
    """

    feature_channels = 1

    @property
    def n_params(self) -> int:
        return self.n_features + n_tril(self.n_features)

    @property
    def inference_cost(self) -> int:
        return self.n_params + self.n_features**2

    def distribution(self, params: Tensor) -> MultivariateNormal:
        loc, raw_tril = params.split([self.n_features, n_tril(self.n_features)], dim=-1)
        scale_tril = lower_cholesky(raw_tril, self.n_features)
        return MultivariateNormal(loc, scale_tril=scale_tril, validate_args=False)

    def log_prob_observed(self, params: Tensor, x: Tensor, observed: Tensor) -> Tensor:
        """The observed block's Gaussian: mean and covariance restricted to it (exact).

        Parameters
        ----------
        params : Tensor of shape (..., n_params)
            Raw decoder output.
        x : Tensor of shape (..., n_features)
            The data rows; any finite value where ``observed`` is False.
        observed : bool Tensor of shape (..., n_features)
            True where the entry of ``x`` is observed.

        Returns
        -------
        Tensor of shape params.shape[:-1], float64
            Log-density of the observed entries, in nats.
        """
        params = params.double()
        loc, raw_tril = params.split([self.n_features, n_tril(self.n_features)], dim=-1)
        factor = observed_block_cholesky(lower_cholesky(raw_tril, self.n_features), observed)
        residual = torch.where(observed, x.double() - loc, 0.0)
        white = torch.linalg.solve_triangular(factor, residual.unsqueeze(-1), upper=False).squeeze(-1)
        log_det = factor.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        return -0.5 * (white**2).sum(-1) - log_det - 0.5 * LOG_2PI * observed.sum(-1, dtype=torch.float64)
