"""The interface every output distribution of an autoencoder implements."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

SCALE_FLOOR = 1e-6
"""Smallest scale (and degrees of freedom) a decoder can output: softplus + this floor."""


def sum_features(terms: Tensor) -> Tensor:
    """Sum over the last (feature) dimension, accumulated in float64 whatever the dtype of the terms.

    Densities evaluate their per-feature terms in the dtype of the decoder's
    output (float32 by default) and reduce them here, so a log-density of many
    features keeps float64 accuracy without float64 elementwise work.
    """
    return terms.sum(-1, dtype=torch.float64)


def batch_mean(values: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean of per-row values over a batch; with ``weight``, of ``weight * values`` (``fit``'s ``sample_weight``).

    Weights are those of the rows (``fit`` scales them to mean 1 over the
    training rows, so a weighted batch's loss is on the unweighted scale);
    without them the plain mean, bit for bit as before.
    """
    if weight is None:
        return values.mean()
    return (values * weight.to(values.dtype)).mean()


def positive(raw: Tensor) -> Tensor:
    """Map unconstrained values to strictly positive ones: ``softplus(raw) + 1e-6``.

    Parameters
    ----------
    raw : Tensor
        Unconstrained values, usually a slice of a decoder's output. Softplus
        over a non-contiguous slice runs a scalar loop, over a contiguous copy
        about ten times faster on a CPU, so the slice is copied first.

    Returns
    -------
    Tensor
        Same shape and dtype as ``raw``, every entry at least ``1e-6``: the
        scale (or degrees of freedom) floor of every output family.

    Examples
    --------
    >>> import torch
    >>> from skprobae.distributions import positive
    >>> bool((positive(torch.tensor([-100.0, 0.0, 3.0])) > 0).all())
    True
    >>> round(positive(torch.tensor([0.0])).item(), 4)  # softplus(0) = log 2
    0.6931
    """
    return nn.functional.softplus(raw.contiguous()) + SCALE_FLOOR


def lower_cholesky(raw: Tensor, n_features: int) -> Tensor:
    """Fill a lower-triangular matrix with a positive diagonal from flat values.

    Parameters
    ----------
    raw : Tensor of shape (..., n_features * (n_features + 1) / 2)
        The first ``n_features`` values become the diagonal (through
        :func:`positive`), the rest, divided by ``sqrt(n_features)``, fill the
        strictly lower triangle row by row. The division keeps each row's
        off-diagonal norm O(1) for unit-scale raw values: with O(1) entries, a
        random 784 x 784 factor makes float32 triangular solves overflow at
        initialisation.
    n_features : int
        Size of the square factor.

    Returns
    -------
    Tensor of shape (..., n_features, n_features)
        Lower triangular, strictly positive diagonal: a valid Cholesky factor.

    Examples
    --------
    >>> import torch
    >>> from skprobae.distributions import lower_cholesky
    >>> factor = lower_cholesky(torch.zeros(5, 6), 3)  # 3 diagonal + 3 off-diagonal values per row
    >>> tuple(factor.shape)
    (5, 3, 3)
    >>> bool((factor.triu(1) == 0).all()), bool((factor.diagonal(dim1=-2, dim2=-1) > 0).all())
    (True, True)
    """
    d = n_features
    diagonal = positive(raw[..., :d])
    rows, cols = torch.tril_indices(d, d, offset=-1, device=raw.device)
    flat = raw.new_zeros(*raw.shape[:-1], d * d)
    flat[..., rows * d + cols] = raw[..., d:] / math.sqrt(d)
    return flat.view(*raw.shape[:-1], d, d) + torch.diag_embed(diagonal)


def observed_block_cholesky(scale_tril: Tensor, observed: Tensor) -> Tensor:
    """Cholesky factor of the observed block of ``L L^T``, embedded with an identity over the missing entries.

    With ``M`` the 0/1 diagonal of ``observed``, the factor of ``M L L^T M +
    (I - M)``: its log-determinant is that of the observed block, and a
    residual that is zero on the missing entries whitens to the observed
    block's whitened residual. One batched Cholesky, whatever the patterns.
    """
    mask = observed.to(scale_tril.dtype)
    covariance = scale_tril @ scale_tril.transpose(-1, -2)
    covariance = covariance * mask[..., :, None] * mask[..., None, :] + torch.diag_embed(1 - mask)
    return torch.linalg.cholesky(covariance)


def n_tril(n_features: int) -> int:
    """Number of free values in a lower-triangular ``n_features`` square matrix."""
    return n_features * (n_features + 1) // 2


class OutputDistribution(nn.Module):
    """Turns a decoder's raw output into a distribution over the input features.

    A subclass declares how many raw values it needs per sample
    (:attr:`n_params`) and builds a :class:`torch.distributions.Distribution`
    with batch shape ``params.shape[:-1]`` and event shape ``(n_features,)``
    from them. Everything else (loss, point estimate, variance, mixtures) is
    derived from that distribution, so a subclass usually only writes
    :meth:`distribution`. Being an :class:`~torch.nn.Module`, a family may hold
    learnable parameters of its own; they train with the autoencoder.

    Parameters
    ----------
    n_features : int
        Dimension of the data the distribution is over.

    See Also
    --------
    make_distribution : Build a registered family by name.
    register_distribution : Make a new family available to every estimator.

    Notes
    -----
    Every method takes ``params``, a tensor of shape ``(..., n_params)``: the
    decoder's raw output for a batch of rows. Log-densities are returned in
    float64 (per-feature terms in the dtype of ``params``, the sum over
    features in float64), whatever the dtype of ``params``.

    Examples
    --------
    A family with learnable scales shared by all rows (one mean per feature
    from the decoder):

    >>> import torch
    >>> from torch.distributions import Independent, Normal
    >>> from skprobae.distributions import OutputDistribution, positive
    >>> class SharedScaleNormal(OutputDistribution):
    ...     def __init__(self, n_features):
    ...         super().__init__(n_features)
    ...         self.raw_scale = torch.nn.Parameter(torch.zeros(n_features))
    ...     @property
    ...     def n_params(self):
    ...         return self.n_features
    ...     def distribution(self, params):
    ...         return Independent(Normal(params, positive(self.raw_scale)), 1)
    >>> family = SharedScaleNormal(3)
    >>> params = torch.zeros(4, family.n_params)
    >>> family.log_prob(params, torch.zeros(4, 3)).dtype
    torch.float64
    >>> tuple(family.sample_values(params, n_samples=2).shape)
    (2, 4, 3)
    """

    point_estimate_kind: ClassVar[str] = "mean"
    """``"mean"``, ``"mode"``, or ``"sample_mean"`` (no closed form: the family
    implements ``moments(params) -> (mean, variance)`` from draws)."""

    def __init__(self, n_features: int):
        super().__init__()
        self.n_features = n_features

    @property
    def n_params(self) -> int:
        """Raw decoder outputs needed per sample."""
        raise NotImplementedError

    @property
    def feature_channels(self) -> int:
        """Raw values per feature that lead the layout (0 if none).

        Raw parameters are laid out as ``feature_channels`` blocks of
        ``n_features`` values (channel-major: e.g. all means, then all scales)
        followed by the remaining values (degrees of freedom, Cholesky
        entries, mixture logits). A convolutional decoder emits the first part
        as image channels and the rest from a linear layer.
        """
        return 0

    def assemble(self, per_feature: Tensor, extra: Tensor) -> Tensor:
        """Raw parameters from a per-feature part and the remaining values.

        Parameters
        ----------
        per_feature : Tensor of shape (n, feature_channels, n_features)
            The channel-major part (e.g. a convolutional decoder's image channels).
        extra : Tensor of shape (n, n_params - feature_channels * n_features)
            The remaining raw values.

        Returns
        -------
        Tensor of shape (n, n_params)
        """
        return torch.cat([per_feature.flatten(1), extra], dim=-1)

    @property
    def inference_cost(self) -> int:
        """Floats held per sample while scoring; sets the inference batch size."""
        return self.n_params

    def distribution(self, params: Tensor) -> Distribution:
        """Distribution of ``x`` given raw decoder outputs ``params``.

        Parameters
        ----------
        params : Tensor of shape (..., n_params)
            Raw decoder output.

        Returns
        -------
        torch.distributions.Distribution
            Batch shape ``params.shape[:-1]``, event shape ``(n_features,)``.
        """
        raise NotImplementedError

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """Log-density of each row of ``x``, in nats.

        This default evaluates ``distribution`` in float64; families override
        it to compute per-feature terms in the dtype of ``params`` and sum
        them in float64.

        Parameters
        ----------
        params : Tensor of shape (..., n_params)
            Raw decoder output.
        x : Tensor of shape (..., n_features)
            The data rows.

        Returns
        -------
        Tensor of shape params.shape[:-1], float64
        """
        return self.distribution(params.double()).log_prob(x.double())

    @property
    def marginalizes(self) -> bool:
        """Whether :meth:`log_prob_observed` scores rows with missing entries (an exact marginal)."""
        return type(self).log_prob_observed is not OutputDistribution.log_prob_observed

    def sample_values(self, params: Tensor, n_samples: int) -> Tensor:
        """Draws of ``x`` for every row of ``params``.

        Parameters
        ----------
        params : Tensor of shape (..., n_params)
            Raw decoder output.
        n_samples : int
            Draws per row.

        Returns
        -------
        Tensor of shape (n_samples, ..., n_features)
        """
        return self.distribution(params).sample((n_samples,))

    def log_prob_observed(self, params: Tensor, x: Tensor, observed: Tensor) -> Tensor:
        """Log-density of the observed entries of each row: the marginal over the ``observed`` (bool) block.

        Families with a closed-form marginal override this; the default
        accepts only rows with every entry observed.

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
            Log-density of the observed entries, in nats (0 for a row with
            nothing observed).

        Raises
        ------
        ValueError
            If an entry is missing and the family has no closed-form marginal.
        """
        if not bool(observed.all()):
            raise ValueError(
                f"The output distribution {type(self).__name__} has no closed-form marginal over the observed "
                "entries of a row, so it cannot score or train on rows with missing values (NaN); choose a "
                "factorised or full-covariance family (normal, normal_diag, normal_full, t, t_diag, t_full, mse) "
                "or impute X first (skprobae.PAEImputer)."
            )
        return self.log_prob(params, x)

    def scale_loss(self, nll: Tensor) -> Tensor:
        """Map the mean negative log-likelihood to the training loss (identity here).

        Parameters
        ----------
        nll : Tensor
            Mean negative log-likelihood of a batch, a scalar.

        Returns
        -------
        Tensor
            The training loss, a scalar.
        """
        return nll

    def loss(self, params: Tensor, x: Tensor, weight: Tensor | None = None) -> Tensor:
        """Training loss of a batch: the mean negative log-likelihood, through :meth:`scale_loss`.

        A family that overrides it must accept ``weight`` and weight each
        row's term by it (:func:`batch_mean`), so that ``fit(X,
        sample_weight=...)`` trains it.

        Parameters
        ----------
        params : Tensor of shape (n, n_params)
            Raw decoder output.
        x : Tensor of shape (n, n_features)
            The batch.
        weight : Tensor of shape (n,), optional
            Per-row weights (``sample_weight``); None weighs every row 1.

        Returns
        -------
        Tensor
            A scalar, differentiable with respect to ``params``.
        """
        return self.scale_loss(-batch_mean(self.log_prob(params, x), weight))

    def point_estimate(self, params: Tensor) -> Tensor:
        """The mean (normal families) or mode (Student-t families) of ``x``.

        Parameters
        ----------
        params : Tensor of shape (..., n_params)
            Raw decoder output.

        Returns
        -------
        Tensor of shape (..., n_features)
            What ``reconstruct`` and ``inverse_transform`` return.
        """
        dist = self.distribution(params)
        return dist.mode if self.point_estimate_kind == "mode" else dist.mean

    def variance(self, params: Tensor) -> Tensor:
        """Per-feature variance of ``x``.

        Parameters
        ----------
        params : Tensor of shape (..., n_params)
            Raw decoder output.

        Returns
        -------
        Tensor of shape (..., n_features)
            NaN where the variance does not exist (Student-t with ``df <= 2``).
        """
        return self.distribution(params).variance

    def point_and_variance(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`point_estimate` and :meth:`variance` of the same ``params``, as a pair.

        A family that draws samples for both (``maf``) draws them once.

        Parameters
        ----------
        params : Tensor of shape (..., n_params)
            Raw decoder output.

        Returns
        -------
        point, variance : Tensor of shape (..., n_features)
            As :meth:`point_estimate` and :meth:`variance` give them.
        """
        return self.point_estimate(params), self.variance(params)

    def components(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """Point estimate of each mixture component and its log-weight.

        A single distribution is a mixture of one component with weight 1.

        Parameters
        ----------
        params : Tensor of shape (..., n_params)
            Raw decoder output.

        Returns
        -------
        points : Tensor of shape (..., K, n_features)
            Each component's point estimate.
        log_weights : Tensor of shape (..., K)
            Each component's log mixture weight.
        """
        point = self.point_estimate(params).unsqueeze(-2)
        return point, point.new_zeros(point.shape[:-1])

    def extra_repr(self) -> str:
        """The module's repr details.

        Returns
        -------
        str
        """
        return f"n_features={self.n_features}"


LOG_2PI = math.log(2 * math.pi)
