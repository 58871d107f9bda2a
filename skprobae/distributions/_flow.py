"""The ``maf`` output family: a masked autoregressive flow whose base is centred on the decoder output."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import Independent, Normal
from zuko.distributions import NormalizingFlow

from ..flows import FlowAdapter, build_flow, prompt_cycle_collection
from ._base import LOG_2PI, OutputDistribution, sum_features

POINT_SAMPLES_SEED = 0
"""Seed of the base draws shared by every row when averaging samples (deterministic point estimates)."""


class _FlowDistribution(NormalizingFlow):
    """zuko's ``NormalizingFlow`` whose sampling frees each inverse pass's tensors as it goes."""

    def rsample(self, shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        with prompt_cycle_collection():
            return super().rsample(shape)


class MaskedAutoregressiveFlow(OutputDistribution):
    r"""``maf``: :math:`x = T^{-1}(u)` with :math:`u \sim \mathcal{N}(\mu, I)`, ``mu`` the decoder output.

    The vanilla probabilistic autoencoder paper's flow output: one masked
    autoregressive flow ``T`` (zuko's ``MAF``, learned with the autoencoder
    and shared by every row) maps the data to a base space, where the density
    is a unit normal centred on the decoder output, so

    .. math::

        \log p(x \mid \mu) = \log \mathcal{N}(T(x); \mu, I)
        + \log\left|\det \frac{\partial T}{\partial x}\right|.

    Densities take one pass of ``T``; sampling inverts it, which takes one
    pass per feature. The flow has no closed-form mean: the point estimate is
    the average of ``n_point_samples`` draws (50 in the paper) and the
    variance their sample variance. The draws use base noise seeded once and
    shared by every row, so both are deterministic and do not depend on which
    other rows are in the batch. In a mixture, the K components share the
    flow and differ in their base means.

    Parameters
    ----------
    n_features : int
        Dimension of the data; the decoder outputs one base mean per feature.
    n_point_samples : int, default=50
        Draws averaged for the point estimate and variance.
    transforms : int, default=1
        Autoregressive transforms in ``T``.
    hidden_layer_sizes : sequence of int, default=(10,)
        Hidden widths of each transform's masked network (the paper: one
        10-unit ReLU layer).

    Raises
    ------
    ValueError
        If ``n_point_samples`` or ``transforms`` is below 1.

    Examples
    --------
    >>> import torch
    >>> from skprobae.distributions import make_distribution
    >>> family = make_distribution("maf", 3, n_point_samples=5)
    >>> family.n_params  # the base means
    3
    >>> params = torch.zeros(2, family.n_params)
    >>> family.log_prob(params, torch.zeros(2, 3)).shape, family.point_estimate(params).shape
    (torch.Size([2]), torch.Size([2, 3]))
    """

    point_estimate_kind = "sample_mean"
    feature_channels = 1

    def __init__(
        self,
        n_features: int,
        n_point_samples: int = 50,
        transforms: int = 1,
        hidden_layer_sizes: Sequence[int] = (10,),
    ):
        super().__init__(n_features)
        if int(n_point_samples) < 1 or int(transforms) < 1:
            raise ValueError(
                f"maf needs n_point_samples >= 1 and transforms >= 1, got {n_point_samples} and {transforms}."
            )
        self.n_point_samples = int(n_point_samples)
        self.flow = FlowAdapter(build_flow("maf", n_features, int(transforms), tuple(hidden_layer_sizes)), n_features)

    @property
    def n_params(self) -> int:
        return self.n_features

    @property
    def inference_cost(self) -> int:
        return self.n_features * (2 + self.n_point_samples)

    def distribution(self, params: Tensor) -> NormalizingFlow:
        params = params.to(self.flow.dtype)
        base = Independent(Normal(params, torch.ones_like(params), validate_args=False), 1)
        return _FlowDistribution(self.flow.flow().transform, base)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        u, log_det = self.flow.to_base(x)  # in the flow's dtype; the density in the dtype of params
        u = u.to(params.dtype)
        return -0.5 * sum_features((u - params) ** 2) - 0.5 * self.n_features * LOG_2PI + log_det.double()

    def moments(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance of ``n_point_samples`` draws per row, from seeded base noise shared by all rows.

        Parameters
        ----------
        params : Tensor of shape (..., n_features)
            Base means (the decoder outputs).

        Returns
        -------
        mean : Tensor of shape params.shape
            Average of the draws, in the dtype of ``params``.
        variance : Tensor of shape params.shape
            Their variance (divided by ``n_point_samples``); zeros when
            ``n_point_samples`` is 1.
        """
        generator = torch.Generator(device=params.device).manual_seed(POINT_SAMPLES_SEED)
        shape = (self.n_point_samples, *([1] * (params.dim() - 1)), self.n_features)
        noise = torch.randn(shape, generator=generator, dtype=params.dtype, device=params.device)
        base = params.unsqueeze(0) + noise
        # Invert in chunks of ~1 MiB: the inverse loops once per feature, and smaller
        # temporaries are recycled by the allocator instead of being mapped anew every pass.
        flat = base.reshape(-1, self.n_features)
        rows = max(1, (1 << 17) // self.n_features)
        draws = torch.cat([self.flow.from_base(chunk) for chunk in flat.split(rows)]).view(base.shape)
        draws = draws.to(params.dtype)
        mean = draws.mean(0)
        variance = draws.var(0, correction=0) if self.n_point_samples > 1 else torch.zeros_like(mean)
        return mean, variance

    def point_estimate(self, params: Tensor) -> Tensor:
        return self.moments(params)[0]

    def variance(self, params: Tensor) -> Tensor:
        return self.moments(params)[1]

    def point_and_variance(self, params: Tensor) -> tuple[Tensor, Tensor]:
        return self.moments(params)

    def extra_repr(self) -> str:
        """The number of features and of point-estimate draws, shown in the module's ``repr``.

        Returns
        -------
        str
            ``"n_features=..., n_point_samples=..."``.
        """
        return f"n_features={self.n_features}, n_point_samples={self.n_point_samples}"
