"""Mixtures of K components of any output family."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Categorical, MixtureSameFamily

from ._base import OutputDistribution


class Mixture(OutputDistribution):
    """A mixture of ``n_mixtures`` components of one output family, softmax weights.

    The decoder outputs ``n_mixtures`` logits followed by each component's raw
    parameters. Log-densities go through ``MixtureSameFamily`` (a
    ``logsumexp`` over components).

    The point estimate follows the component family: the mixture mean for
    families summarised by their mean (normal; for ``maf``, the weighted
    average of each component's sample mean), and for families summarised by
    their mode (Student-t) the mode of the component whose mode has the highest
    mixture density. The variance is the mixture's (law of total variance).

    Parameters
    ----------
    component : OutputDistribution
        One component; its parameters are not used, only its definition.
    n_mixtures : int
        Number of components K.

    Examples
    --------
    >>> import torch
    >>> from skprobae.distributions import DiagonalNormal, Mixture, make_distribution
    >>> mixture = Mixture(DiagonalNormal(3), n_mixtures=2)
    >>> mixture.n_params  # 2 logits, then 2 x (3 means + 3 scales)
    14
    >>> mixture.log_prob(torch.zeros(4, mixture.n_params), torch.zeros(4, 3)).shape
    torch.Size([4])
    >>> type(make_distribution("normal_diag", 3, n_mixtures=2)).__name__  # how estimators build one
    'Mixture'
    """

    def __init__(self, component: OutputDistribution, n_mixtures: int):
        super().__init__(component.n_features)
        self.component = component
        self.n_mixtures = n_mixtures
        self.point_estimate_kind = component.point_estimate_kind

    @property
    def n_params(self) -> int:
        return self.n_mixtures * (1 + self.component.n_params)

    @property
    def feature_channels(self) -> int:
        return self.n_mixtures * self.component.feature_channels

    def assemble(self, per_feature: Tensor, extra: Tensor) -> Tensor:
        K, n = self.n_mixtures, per_feature.shape[0]
        logits, component_extra = extra[:, :K], extra[:, K:].reshape(n, K, -1)
        component_features = per_feature.reshape(n, K, -1)
        components = torch.cat([component_features, component_extra], dim=-1)
        return torch.cat([logits, components.flatten(1)], dim=-1)

    @property
    def inference_cost(self) -> int:
        return self.n_mixtures * (1 + self.component.inference_cost)

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor]:
        logits, rest = params.split([self.n_mixtures, params.shape[-1] - self.n_mixtures], dim=-1)
        return logits, rest.unflatten(-1, (self.n_mixtures, self.component.n_params))

    def distribution(self, params: Tensor) -> MixtureSameFamily:
        logits, component_params = self._split(params)
        return MixtureSameFamily(
            Categorical(logits=logits, validate_args=False),
            self.component.distribution(component_params),
            validate_args=False,
        )

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        logits, component_params = self._split(params)
        component_log_prob = self.component.log_prob(component_params, x.unsqueeze(-2))
        return torch.logsumexp(component_log_prob + logits.log_softmax(-1).to(component_log_prob.dtype), dim=-1)

    @property
    def marginalizes(self) -> bool:
        return self.component.marginalizes

    def log_prob_observed(self, params: Tensor, x: Tensor, observed: Tensor) -> Tensor:
        """Each component's marginal over the observed block, mixed with the same weights (exact).

        Parameters
        ----------
        params : Tensor of shape (..., n_params)
            Raw decoder outputs: ``n_mixtures`` logits, then each component's
            parameters.
        x : Tensor of shape (..., n_features)
            The rows; any finite value where ``observed`` is False.
        observed : Tensor of bool, same shape as ``x``
            Which entries of each row are observed.

        Returns
        -------
        Tensor of shape params.shape[:-1]
            Log-density of the observed entries, in the component's dtype
            (float64 for the built-in families).

        Raises
        ------
        ValueError
            If an entry is missing and the component family has no closed-form
            marginal.
        """
        logits, component_params = self._split(params)
        component_log_prob = self.component.log_prob_observed(component_params, x.unsqueeze(-2), observed.unsqueeze(-2))
        return torch.logsumexp(component_log_prob + logits.log_softmax(-1).to(component_log_prob.dtype), dim=-1)

    def scale_loss(self, nll: Tensor) -> Tensor:
        return self.component.scale_loss(nll)

    def _sampled_moments(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """Mixture mean and variance from each component's sampled moments (law of total variance)."""
        logits, component_params = self._split(params)
        means, variances = self.component.moments(component_params)
        weights = logits.softmax(-1).unsqueeze(-1)
        mean = (weights * means).sum(-2)
        return mean, (weights * (variances + means**2)).sum(-2) - mean**2

    def point_estimate(self, params: Tensor) -> Tensor:
        if self.point_estimate_kind == "mean":
            return self.distribution(params).mean
        if self.point_estimate_kind == "sample_mean":
            return self._sampled_moments(params)[0]
        modes, _ = self.components(params)
        # Mixture density at every component's mode: shape (K, ...).
        log_density = self.log_prob(params, modes.movedim(-2, 0))
        best = log_density.argmax(0)
        return torch.take_along_dim(modes, best[..., None, None], dim=-2).squeeze(-2)

    def variance(self, params: Tensor) -> Tensor:
        if self.point_estimate_kind == "sample_mean":
            return self._sampled_moments(params)[1].clamp_min(0)
        return super().variance(params)

    def components(self, params: Tensor) -> tuple[Tensor, Tensor]:
        logits, component_params = self._split(params)
        return self.component.point_estimate(component_params), logits.log_softmax(-1)

    def extra_repr(self) -> str:
        """The number of components, shown in the module's ``repr``.

        Returns
        -------
        str
            ``"n_mixtures=K"``.
        """
        return f"n_mixtures={self.n_mixtures}"
