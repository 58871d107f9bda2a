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

from ..flows import FlowAdapter

LOG_2PI = math.log(2 * math.pi)


def standard_normal_log_prob(u: Tensor) -> Tensor:
    """``log N(u; 0, I)`` per row, summed in float64."""
    u = u.double()
    return -0.5 * (u * u).sum(-1) - 0.5 * u.shape[-1] * LOG_2PI


class LatentPrior(nn.Module):
    """A density over ``n_components``-dimensional codes, as a bijection to a standard normal.

    Subclasses implement :meth:`to_base` (``u = b(z)`` and ``log |det db/dz|``
    in float64) and :meth:`from_base` (``z = b^{-1}(u)``).
    """

    def __init__(self, n_components: int):
        super().__init__()
        self.n_components = n_components

    def to_base(self, z: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def from_base(self, u: Tensor) -> Tensor:
        raise NotImplementedError

    def log_prob(self, z: Tensor) -> Tensor:
        """Log-density of each row of ``z``, float64."""
        u, log_det = self.to_base(z)
        return standard_normal_log_prob(u) + log_det

    def extra_repr(self) -> str:
        return f"n_components={self.n_components}"


class StandardNormalPrior(LatentPrior):
    r""":math:`\mathcal{N}(0, I)`: the base space itself."""

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
    factor : Tensor of shape (K, K)
    """

    def __init__(self, mean: Tensor, factor: Tensor):
        super().__init__(len(mean))
        self.register_buffer("mean", mean)
        self.register_buffer("factor", factor)

    @classmethod
    def from_covariance(cls, mean, covariance) -> GaussianPrior:
        """The prior with ``F = V sqrt(max(lambda, 0))`` from the eigendecomposition of ``covariance``."""
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
    noise : float
        Std of the jitter added to training codes (not in evaluation mode).
    """

    def __init__(self, flow: FlowAdapter, noise: float = 0.0):
        super().__init__(flow.n_features)
        self.flow = flow
        self.noise = noise
        self.register_buffer("loc", torch.zeros(flow.n_features))
        self.register_buffer("scale", torch.ones(flow.n_features))

    def standardize(self, loc: Tensor, scale: Tensor) -> FlowPrior:
        """Make the prior act on raw codes ``loc + scale * (flow's codes)``."""
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
        return z

    def loss(self, z_out: Tensor, z: Tensor) -> Tensor:
        if self.training and self.noise > 0:
            z = z + self.noise * torch.randn_like(z)
        return -self.log_prob(z).mean()
