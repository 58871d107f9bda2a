"""Multivariate Student-t distribution and the Student-t output families."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Chi2, Distribution, constraints

from ._base import OutputDistribution, lower_cholesky, n_tril, observed_block_cholesky, positive

_NO_SHAPE = torch.Size()


class MultivariateStudentT(Distribution):
    r"""Multivariate Student-t distribution with a triangular or diagonal scale.

    .. math::

        \log p(x) = \log\Gamma\!\left(\tfrac{\nu + d}{2}\right)
        - \log\Gamma\!\left(\tfrac{\nu}{2}\right) - \tfrac{d}{2}\log(\nu\pi)
        - \log|L| - \tfrac{\nu + d}{2}\log\!\left(1 + \tfrac{1}{\nu}
        \lVert L^{-1}(x - \mu)\rVert^2\right)

    with scale matrix :math:`\Sigma = LL^\top`. Samples are
    :math:`\mu + L z \sqrt{\nu / w}` with :math:`z \sim \mathcal{N}(0, I)` and
    :math:`w \sim \chi^2_\nu`. ``torch.distributions`` has only the univariate
    ``StudentT``; a product of those is a different distribution (one mixing
    variable per feature instead of one shared by all).

    Parameters
    ----------
    df : Tensor of shape batch_shape
        Degrees of freedom, positive.
    loc : Tensor of shape batch_shape + (d,)
        Location (the mode; the mean when ``df > 1``).
    scale_tril : Tensor of shape batch_shape + (d, d), optional
        Lower-triangular scale factor with a positive diagonal.
    scale_diag : Tensor of shape batch_shape + (d,), optional
        Diagonal of a diagonal scale factor; give exactly one of the two.
    validate_args : bool or None, default=None
        Check the arguments and values, as in :class:`torch.distributions.Distribution`.

    Examples
    --------
    >>> import torch
    >>> from skprobae.distributions import MultivariateStudentT
    >>> t = MultivariateStudentT(torch.tensor(5.0), torch.zeros(3), scale_tril=torch.eye(3))
    >>> t.batch_shape, t.event_shape
    (torch.Size([]), torch.Size([3]))
    >>> tuple(t.rsample((4,)).shape)
    (4, 3)
    >>> bool(t.log_prob(torch.zeros(3)) > t.log_prob(torch.ones(3)))
    True
    """

    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        df: Tensor,
        loc: Tensor,
        scale_tril: Tensor | None = None,
        scale_diag: Tensor | None = None,
        validate_args: bool | None = None,
    ):
        if (scale_tril is None) == (scale_diag is None):
            raise ValueError("Give exactly one of scale_tril and scale_diag.")
        d = loc.shape[-1]
        scale = scale_diag if scale_tril is None else scale_tril
        scale_batch = scale.shape[:-1] if scale_tril is None else scale.shape[:-2]
        batch_shape = torch.broadcast_shapes(df.shape, loc.shape[:-1], scale_batch)
        self.df = df.expand(batch_shape)
        self.loc = loc.expand((*batch_shape, d))
        if scale_tril is None:
            self.scale_diag = scale_diag.expand((*batch_shape, d))
            self.scale_tril = None
        else:
            self.scale_tril = scale_tril.expand((*batch_shape, d, d))
            self.scale_diag = None
        super().__init__(batch_shape, torch.Size([d]), validate_args=validate_args)

    @property
    def arg_constraints(self) -> dict:
        """Constraints of ``df``, ``loc`` and whichever scale was given."""
        scale = (
            {"scale_diag": constraints.independent(constraints.positive, 1)}
            if self.scale_tril is None
            else {"scale_tril": constraints.lower_cholesky}
        )
        return {"df": constraints.positive, "loc": constraints.real_vector, **scale}

    def _whiten(self, diff: Tensor) -> Tensor:
        if self.scale_diag is not None:
            return diff / self.scale_diag
        return torch.linalg.solve_triangular(self.scale_tril, diff.unsqueeze(-1), upper=False).squeeze(-1)

    def _log_det_scale(self) -> Tensor:
        diag = self.scale_diag if self.scale_diag is not None else self.scale_tril.diagonal(dim1=-2, dim2=-1)
        return diag.log().sum(-1, dtype=torch.float64)

    def _scale_variance(self) -> Tensor:
        """Diagonal of the scale matrix ``L L^T``."""
        if self.scale_diag is not None:
            return self.scale_diag**2
        return (self.scale_tril**2).sum(-1)

    def log_prob(self, value: Tensor) -> Tensor:
        """Log-density of ``value``, in nats.

        Parameters
        ----------
        value : Tensor of shape (..., d)
            Points, broadcast against the batch shape.

        Returns
        -------
        Tensor of shape (...,), float64
        """
        if self._validate_args:
            self._validate_sample(value)
        d = self.event_shape[0]
        maha = self._whiten(value.to(self.loc.dtype) - self.loc).pow(2).sum(-1, dtype=torch.float64)
        df = self.df.double()
        return (
            torch.lgamma((df + d) / 2)
            - torch.lgamma(df / 2)
            - 0.5 * d * torch.log(df * math.pi)
            - self._log_det_scale()
            - 0.5 * (df + d) * torch.log1p(maha / df)
        )

    def log_prob_observed(self, value: Tensor, observed: Tensor) -> Tensor:
        """Log-density of the observed entries: a Student-t with the same ``df`` over the observed block (exact).

        Parameters
        ----------
        value : Tensor of shape (..., d)
            Points; any finite value where ``observed`` is False.
        observed : bool Tensor of shape (..., d)
            True where the entry of ``value`` is observed.

        Returns
        -------
        Tensor of shape (...,), float64
        """
        d = observed.sum(-1, dtype=torch.float64)
        residual = torch.where(observed, value.to(self.loc.dtype) - self.loc, 0.0)
        if self.scale_diag is not None:
            maha = (residual / self.scale_diag).pow(2).sum(-1, dtype=torch.float64)
            log_det = torch.where(observed, self.scale_diag.log(), 0.0).sum(-1, dtype=torch.float64)
        else:
            factor = observed_block_cholesky(self.scale_tril.double(), observed)
            white = torch.linalg.solve_triangular(factor, residual.double().unsqueeze(-1), upper=False).squeeze(-1)
            maha = white.pow(2).sum(-1)
            log_det = factor.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        df = self.df.double()
        return (
            torch.lgamma((df + d) / 2)
            - torch.lgamma(df / 2)
            - 0.5 * d * torch.log(df * math.pi)
            - log_det
            - 0.5 * (df + d) * torch.log1p(maha / df)
        )

    def rsample(self, sample_shape: torch.Size = _NO_SHAPE) -> Tensor:
        """Reparameterised draws: ``loc + L z sqrt(df / w)``.

        Parameters
        ----------
        sample_shape : torch.Size, default=()
            Leading shape of the draws.

        Returns
        -------
        Tensor of shape sample_shape + batch_shape + (d,)
        """
        shape = self._extended_shape(sample_shape)
        z = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        w = Chi2(self.df).rsample(sample_shape)
        if self.scale_diag is not None:
            scaled = z * self.scale_diag
        else:
            scaled = (self.scale_tril @ z.unsqueeze(-1)).squeeze(-1)
        return self.loc + scaled * torch.sqrt(self.df / w).unsqueeze(-1)

    @property
    def mode(self) -> Tensor:
        """The location ``loc``."""
        return self.loc

    @property
    def mean(self) -> Tensor:
        """``loc`` where ``df > 1``, NaN elsewhere (the mean does not exist)."""
        nan = torch.full_like(self.loc, math.nan)
        return torch.where((self.df > 1).unsqueeze(-1), self.loc, nan)

    @property
    def variance(self) -> Tensor:
        """Per-feature variance ``diag(L L^T) df / (df - 2)``; NaN where ``df <= 2``."""
        df = self.df.unsqueeze(-1)
        factor = torch.where(df > 2, df / (df - 2), torch.full_like(df, math.nan))
        return self._scale_variance() * factor

    def expand(self, batch_shape, _instance=None):
        """The same distribution with its parameters broadcast to ``batch_shape``.

        Parameters
        ----------
        batch_shape : torch.Size
            The new batch shape.
        _instance : None
            Unused; part of :meth:`torch.distributions.Distribution.expand`'s signature.

        Returns
        -------
        MultivariateStudentT
        """
        batch_shape = torch.Size(batch_shape)
        d = self.event_shape[0]
        if self.scale_tril is not None:
            return MultivariateStudentT(
                self.df.expand(batch_shape),
                self.loc.expand((*batch_shape, d)),
                scale_tril=self.scale_tril.expand((*batch_shape, d, d)),
                validate_args=False,
            )
        return MultivariateStudentT(
            self.df.expand(batch_shape),
            self.loc.expand((*batch_shape, d)),
            scale_diag=self.scale_diag.expand((*batch_shape, d)),
            validate_args=False,
        )


class StudentT(OutputDistribution):
    r"""``t``: :math:`t(\nu, \mu, I)`; the decoder outputs the mean, then ``df``.

    The point estimate is the mode ``mu``; the variance ``df / (df - 2)`` is NaN
    for ``df <= 2``, where it does not exist.

    Parameters
    ----------
    n_features : int
        Dimension of the data the distribution is over.

    Examples
    --------
    >>> import torch
    >>> from skprobae.distributions import make_distribution
    >>> family = make_distribution("t", 3)
    >>> type(family).__name__, family.n_params
    ('StudentT', 4)
    >>> params = torch.zeros(5, family.n_params)
    >>> family.log_prob(params, torch.zeros(5, 3)).shape
    torch.Size([5])
    """

    point_estimate_kind = "mode"
    feature_channels = 1

    @property
    def n_params(self) -> int:
        return self.n_features + 1

    def log_prob_observed(self, params: Tensor, x: Tensor, observed: Tensor) -> Tensor:
        return self.distribution(params).log_prob_observed(x, observed)

    def distribution(self, params: Tensor) -> MultivariateStudentT:
        loc, df = params[..., :-1], positive(params[..., -1])
        return MultivariateStudentT(df, loc, scale_diag=torch.ones_like(loc), validate_args=False)


class DiagonalStudentT(StudentT):
    r"""``t_diag``: :math:`t(\nu, \mu, \mathrm{diag}(\sigma^2))`; means, softplus scales, ``df``.

    Parameters
    ----------
    n_features : int
        Dimension of the data the distribution is over.

    Examples
    --------
    >>> import torch
    >>> from skprobae.distributions import make_distribution
    >>> family = make_distribution("t_diag", 3)
    >>> type(family).__name__, family.n_params
    ('DiagonalStudentT', 7)
    >>> params = torch.zeros(5, family.n_params)
    >>> family.log_prob(params, torch.zeros(5, 3)).shape
    torch.Size([5])
    """

    feature_channels = 2

    @property
    def n_params(self) -> int:
        return 2 * self.n_features + 1

    def distribution(self, params: Tensor) -> MultivariateStudentT:
        d = self.n_features
        loc, raw_scale, df = params[..., :d], params[..., d : 2 * d], positive(params[..., -1])
        return MultivariateStudentT(df, loc, scale_diag=positive(raw_scale), validate_args=False)


class FullStudentT(StudentT):
    r"""``t_full``: :math:`t(\nu, \mu, LL^\top)`; means, Cholesky scale factor ``L``, ``df``.

    Parameters
    ----------
    n_features : int
        Dimension of the data the distribution is over.

    Examples
    --------
    >>> import torch
    >>> from skprobae.distributions import make_distribution
    >>> family = make_distribution("t_full", 3)
    >>> type(family).__name__, family.n_params
    ('FullStudentT', 10)
    >>> params = torch.zeros(5, family.n_params)
    >>> family.log_prob(params, torch.zeros(5, 3)).shape
    torch.Size([5])
    """

    feature_channels = 1

    @property
    def n_params(self) -> int:
        return self.n_features + n_tril(self.n_features) + 1

    @property
    def inference_cost(self) -> int:
        return self.n_params + self.n_features**2

    def distribution(self, params: Tensor) -> MultivariateStudentT:
        d = self.n_features
        loc, raw_tril, df = params[..., :d], params[..., d:-1], positive(params[..., -1])
        return MultivariateStudentT(df, loc, scale_tril=lower_cholesky(raw_tril, d), validate_args=False)
