"""The variational autoencoder, with optional flow posterior (IAF) and flow prior (MAF)."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import torch
import zuko
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn

from .._base import BaseAutoencoder, draw_seed, to_numpy, torch_seeded
from ..distributions import DISTRIBUTION_NAMES, OutputDistribution, make_distribution, positive
from ..flows import FlowAdapter, build_flow

_LOG_2PI = math.log(2 * math.pi)


class VariationalModule(nn.Module):
    """Encoder ``q(z|x)``, decoder ``p(x|z)``, prior ``p(z)``; ``loss`` is the (beta-)ELBO.

    Parameters
    ----------
    encoder : nn.Module
        Maps ``x`` to ``2 K`` values: posterior means and raw scales.
    decoder : nn.Module
        Maps ``z`` to the raw parameters of ``head``.
    head : OutputDistribution
    posterior_flow : zuko flow or None
        Conditioned on the encoder output; its data-to-base direction (one
        parallel pass) maps a Gaussian draw ``z0`` to ``z``: an inverse
        autoregressive flow.
    prior_flow : FlowAdapter or None
        Learned prior; None is ``N(0, I)``.
    beta, capacity : float
        Objective ``E[-log p(x|z)] + beta * |KL - capacity|``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        head: OutputDistribution,
        n_components: int,
        posterior_flow: nn.Module | None = None,
        prior_flow: FlowAdapter | None = None,
        beta: float = 1.0,
        capacity: float = 0.0,
    ):
        super().__init__()
        self.encoder, self.decoder, self.head = encoder, decoder, head
        self.n_components = n_components
        self.posterior_flow, self.prior_flow = posterior_flow, prior_flow
        self.beta, self.capacity = beta, capacity
        self.loss_terms: dict[str, Tensor] = {}

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def _gaussian(self, encoded: Tensor) -> tuple[Tensor, Tensor]:
        mean, raw_scale = encoded.split(self.n_components, dim=-1)
        return mean, positive(raw_scale)

    def posterior_sample(self, encoded: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        """Codes ``z`` from base ``noise`` (broadcast against the rows) and ``log q(z|x)``."""
        mean, scale = self._gaussian(encoded)
        z0 = mean + scale * noise
        log_q = (-0.5 * noise * noise - scale.log() - 0.5 * _LOG_2PI).sum(-1)
        if self.posterior_flow is None:
            return z0, log_q
        context = encoded.expand(*z0.shape[:-1], encoded.shape[-1])
        z, log_det = self.posterior_flow(context).transform.call_and_ladj(z0)
        return z, log_q - log_det

    def posterior_point(self, encoded: Tensor) -> Tensor:
        """The posterior mean of ``z0``, through the posterior flow when there is one."""
        mean, _ = self._gaussian(encoded)
        if self.posterior_flow is None:
            return mean
        return self.posterior_flow(encoded).transform(mean)

    def log_prior(self, z: Tensor) -> Tensor:
        if self.prior_flow is None:
            return (-0.5 * z * z - 0.5 * _LOG_2PI).sum(-1)
        return self.prior_flow.log_prob(z)

    def loss(self, encoded: Tensor, x: Tensor) -> Tensor:
        noise = torch.randn(*encoded.shape[:-1], self.n_components, dtype=x.dtype, device=x.device)
        z, log_q = self.posterior_sample(encoded, noise)
        reconstruction = -self.head.log_prob(self.decoder(z), x).mean()
        if self.posterior_flow is None and self.prior_flow is None:
            mean, scale = self._gaussian(encoded)
            kl = 0.5 * (mean * mean + scale * scale - 1 - 2 * scale.log()).sum(-1).mean()
        else:
            kl = (log_q - self.log_prior(z)).mean()
        self.loss_terms = {"reconstruction": reconstruction.detach(), "kl": kl.detach()}
        return reconstruction + self.beta * (kl - self.capacity).abs()


class VAE(BaseAutoencoder):
    r"""Variational autoencoder with any output distribution, optional IAF posterior and MAF prior.

    The encoder gives a Gaussian :math:`q(z_0|x)` (mean, softplus scale);
    ``posterior_flow="iaf"`` pushes its draws through an inverse
    autoregressive flow conditioned on the encoder output. The decoder
    likelihood :math:`p(x|z)` comes from the same registry as
    :class:`~skprobae.ProbabilisticAutoencoder`. The prior is
    :math:`\mathcal{N}(0, I)` or, with ``prior_flow="maf"``, a learned masked
    autoregressive flow. Training minimises the single-sample beta-VAE
    objective :math:`E_q[-\log p(x|z)] + \beta\,|\mathrm{KL} - C|` (PAE paper,
    Eq. 15); the KL is analytic when posterior and prior are both Gaussian,
    a Monte-Carlo estimate otherwise.

    ``score_samples`` is the importance-weighted (IWAE) estimate
    :math:`\log \frac1S \sum_s p(x, z_s) / q(z_s|x)`, :math:`z_s \sim q(z|x)`.
    It is a lower bound of :math:`\log p(x)` in expectation whose bias shrinks
    roughly like :math:`1/S`; the same S base draws are shared by all rows
    and fixed at fit, so scores are deterministic and a row's score does not
    depend on the other rows.

    Parameters
    ----------
    n_components : int, default=8
        Latent dimension.
    architecture, image_shape, hidden_layer_sizes, activation
        Networks, as for :class:`~skprobae.ProbabilisticAutoencoder`; the
        encoder emits ``2 * n_components`` values. ``hidden_layer_sizes=()``
        gives linear maps.
    conv_channels : tuple of int, default=(32, 64)
        Channels of the stride-2 convolutions for ``architecture="conv"``.
    distribution : str, default="normal_diag"
        Decoder likelihood, any registered name (``"mse"`` is a unit-variance
        normal trained on the mean squared error scale).
    n_mixtures : int, default=1
    beta : float, default=1.0
        Weight of the KL term (beta-VAE), >= 0.
    capacity : float, default=0.0
        Target KL C in nats, >= 0.
    posterior_flow : {"iaf"} or None, default=None
    prior_flow : {"maf"} or None, default=None
    flow_transforms : int, default=4
        Layers of each flow (the AEF paper's baseline: 4).
    flow_hidden_layer_sizes : tuple of int, default=(256, 256)
        Hidden widths of each flow layer.
    n_importance_samples : int, default=256
        S in the IWAE estimate of ``score_samples``.
    max_epochs, batch_size, learning_rate, weight_decay, validation_fraction, n_iter_no_change
        Training settings, as for :class:`~skprobae.ProbabilisticAutoencoder`.
    distribution_options, encoder, decoder, encoder_kwargs, decoder_kwargs
        As for :class:`~skprobae.ProbabilisticAutoencoder`; the encoder returns
        ``2 * n_components`` values (means, then raw scales).
    max_grad_norm, device, random_state, verbose, contamination
        As for :class:`~skprobae.ProbabilisticAutoencoder`.

    Attributes
    ----------
    net_ : skorch.NeuralNet
    history_ : skorch.History
        Per epoch: ``train_loss``, ``train_reconstruction``, ``train_kl`` and
        the ``valid_`` versions; a KL near 0 flags posterior collapse.
    n_iter_ : int
    offset_ : float
        The ``contamination`` quantile of the training scores (of a seeded
        subsample of 1,000 training rows when there are more).
    n_features_in_ : int

    See Also
    --------
    PAE : Autoencoder plus a flow fitted afterwards; no variational training.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skprobae import VAE
    >>> X = load_digits().data / 16
    >>> vae = VAE(n_components=4, max_epochs=5, random_state=0).fit(X)
    >>> vae.score_samples(X[:2]).shape
    (2,)
    >>> vae.history_[-1, "train_kl"] > 0
    True
    """

    _offset_max_rows = 1_000  # each score costs n_importance_samples decoder passes

    _parameter_constraints: dict = {
        **BaseAutoencoder._parameter_constraints,
        "distribution": [StrOptions(DISTRIBUTION_NAMES)],
        "distribution_options": [dict, None],
        "n_mixtures": [Interval(Integral, 1, None, closed="left")],
        "conv_channels": [tuple, list],
        "beta": [Interval(Real, 0, None, closed="left")],
        "capacity": [Interval(Real, 0, None, closed="left")],
        "posterior_flow": [StrOptions({"iaf"}), None],
        "prior_flow": [StrOptions({"maf"}), None],
        "flow_transforms": [Interval(Integral, 1, None, closed="left")],
        "flow_hidden_layer_sizes": [tuple, list],
        "n_importance_samples": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        n_components=8,
        architecture="mlp",
        image_shape=None,
        hidden_layer_sizes=(128,),
        activation="relu",
        conv_channels=(32, 64),
        distribution="normal_diag",
        n_mixtures=1,
        beta=1.0,
        capacity=0.0,
        posterior_flow=None,
        prior_flow=None,
        flow_transforms=4,
        flow_hidden_layer_sizes=(256, 256),
        n_importance_samples=256,
        max_epochs=100,
        batch_size=128,
        learning_rate=1e-3,
        weight_decay=0.0,
        validation_fraction=0.1,
        n_iter_no_change=10,
        max_grad_norm=100.0,
        distribution_options=None,
        encoder=None,
        decoder=None,
        encoder_kwargs=None,
        decoder_kwargs=None,
        device="auto",
        random_state=None,
        verbose=0,
        contamination=0.1,
    ):
        self.n_components = n_components
        self.architecture = architecture
        self.image_shape = image_shape
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.conv_channels = conv_channels
        self.distribution = distribution
        self.n_mixtures = n_mixtures
        self.beta = beta
        self.capacity = capacity
        self.posterior_flow = posterior_flow
        self.prior_flow = prior_flow
        self.flow_transforms = flow_transforms
        self.flow_hidden_layer_sizes = flow_hidden_layer_sizes
        self.n_importance_samples = n_importance_samples
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.max_grad_norm = max_grad_norm
        self.distribution_options = distribution_options
        self.encoder = encoder
        self.decoder = decoder
        self.encoder_kwargs = encoder_kwargs
        self.decoder_kwargs = decoder_kwargs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.contamination = contamination

    def fit(self, X, y=None):
        """Train on the beta-ELBO.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self : VAE
        """
        X = self._validate_params_and_data(X)
        n_features, k = X.shape[1], self.n_components
        hidden_flow = tuple(self.flow_hidden_layer_sizes)

        def build_module() -> VariationalModule:
            head = make_distribution(
                self.distribution,
                n_features,
                self.n_mixtures,
                image_shape=self.image_shape,
                **(self.distribution_options or {}),
            )
            encoder, decoder = self._build_networks(n_features, head, encoder_outputs=2 * k)
            posterior = (
                zuko.flows.MAF(k, context=2 * k, transforms=self.flow_transforms, hidden_features=hidden_flow)
                if self.posterior_flow == "iaf"
                else None
            )
            prior = (
                FlowAdapter(build_flow("maf", k, self.flow_transforms, hidden_flow), k)
                if self.prior_flow == "maf"
                else None
            )
            return VariationalModule(encoder, decoder, head, k, posterior, prior, self.beta, self.capacity)

        rng, _, _ = self._fit_module(build_module, X)
        self._importance_seed = int(rng.randint(np.iinfo(np.int32).max))
        self.offset_ = self._offset_from(self._score_samples(self._offset_rows(X, rng)))
        return self

    # ------------------------------------------------------------- internals
    @property
    def _module(self) -> VariationalModule:
        return self.net_.module_

    def _decode(self, z: Tensor) -> Tensor:
        return self._module.head.point_estimate(self._module.decoder(z))

    def _importance_noise(self) -> Tensor:
        generator = torch.Generator().manual_seed(self._importance_seed)
        noise = torch.randn(self.n_importance_samples, self.n_components, generator=generator, dtype=torch.float64)
        return noise.to(self._device)

    def _iwae(self, x: Tensor, noise: Tensor) -> Tensor:
        """``log (1/S) sum_s p(x|z_s) p(z_s) / q(z_s|x)`` per row, samples in chunks."""
        module = self._module
        encoded = module.encoder(x)
        chunk = max(1, 2**24 // max(1, len(x) * module.head.inference_cost))
        log_weights = []
        for start in range(0, len(noise), chunk):
            eps = noise[start : start + chunk, None, :]  # (s, 1, K): shared by every row
            z, log_q = module.posterior_sample(encoded, eps)
            log_px = module.head.log_prob(module.decoder(z), x)
            log_weights.append(log_px + module.log_prior(z) - log_q)
        return torch.logsumexp(torch.cat(log_weights), dim=0) - math.log(len(noise))

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        noise = self._importance_noise()
        return self._map_batches(lambda x: self._iwae(x, noise), X)

    def score_samples(self, X) -> np.ndarray:
        """IWAE estimate of ``log p(x)`` with ``n_importance_samples`` draws (higher = more normal).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,), float64
        """
        return super().score_samples(X)

    def transform(self, X) -> np.ndarray:
        """Posterior point codes: the encoder mean, through the posterior flow if any.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
        """
        check_is_fitted(self)
        return self._map_batches(lambda x: self._module.posterior_point(self._module.encoder(x)), self._check_X(X))

    def inverse_transform(self, Z) -> np.ndarray:
        """Decoder point estimates (mean, or mode for Student-t) of codes ``Z``."""
        check_is_fitted(self)
        return self._map_batches(self._decode, self._check_codes(Z))

    def reconstruct(self, X, return_std: bool = False):
        """Decoder point estimate at the posterior point code, and optionally its per-feature std.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        return_std : bool, default=False

        Returns
        -------
        X_rec : ndarray of shape (n_samples, n_features)
        X_std : ndarray of shape (n_samples, n_features), only if ``return_std``
        """
        check_is_fitted(self)
        module = self._module

        def point_and_std(x: Tensor):
            params = module.decoder(module.posterior_point(module.encoder(x)))
            point = module.head.point_estimate(params)
            return (point, module.head.variance(params).sqrt()) if return_std else point

        return self._map_batches(point_and_std, self._check_X(X))

    def sample(self, n_samples: int = 1, random_state=None, temperature: float = 1.0) -> np.ndarray:
        """Decoded prior draws (base draws scaled by ``temperature``).

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        n_samples, temperature = self._check_n_samples(n_samples), self._check_temperature(temperature)
        with torch_seeded(draw_seed(random_state), self._device), torch.no_grad():
            u = temperature * torch.randn(n_samples, self.n_components, dtype=torch.float64, device=self._device)
            prior = self._module.prior_flow
            z = u if prior is None else prior.from_base(u)
        return self._map_batches(self._decode, to_numpy(z))

    def sample_reconstructions(self, X, n_samples: int = 1, random_state=None) -> np.ndarray:
        """Draws ``x' ~ p(x|z)``, ``z ~ q(z|x)``, for every row.

        Returns
        -------
        samples : ndarray of shape (n_rows, n_samples, n_features)
        """
        check_is_fitted(self)
        X = self._check_X(X)
        n_samples = self._check_n_samples(n_samples)
        module = self._module

        def draw(x: Tensor) -> Tensor:
            encoded = module.encoder(x)
            noise = torch.randn(n_samples, len(x), self.n_components, dtype=x.dtype, device=x.device)
            z, _ = module.posterior_sample(encoded, noise)
            return module.head.distribution(module.decoder(z)).sample().movedim(0, 1)

        with torch_seeded(draw_seed(random_state), self._device):
            return self._map_batches(draw, X)
