"""The variational autoencoder, with optional flow posterior (IAF) and flow prior (MAF)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
import zuko
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import Tensor

from .._base import BaseAutoencoder, Split, draw_seed, head_point_and_std, torch_seeded
from ..distributions import DISTRIBUTION_NAMES
from ..flows import INPLACE_RELU, FlowAdapter, build_flow
from ..nn import FlowPrior, LatentPrior, StandardNormalPrior, VariationalModule


class VAE(BaseAutoencoder):
    r"""Variational autoencoder with any output distribution, optional IAF posterior and MAF prior.

    The encoder gives a Gaussian :math:`q(z_0|x)` (mean, softplus scale);
    ``posterior_flow="iaf"`` pushes its draws through an inverse
    autoregressive flow conditioned on the encoder output. The decoder
    likelihood :math:`p(x|z)` comes from the same registry as
    :class:`~skprobae.ProbabilisticAutoencoder`. The prior is
    :math:`\mathcal{N}(0, I)` or, with ``prior_flow="maf"``, a learned masked
    autoregressive flow. Training minimises the single-sample beta-ELBO
    :math:`E_q[-\log p(x|z)] + \beta\,\mathrm{KL}`, or with a capacity
    :math:`C > 0` the objective :math:`E_q[-\log p(x|z)] + \beta\,|\mathrm{KL} - C|`
    (PAE paper, Eq. 15); the KL is analytic when posterior and prior are both Gaussian,
    a Monte-Carlo estimate otherwise.

    ``score_samples`` is the importance-weighted (IWAE) estimate
    :math:`\log \frac1S \sum_s p(x, z_s) / q(z_s|x)`, :math:`z_s \sim q(z|x)`.
    It is a lower bound of :math:`\log p(x)` in expectation whose bias shrinks
    roughly like :math:`1/S`; the same S base draws are shared by all rows
    and fixed at fit, so scores are deterministic and a row's score does not
    depend on the other rows.

    Parameters
    ----------
    n_components : int or "auto", default="auto"
        Latent dimension. ``"auto"`` chooses it from the training data: the
        number of principal components that keep 90% of the variance of the
        standardized rows (categories one-hot, missing entries at the mean),
        at most ``n_features - 1`` (for images, 8; see
        ``n_components_``). An explicit value above ``n_features`` warns.
    categorical_features : "from_dtype", None, array-like of int, str or bool, default="from_dtype"
        Categorical columns, modelled by a categorical distribution (a
        Bernoulli for two categories) instead of ``distribution``; the
        encoder sees them one-hot. ``"from_dtype"``: the ``category``,
        ``object``, ``string`` and ``bool`` columns of a DataFrame (none of
        an array); else column indices, names or a boolean mask, as in
        ``HistGradientBoostingClassifier``. Their values may be anything
        hashable; ``reconstruct``, ``sample`` and ``inverse_transform``
        return the categories (a DataFrame with the fitted dtypes when fitted
        on one), :meth:`predict_category_proba` their probabilities. A
        category not seen in fit raises a ValueError naming the column.
    standardize : bool, default=True
        Standardize each continuous column inside the model with the mean
        and std of its observed training values (near-constant columns are
        left as they are). ``score_samples`` stays a log-likelihood in the
        units of ``X`` (the log-determinant of the standardization is
        included), so no ``StandardScaler`` is needed in front. Not applied
        to images (``image_shape`` or ``architecture="conv"``), whose pixels
        share one scale.
    architecture, image_shape, hidden_layer_sizes, activation
        Networks, as for :class:`~skprobae.ProbabilisticAutoencoder`; the
        encoder emits ``2 * n_components`` values. ``hidden_layer_sizes=()``
        gives linear maps.
    mask_fraction : float in [0, 1), default=0.0
        Share of the observed entries of each training row hidden from the
        encoder at each step (as if missing; drawn anew every batch), while
        the likelihood still scores them: the model learns to predict the
        entries it does not see, as denoising and MIWAE-style imputers are
        trained. Useful when rows will be scored or imputed with missing
        entries; turns on the missingness indicators. Tables only.
    conv_channels : tuple of int, default=(32, 64)
        Channels of the stride-2 convolutions for ``architecture="conv"``.
    distribution : str, default="normal_diag"
        Decoder likelihood, any registered name (``"mse"`` is a unit-variance
        normal trained on the mean squared error scale).
    n_mixtures : int, default=1
        Number of mixture components of the decoder likelihood, as for
        :class:`~skprobae.ProbabilisticAutoencoder`.
    beta : float, default=1.0
        Weight of the KL term (beta-VAE), >= 0.
    capacity : float, default=0.0
        Target KL C in nats, >= 0.
    posterior_flow : {"iaf"} or None, default=None
        ``"iaf"``: an inverse autoregressive flow on the Gaussian posterior
        draws; None keeps :math:`q(z|x)` Gaussian.
    prior_flow : {"maf"} or None, default=None
        ``"maf"``: a learned masked autoregressive flow prior; None keeps
        :math:`\mathcal{N}(0, I)`.
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
    max_grad_norm, inference_dtype, mixed_precision, n_threads, device, random_state
        As for :class:`~skprobae.ProbabilisticAutoencoder`.
    verbose, contamination, warm_start, accelerator
        As for :class:`~skprobae.ProbabilisticAutoencoder`.

    Attributes
    ----------
    n_components_ : int
        The latent dimension used (``n_components``, or its ``"auto"`` choice).
    is_categorical_ : ndarray of bool of shape (n_features,)
        Which columns are categorical.
    categories_ : list of ndarray
        The categories of each categorical column, in column order (their
        codes 0, 1, ... index these arrays).
    feature_loc_, feature_scale_ : ndarray of shape (n_features,)
        The standardization of the continuous columns (0 and 1 for the others
        and with ``standardize=False``).
    missing_indicators_ : bool
        Whether the encoder also sees each row's missingness mask (the
        training data had missing entries, or ``mask_fraction_ > 0``;
        zero-filled values otherwise).
    mask_fraction_ : float
        The share of observed entries hidden from the encoder in training.
    net_ : skorch.NeuralNet
    history_ : skorch.History
        Per epoch: ``train_loss``, ``train_reconstruction``, ``train_kl`` and
        the ``valid_`` versions; a KL near 0 flags posterior collapse.
    n_iter_ : int
    offset_ : float
        The ``contamination`` quantile of the training scores (of a seeded
        subsample when scoring every training row would cost much; see
        ``skprobae._base.OFFSET_ROWS``).
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

    _default_image_components = 8

    _parameter_constraints: dict = {
        **BaseAutoencoder._parameter_constraints,
        "categorical_features": [StrOptions({"from_dtype"}), "array-like", str, None],
        "standardize": ["boolean"],
        "mask_fraction": [Interval(Real, 0, 1, closed="left")],
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
        n_components="auto",
        categorical_features="from_dtype",
        standardize=True,
        mask_fraction=0.0,
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
        inference_dtype="float32",
        mixed_precision=None,
        n_threads=None,
        device="auto",
        random_state=None,
        verbose=0,
        contamination=0.1,
        warm_start=False,
        accelerator=None,
    ):
        self.n_components = n_components
        self.categorical_features = categorical_features
        self.standardize = standardize
        self.mask_fraction = mask_fraction
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
        self.inference_dtype = inference_dtype
        self.mixed_precision = mixed_precision
        self.n_threads = n_threads
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.contamination = contamination
        self.warm_start = warm_start
        self.accelerator = accelerator

    def _build_module(self, X: np.ndarray) -> VariationalModule:
        n_features, k = X.shape[1], self.n_components_
        hidden_flow = tuple(self.flow_hidden_layer_sizes)
        head = self._make_head(n_features)
        encoder, decoder, inputs = self._table_networks(head, encoder_outputs=2 * k)
        posterior = (
            zuko.flows.MAF(
                k, context=2 * k, transforms=self.flow_transforms, hidden_features=hidden_flow, activation=INPLACE_RELU
            )
            if self.posterior_flow == "iaf"
            else None
        )
        prior = (
            FlowPrior(FlowAdapter(build_flow("maf", k, self.flow_transforms, hidden_flow), k))
            if self.prior_flow == "maf"
            else StandardNormalPrior(k)
        )
        return VariationalModule(encoder, decoder, head, k, posterior, prior, self.beta, self.capacity, inputs)

    def _fit_rest(self, X: np.ndarray, split: Split, rng: np.random.RandomState) -> None:
        if not self._continuing:  # the importance draws stay those of the first fit
            self._importance_seed = draw_seed(rng)

    _offset_params = ("n_importance_samples",)

    def _cost_key(self) -> tuple:
        return (self.n_importance_samples,)

    # ------------------------------------------------------------------- hooks
    @property
    def _module(self) -> VariationalModule:
        return self.net_.module_

    def _encoded(self, x: Tensor) -> Tensor:
        return self._module.encode(self._network_input(x))

    def _encode(self, x: Tensor) -> Tensor:
        return self._module.posterior_point(self._encoded(x))

    def _decode(self, z: Tensor) -> Tensor:
        head = self._module.head
        return head.point_estimate(self._module.decoder_params(self._network_input(z)))

    def _reconstruct(self, x: Tensor, return_std: bool):
        return head_point_and_std(self._module.head, self._reconstruction_params(x), return_std)

    def _reconstruction_params(self, x: Tensor) -> Tensor:
        return self._module.decoder_params(self._encode(x))

    @property
    def _prior(self) -> LatentPrior:
        return self._module.prior

    def _log_density(self, x: Tensor) -> Tensor:
        return self._module.log_evidence(x, self._importance_noise(self.n_importance_samples))

    # ------------------------------------------------------------------ public
    def sample_reconstructions(self, X, n_samples: int = 1, random_state=None) -> np.ndarray:
        """Draws ``x' ~ p(x|z)``, ``z ~ q(z|x)``, for every row.

        Parameters
        ----------
        X : array-like of shape (n_rows, n_features)
            The rows to encode and reconstruct.
        n_samples : int, default=1
            Draws per row (each with its own code ``z``).
        random_state : int, RandomState instance or None, default=None
            Seeds the draws; with an int two calls are identical.

        Returns
        -------
        samples : ndarray of shape (n_rows, n_samples, n_features)
            Float64; a categorical column holds category codes (indices into
            ``categories_``), as a three-dimensional array cannot carry the
            fitted column types (:meth:`sample` and :meth:`reconstruct` do).
        """
        check_is_fitted(self)
        X = self._check_X(X)
        n_samples = self._check_n_samples(n_samples)
        module = self._module

        def draw(x: Tensor) -> Tensor:
            encoded = self._encoded(x)
            noise = torch.randn(n_samples, len(x), self.n_components_, dtype=encoded.dtype, device=x.device)
            z, _ = module.posterior_sample(encoded, noise)
            return module.head.sample_values(module.decoder_params(z), 1)[0].movedim(0, 1)

        with torch_seeded(draw_seed(random_state), self._device):
            return self._run(f"sample_reconstructions_{n_samples}", draw, X)
