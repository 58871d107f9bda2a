"""Latent priors: a density over codes with a map to and from a standard-normal base space.

Every estimator samples through its prior (``z = prior.from_base(u)``,
``u ~ N(0, I)``) and scores codes with ``prior.log_prob(z)``. Networks (a
flow) compute in their own dtype; ``log_prob`` and the log-determinants are
returned in float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..distributions._base import batch_mean
from ..flows import FlowAdapter
from ._noise import noise_generator

LOG_2PI = math.log(2 * math.pi)


def standard_normal_log_prob(u: Tensor) -> Tensor:
    """``log N(u; 0, I)`` per row, summed in float64.

    Parameters
    ----------
    u : Tensor of shape (..., K)
        Points of the base space, with any leading dimensions.

    Returns
    -------
    Tensor of shape (...)
        Float64 log-densities of the ``K``-dimensional standard normal.

    Examples
    --------
    >>> import torch
    >>> from skprobae.nn import standard_normal_log_prob
    >>> standard_normal_log_prob(torch.zeros(2, 1))
    tensor([-0.9189, -0.9189], dtype=torch.float64)
    """
    u = u.double()
    return -0.5 * (u * u).sum(-1) - 0.5 * u.shape[-1] * LOG_2PI


class LatentPrior(nn.Module):
    """A density over ``n_components``-dimensional codes, as a bijection to a standard normal.

    Subclasses implement :meth:`to_base` (``u = b(z)`` and ``log |det db/dz|``
    in float64) and :meth:`from_base` (``z = b^{-1}(u)``).

    Parameters
    ----------
    n_components : int
        Dimension ``K`` of the codes.

    See Also
    --------
    StandardNormalPrior, GaussianPrior, FlowPrior

    Examples
    --------
    >>> import torch
    >>> from skprobae.nn import LatentPrior
    >>> class Shifted(LatentPrior):
    ...     def to_base(self, z):
    ...         return z - 1, torch.zeros(z.shape[:-1], dtype=torch.float64)
    ...
    ...     def from_base(self, u):
    ...         return u + 1
    >>> prior = Shifted(2)
    >>> prior
    Shifted(n_components=2)
    >>> prior.log_prob(torch.ones(1, 2))
    tensor([-1.8379], dtype=torch.float64)
    """

    def __init__(self, n_components: int):
        super().__init__()
        self.n_components = n_components

    def to_base(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """The map ``u = b(z)`` into the standard-normal base space, and its log-determinant.

        Parameters
        ----------
        z : Tensor of shape (..., n_components)
            Codes, with any leading dimensions.

        Returns
        -------
        u : Tensor of shape (..., n_components)
            The base-space points.
        log_det : Tensor of shape (...)
            ``log |det db/dz|`` per row, float64.
        """
        raise NotImplementedError

    def from_base(self, u: Tensor) -> Tensor:
        """The inverse map ``z = b^{-1}(u)``, differentiable in ``u``.

        Parameters
        ----------
        u : Tensor of shape (..., n_components)
            Base-space points, with any leading dimensions (``u ~ N(0, I)``
            samples the prior).

        Returns
        -------
        Tensor of shape (..., n_components)
            The codes.
        """
        raise NotImplementedError

    def log_prob(self, z: Tensor) -> Tensor:
        """Log-density of each row of ``z``, float64.

        Parameters
        ----------
        z : Tensor of shape (..., n_components)
            Codes, with any leading dimensions.

        Returns
        -------
        Tensor of shape (...)
            ``log N(b(z); 0, I) + log |det db/dz|``, float64.
        """
        u, log_det = self.to_base(z)
        return standard_normal_log_prob(u) + log_det

    def extra_repr(self) -> str:
        """The extra line of the module's ``repr``.

        Returns
        -------
        str
            ``"n_components=K"``.
        """
        return f"n_components={self.n_components}"


class StandardNormalPrior(LatentPrior):
    r""":math:`\mathcal{N}(0, I)`: the base space itself (``b`` is the identity).

    Parameters
    ----------
    n_components : int
        Dimension ``K`` of the codes.

    Examples
    --------
    >>> import torch
    >>> from skprobae.nn import StandardNormalPrior
    >>> prior = StandardNormalPrior(2)
    >>> prior.log_prob(torch.zeros(1, 2))
    tensor([-1.8379], dtype=torch.float64)
    >>> prior.from_base(torch.ones(1, 2))
    tensor([[1., 1.]])
    """

    def to_base(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z, z.new_zeros(z.shape[:-1], dtype=torch.float64)

    def from_base(self, u: Tensor) -> Tensor:
        return u


class GaussianPrior(LatentPrior):
    r""":math:`\mathcal{N}(\mu, \Sigma)` through a square root ``F`` of ``\Sigma``: ``z = \mu + F u``.

    ``F`` need not be triangular or invertible: a singular covariance (codes
    on a subspace) still samples; :meth:`to_base` then uses the
    pseudo-inverse and the log-determinant is ``-inf``.

    Parameters
    ----------
    mean : Tensor of shape (K,)
        The mean ``\mu`` (registered as a buffer).
    factor : Tensor of shape (K, K)
        A square root ``F`` of the covariance, ``\Sigma = F F^T`` (registered
        as a buffer).

    Examples
    --------
    >>> import torch
    >>> from skprobae.nn import GaussianPrior
    >>> prior = GaussianPrior(torch.zeros(2), 2 * torch.eye(2))
    >>> prior.from_base(torch.ones(1, 2))
    tensor([[2., 2.]])
    >>> u, log_det = prior.to_base(torch.full((1, 2), 2.0))
    >>> u, log_det
    (tensor([[1., 1.]]), tensor([-1.3863], dtype=torch.float64))
    """

    def __init__(self, mean: Tensor, factor: Tensor):
        super().__init__(len(mean))
        self.register_buffer("mean", mean)
        self.register_buffer("factor", factor)

    @classmethod
    def from_covariance(cls, mean, covariance) -> GaussianPrior:
        """The prior with ``F = V sqrt(max(lambda, 0))`` from the eigendecomposition of ``covariance``.

        Parameters
        ----------
        mean : array-like of shape (K,)
            The mean; stored as float64.
        covariance : array-like of shape (K, K)
            A symmetric positive semi-definite covariance; negative eigenvalues
            (round-off) are clipped to 0.

        Returns
        -------
        GaussianPrior
            The prior, with float64 ``mean`` and ``factor`` buffers.

        Examples
        --------
        >>> import torch
        >>> from skprobae.nn import GaussianPrior
        >>> prior = GaussianPrior.from_covariance([0.0, 0.0], [[4.0, 0.0], [0.0, 1.0]])
        >>> (prior.factor @ prior.factor.mT).round(decimals=6)
        tensor([[4., 0.],
                [0., 1.]], dtype=torch.float64)
        """
        covariance = torch.as_tensor(covariance, dtype=torch.float64)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        factor = eigenvectors * eigenvalues.clamp_min(0).sqrt()
        return cls(torch.as_tensor(mean, dtype=torch.float64), factor)

    def to_base(self, z: Tensor) -> tuple[Tensor, Tensor]:
        factor = self.factor.double()
        u = (z.double() - self.mean.double()) @ torch.linalg.pinv(factor).mT
        log_det = -torch.linalg.slogdet(factor)[1].expand(z.shape[:-1])
        return u.to(z.dtype), log_det

    def from_base(self, u: Tensor) -> Tensor:
        return self.mean + u.to(self.mean.dtype) @ self.factor.mT


class FlowPrior(LatentPrior):
    """A normalizing flow on standardized codes: ``z = loc + scale * b^{-1}(u)``.

    The flow is trained by maximum likelihood on codes already standardized
    (``loc`` 0 and ``scale`` 1 while training), with Gaussian jitter of std
    ``noise`` added to every training batch; :meth:`standardize` then sets the
    standardization so that :meth:`log_prob` is the density of raw codes
    (its log-determinant included).

    Parameters
    ----------
    flow : FlowAdapter
        The flow over ``flow.n_features``-dimensional standardized codes.
    noise : float, default=0.0
        Std of the jitter added to training codes (not in evaluation mode).

    Examples
    --------
    >>> import torch
    >>> from skprobae.flows import FlowAdapter, build_flow
    >>> from skprobae.nn import FlowPrior
    >>> _ = torch.manual_seed(0)
    >>> prior = FlowPrior(FlowAdapter(build_flow("maf", 2, transforms=1, hidden_layer_sizes=(8,)), 2))
    >>> prior = prior.standardize(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 2.0]))
    >>> z = prior.from_base(torch.zeros(3, 2))
    >>> z.shape, prior.log_prob(z).shape
    (torch.Size([3, 2]), torch.Size([3]))
    """

    def __init__(self, flow: FlowAdapter, noise: float = 0.0):
        super().__init__(flow.n_features)
        self.flow = flow
        self.noise = noise
        self.register_buffer("loc", torch.zeros(flow.n_features))
        self.register_buffer("scale", torch.ones(flow.n_features))

    def standardize(self, loc: Tensor, scale: Tensor) -> FlowPrior:
        """Make the prior act on raw codes ``loc + scale * (flow's codes)``.

        Parameters
        ----------
        loc : Tensor of shape (n_components,)
            Per-dimension location of the raw codes.
        scale : Tensor of shape (n_components,)
            Per-dimension positive scale of the raw codes.

        Returns
        -------
        FlowPrior
            ``self``, with the ``loc`` and ``scale`` buffers replaced.
        """
        self.loc = torch.as_tensor(loc, dtype=self.loc.dtype, device=self.loc.device)
        self.scale = torch.as_tensor(scale, dtype=self.scale.dtype, device=self.scale.device)
        return self

    def to_base(self, z: Tensor) -> tuple[Tensor, Tensor]:
        u, log_det = self.flow.to_base((z - self.loc.to(z.dtype)) / self.scale.to(z.dtype))
        return u, log_det.double() - self.scale.double().log().sum()

    def from_base(self, u: Tensor) -> Tensor:
        z = self.flow.from_base(u)
        return z * self.scale.to(z.dtype) + self.loc.to(z.dtype)

    # training on (standardized) codes, through LikelihoodNet
    def forward(self, z: Tensor) -> Tensor:
        """The identity: the prior is trained on the codes themselves (see :meth:`loss`).

        Parameters
        ----------
        z : Tensor of shape (batch, n_components)
            Codes.

        Returns
        -------
        Tensor of shape (batch, n_components)
            ``z`` unchanged.
        """
        return z

    def loss(self, z_out: Tensor, z: Tensor, weight: Tensor | None = None) -> Tensor:
        """Mean negative log-likelihood of a batch of codes.

        In training mode with ``noise > 0``, Gaussian jitter of std ``noise``
        is added to ``z`` first.

        Parameters
        ----------
        z_out : Tensor
            The output of :meth:`forward`; unused.
        z : Tensor of shape (batch, n_components)
            The codes (standardized while the flow is trained).
        weight : Tensor of shape (batch,), optional
            Per-row weights (``sample_weight``).

        Returns
        -------
        Tensor
            A float64 scalar, ``-log_prob(z).mean()``.
        """
        if self.training and self.noise > 0:
            noise = torch.randn(z.shape, dtype=z.dtype, device=z.device, generator=noise_generator(z.device))
            z = z + self.noise * noise
        return -batch_mean(self.log_prob(z), weight)
