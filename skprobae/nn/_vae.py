"""The torch module of the variational autoencoder: encoder, (flow) posterior, decoder, prior, ELBO."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._engine import network_dtype
from ..distributions import OutputDistribution, positive
from ..distributions._base import batch_mean, sum_features
from ._noise import noise_generator
from ._prior import LOG_2PI, LatentPrior, StandardNormalPrior
from ._rows import apply_rows


class VariationalModule(nn.Module):
    """Encoder ``q(z|x)``, decoder ``p(x|z)``, prior ``p(z)``; ``loss`` is the (beta-)ELBO.

    Parameters
    ----------
    encoder : nn.Module
        Maps ``x`` to ``2 K`` values: posterior means and raw scales.
    decoder : nn.Module
        Maps ``z`` to the raw parameters of ``head``.
    head : OutputDistribution
        The output family ``p(x|z)``.
    n_components : int
        Latent dimension ``K``.
    posterior_flow : zuko flow or None
        Conditioned on the encoder output; its data-to-base direction (one
        parallel pass) maps a Gaussian draw ``z0`` to ``z``: an inverse
        autoregressive flow. None keeps the diagonal Gaussian posterior.
    prior : LatentPrior
        The prior ``p(z)``.
    beta : float, default=1.0
        Weight of the KL term: the objective is ``E[-log p(x|z)] + beta * KL``
        (the beta-ELBO) when ``capacity`` is 0.
    capacity : float, default=0.0
        Target KL: when nonzero the objective is ``E[-log p(x|z)] + beta * |KL - capacity|``.
    inputs : nn.Module or None, default=None
        Maps raw rows to the encoder's input (see :class:`~skprobae.nn.Autoencoder`);
        None is the identity.

    Attributes
    ----------
    loss_terms : dict of str to Tensor
        The detached ``"reconstruction"`` and ``"kl"`` terms of the last :meth:`loss`.

    Examples
    --------
    >>> import torch
    >>> from skprobae.distributions import DiagonalNormal
    >>> from skprobae.nn import StandardNormalPrior, VariationalModule, make_mlp
    >>> _ = torch.manual_seed(0)
    >>> head = DiagonalNormal(3)
    >>> vae = VariationalModule(
    ...     make_mlp(3, [8], 2 * 2), make_mlp(2, [8], head.n_params), head, 2, None, StandardNormalPrior(2)
    ... )
    >>> x = torch.randn(5, 3)
    >>> encoded = vae(x)
    >>> encoded.shape
    torch.Size([5, 4])
    >>> loss = vae.loss(encoded, x)
    >>> sorted(vae.loss_terms)
    ['kl', 'reconstruction']
    >>> vae.log_evidence(x, torch.randn(10, 2)).shape
    torch.Size([5])
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        head: OutputDistribution,
        n_components: int,
        posterior_flow: nn.Module | None,
        prior: LatentPrior,
        beta: float = 1.0,
        capacity: float = 0.0,
        inputs: nn.Module | None = None,
    ):
        super().__init__()
        self.inputs = inputs if inputs is not None else nn.Identity()
        self.encoder, self.decoder, self.head = encoder, decoder, head
        self.n_components = n_components
        self.posterior_flow, self.prior = posterior_flow, prior
        self.beta, self.capacity = beta, capacity
        self.loss_terms: dict[str, Tensor] = {}

    def forward(self, x: Tensor) -> Tensor:
        """The encoder's output for raw rows ``x``, to pass to :meth:`loss`.

        Parameters
        ----------
        x : Tensor of shape (batch, n_features)
            Raw rows, in the networks' dtype.

        Returns
        -------
        Tensor of shape (batch, 2 * n_components)
            Posterior means, then raw (pre-softplus) scales.
        """
        return self.encoder(self.inputs(x))

    def encode(self, x: Tensor) -> Tensor:
        """The encoder's output (posterior means and raw scales) for raw rows ``x``.

        The same as :meth:`forward`.

        Parameters
        ----------
        x : Tensor of shape (batch, n_features)
            Raw rows, in the networks' dtype.

        Returns
        -------
        Tensor of shape (batch, 2 * n_components)
            Posterior means, then raw (pre-softplus) scales.
        """
        return self.encoder(self.inputs(x))

    def _gaussian(self, encoded: Tensor) -> tuple[Tensor, Tensor]:
        mean, raw_scale = encoded.split(self.n_components, dim=-1)
        return mean, positive(raw_scale)

    def posterior_sample(self, encoded: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior draws ``z`` from base noise, and their log-density ``log q(z|x)``.

        Parameters
        ----------
        encoded : Tensor of shape (batch, 2 * n_components)
            The encoder's output.
        noise : Tensor of shape (..., batch or 1, n_components)
            Standard-normal base noise, broadcast against the rows of
            ``encoded`` (e.g. ``(S, 1, K)`` for ``S`` draws shared by every row).

        Returns
        -------
        z : Tensor of shape (..., batch, n_components)
            The codes ``mean + scale * noise`` (through the posterior flow
            when there is one), in the networks' dtype.
        log_q : Tensor of shape (..., batch)
            ``log q(z|x)``, float64.
        """
        mean, scale = self._gaussian(encoded)
        noise = noise.to(mean.dtype)
        z0 = mean + scale * noise
        log_q = sum_features(-0.5 * noise * noise - scale.log()) - 0.5 * self.n_components * LOG_2PI
        if self.posterior_flow is None:
            return z0, log_q
        context = encoded.expand(*z0.shape[:-1], encoded.shape[-1])
        z, log_det = self.posterior_flow(context).transform.call_and_ladj(z0)
        return z, log_q - log_det.double()

    def posterior_point(self, encoded: Tensor) -> Tensor:
        """The posterior mean of ``z0``, through the posterior flow when there is one.

        Parameters
        ----------
        encoded : Tensor of shape (batch, 2 * n_components)
            The encoder's output.

        Returns
        -------
        Tensor of shape (batch, n_components)
            A point code per row (the posterior mean when there is no flow).
        """
        mean, _ = self._gaussian(encoded)
        if self.posterior_flow is None:
            return mean
        return self.posterior_flow(encoded).transform(mean)

    def decoder_params(self, z: Tensor) -> Tensor:
        """Raw parameters of ``p(x|z)`` for codes with any leading dims.

        Parameters
        ----------
        z : Tensor of shape (..., n_components)
            Codes, in the networks' dtype.

        Returns
        -------
        Tensor of shape (..., head.n_params)
            The decoder's raw values.
        """
        return apply_rows(self.decoder, z)

    def loss(self, encoded: Tensor, x: Tensor, weight: Tensor | None = None) -> Tensor:
        """The negative (beta-)ELBO of a batch, from one posterior draw per row.

        The KL term is in closed form for a Gaussian posterior and a
        :class:`StandardNormalPrior`, else a one-draw Monte-Carlo estimate.
        Stores the detached terms in ``loss_terms``.

        Parameters
        ----------
        encoded : Tensor of shape (batch, 2 * n_components)
            The output of :meth:`forward` for ``x``.
        x : Tensor of shape (batch, n_features)
            The rows.
        weight : Tensor of shape (batch,), optional
            Per-row weights (``sample_weight``) of both terms.

        Returns
        -------
        Tensor
            A scalar: ``reconstruction + beta * KL`` (``capacity`` 0) or
            ``reconstruction + beta * |KL - capacity|``.
        """
        noise = torch.randn(
            *encoded.shape[:-1],
            self.n_components,
            dtype=encoded.dtype,
            device=encoded.device,
            generator=noise_generator(encoded.device),
        )
        z, log_q = self.posterior_sample(encoded, noise)
        reconstruction = -batch_mean(self.head.log_prob(self.decoder_params(z), x), weight)
        if self.posterior_flow is None and isinstance(self.prior, StandardNormalPrior):
            mean, scale = self._gaussian(encoded)
            kl = batch_mean(0.5 * (mean * mean + scale * scale - 1 - 2 * scale.log()).sum(-1), weight)
        else:
            kl = batch_mean(log_q - self.prior.log_prob(z), weight)
        self.loss_terms = {"reconstruction": reconstruction.detach(), "kl": kl.detach()}
        # At capacity 0 the objective is the beta-ELBO: |KL| would flip the sign of the gradient of a
        # negative Monte-Carlo KL estimate (flow posterior or prior).
        penalty = kl if self.capacity == 0 else (kl - self.capacity).abs()
        return reconstruction + self.beta * penalty

    def log_evidence(self, x: Tensor, noise: Tensor) -> Tensor:
        """IWAE ``log (1/S) sum_s p(x|z_s) p(z_s) / q(z_s|x)`` per row, all S draws in one pass.

        Parameters
        ----------
        x : Tensor of shape (batch, n_features)
            Raw rows.
        noise : Tensor of shape (S, n_components)
            Standard-normal base noise of the ``S`` draws, shared by every row.

        Returns
        -------
        Tensor of shape (batch,)
            The importance-weighted log-evidence bound, float64.
        """
        encoded = self.encode(x.to(network_dtype(self)))
        z, log_q = self.posterior_sample(encoded, noise[:, None, :])  # (S, n, K)
        log_px = self.head.log_prob(self.decoder_params(z), x)
        log_weights = log_px + self.prior.log_prob(z) - log_q
        return torch.logsumexp(log_weights, dim=0) - math.log(len(noise))
