"""Autoencoders within flows (AEF): an autoencoder made of invertible pieces, trained by exact likelihood."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn

from .._base import BaseAutoencoder, Split, draw_seed, to_numpy
from .._engine import iter_blocks
from ..distributions import UnitNormal
from ..flows import FlowAdapter, build_flow
from ..nn import AEFModule, FlowPrior, LatentPrior, LogitActNorm, StandardNormalPrior, parse_image_shape

PARTITIONS = ("linear", "random", "center", "corner")
# Proposal scales tried for the importance sampler, relative to the RMS of the expansion features.
_PROPOSAL_GRID = np.geomspace(1e-4, 1.0, 9)
_PROPOSAL_ROWS = 64
_PROPOSAL_SAMPLES = 32


def core_indices(
    partition: str, n_components: int, n_features: int, image_shape, generator: torch.Generator | None = None
) -> np.ndarray | None:
    """Indices of the core features of a partition (None for ``"linear"``, whose core is learned).

    ``"random"`` draws ``n_components`` features with ``generator``;
    ``"center"`` and ``"corner"`` take the pixels nearest the image centre or
    the top-left corner (Chebyshev distance, ties in raster order, all
    channels of a pixel together), so a square ``n_components`` gives a
    square block.
    """
    if partition not in PARTITIONS:
        raise ValueError(f"Unknown partition {partition!r}. Valid partitions: {', '.join(PARTITIONS)}.")
    if partition == "linear":
        return None
    if n_components > n_features:
        raise ValueError(
            f"partition={partition!r} takes n_components={n_components} core features, but X has "
            f"{n_features} feature(s) (n_features={n_features}); lower n_components or use partition='linear'."
        )
    if partition == "random":
        return np.sort(torch.randperm(n_features, generator=generator)[:n_components].numpy())
    if image_shape is None:
        raise ValueError(f"partition={partition!r} needs image_shape=(H, W) or (C, H, W); got image_shape=None.")
    C, H, W = parse_image_shape(image_shape, n_features)
    rows, cols = np.divmod(np.arange(H * W), W)
    if partition == "center":
        distance = np.maximum(np.abs(rows - (H - 1) / 2), np.abs(cols - (W - 1) / 2))
    else:
        distance = np.maximum(rows, cols).astype(float)
    pixels = np.lexsort((np.arange(H * W), distance))  # by distance, then raster order
    features = (pixels[:, None] + H * W * np.arange(C)[None, :]).ravel()
    return np.sort(features[:n_components])


class AEF(BaseAutoencoder):
    r"""Autoencoder within a flow (Silvestri, Roos & Ambrogioni), trained by exact maximum likelihood.

    The data are split into *core* and *shell* features. An invertible affine
    coupling encodes :math:`z = g_m(\text{shell}) + g_s(\text{shell}) \odot
    n^{-1}(\text{core})` with a core flow :math:`n`; the decoder :math:`f`
    predicts the shell from :math:`z` and the residuals :math:`\delta =
    \text{shell} - f(z)` are kept, so the whole map is a bijection and

    .. math:: \log p(x) = \log p_0(z) + \log r(\delta) + \log|\det J|

    exactly, with a flow prior :math:`p_0` and Gaussian residuals
    :math:`r` of learnable per-feature scale (Algorithm 1).

    Partitions:

    * ``"linear"`` (default, any data): the core is ``n_components``
      learnable linear features :math:`w = h(x)` and every feature is shell,
      which makes the model a drop-in replacement for a VAE (Eqs. 9-10).
      Training maximises :math:`\log p(x, h(x))`; ``score_samples`` estimates
      :math:`\log p(x) = \log \int p(x, w)\,dw` by importance sampling
      (Appendix C, Eqs. 17-18) with ``n_importance_samples`` draws
      :math:`w_k \sim \mathcal{N}(h(x), \epsilon^2 I)`,
      :math:`\log \frac1K \sum_k p(x, w_k) / q(w_k)` (the :math:`-\log K`
      included). The proposal scale :math:`\epsilon` is picked after fit
      from a grid, as the one with the highest estimate on the validation
      rows (``importance_scale_``). The draws are fixed at fit and shared by
      all rows, so scores are deterministic and row-independent; the
      estimate is a lower bound in expectation that tightens as the sample
      count grows.
    * ``"random"``: a seeded random subset of ``n_components`` features is
      the core; ``score_samples`` is the exact log-density. With
      ``n_components == n_features`` the shell is empty and the model is a
      normalizing flow.
    * ``"center"`` / ``"corner"``: the ``n_components`` pixels nearest the
      image centre / top-left corner are the core (needs ``image_shape``);
      exact log-density.

    ``logit_lambda`` adds the preprocessing bijection
    :math:`\mathrm{logit}(\lambda + (1 - 2\lambda) x)` followed by a
    data-initialised ActNorm, both counted in the likelihood: use it for
    data in [0, 1] such as dequantized images (the paper: ``1e-6`` on
    MNIST, ``0.05`` on natural images), where it turns a bounded density into
    an unbounded one the Gaussian residuals can model. Leave it ``None`` for
    standardized tabular data. ``score_samples`` is always in the units of
    ``X``. ``reconstruct(X, return_std=True)`` returns the learned residual
    std of each shell feature (0 for core features, which the bijection
    reproduces exactly), mapped into the units of ``X`` through the slope of
    the inverse preprocessing at the reconstruction when ``logit_lambda`` is
    set (a first-order approximation).

    Parameters
    ----------
    n_components : int or "auto", default="auto"
        Latent dimension. ``"auto"`` chooses it from the training data: the
        number of principal components that keep 90% of the variance of the
        standardized rows (categories one-hot, missing entries at the mean),
        at most ``n_features - 1`` (for images, 8; see
        ``n_components_``). An explicit value above ``n_features`` warns.
    partition : {"linear", "random", "center", "corner"}, default="linear"
    architecture, image_shape, hidden_layer_sizes, activation
        Encoder and decoder networks, as for
        :class:`~skprobae.ProbabilisticAutoencoder`; the encoder emits
        ``2 * n_components`` values (:math:`g_m`, raw :math:`g_s`).
    conv_channels : tuple of int, default=(32, 64)
        Channels of the stride-2 convolutions for ``architecture="conv"``
        (the paper's MNIST networks: ``(64, 128)``).
    core_flow : {"maf"} or None, default="maf"
        The core encoder flow :math:`n`; None is the identity.
    prior_flow : {"maf"} or None, default="maf"
        The prior :math:`p_0`; None is :math:`\mathcal{N}(0, I)`.
    flow_transforms : int, default=4
        Layers of each flow (the paper: 4).
    flow_hidden_layer_sizes : tuple of int, default=(256, 256)
        Hidden widths of each flow layer (the paper: 256).
    logit_lambda : float in (0, 0.5) or None, default=None
        Turns on the logit + ActNorm preprocessing; X must then lie in [0, 1].
    n_importance_samples : int, default=128
        Importance samples per row for ``partition="linear"`` (the paper
        averages 20 x 128); ignored by the exact partitions.
    max_epochs, batch_size, learning_rate, weight_decay, validation_fraction, n_iter_no_change
        Training settings, as for :class:`~skprobae.ProbabilisticAutoencoder`.
    max_grad_norm : float or None, default=200.0
        Gradient-norm clipping (the paper: 200).
    encoder, decoder, encoder_kwargs, decoder_kwargs
        As for :class:`~skprobae.ProbabilisticAutoencoder`; the encoder
        returns ``2 * n_components`` values (``g_m`` and raw ``g_s``) and the
        decoder ``n_features``.
    inference_dtype, mixed_precision, n_threads, device, random_state, verbose, contamination, warm_start, accelerator
        As for :class:`~skprobae.ProbabilisticAutoencoder`.

    Attributes
    ----------
    n_components_ : int
        The latent dimension used (``n_components``, or its ``"auto"`` choice).
    net_ : skorch.NeuralNet
    history_ : skorch.History
        Per epoch: ``train_loss`` (the exact NLL of ``(x, h(x))`` for
        ``linear``, of ``x`` otherwise) and its terms ``train_prior``,
        ``train_residual``, ``train_log_det``, and the ``valid_`` versions.
    core_indices_ : ndarray of int or None
        The core features (None for ``linear``).
    importance_scale_ : float or None
        Proposal scale of the importance sampler (``linear`` only).
    residual_scale_ : ndarray of shape (n_features,)
        Learned residual std per feature, in preprocessed units (unused for
        core features).
    n_iter_ : int
    offset_ : float
        The ``contamination`` quantile of the training scores (of a seeded
        subsample when scoring every training row would cost much; see
        ``skprobae._base.OFFSET_ROWS``).
    n_features_in_ : int

    See Also
    --------
    VAE : The architecturally identical variational model.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skprobae import AEF
    >>> X = load_digits().data / 16
    >>> aef = AEF(n_components=4, flow_hidden_layer_sizes=(32,), max_epochs=3, random_state=0).fit(X)
    >>> aef.transform(X[:2]).shape
    (2, 4)
    >>> aef.sample(3, random_state=0).shape
    (3, 64)
    """

    _default_image_components = 8
    _tabular = False

    _parameter_constraints: dict = {
        **BaseAutoencoder._parameter_constraints,
        "partition": [StrOptions(set(PARTITIONS))],
        "conv_channels": [tuple, list],
        "core_flow": [StrOptions({"maf"}), None],
        "prior_flow": [StrOptions({"maf"}), None],
        "flow_transforms": [Interval(Integral, 1, None, closed="left")],
        "flow_hidden_layer_sizes": [tuple, list],
        "logit_lambda": [Interval(Real, 0, 0.5, closed="neither"), None],
        "n_importance_samples": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        n_components="auto",
        partition="linear",
        architecture="mlp",
        image_shape=None,
        hidden_layer_sizes=(128,),
        activation="relu",
        conv_channels=(32, 64),
        core_flow="maf",
        prior_flow="maf",
        flow_transforms=4,
        flow_hidden_layer_sizes=(256, 256),
        logit_lambda=None,
        n_importance_samples=128,
        max_epochs=100,
        batch_size=128,
        learning_rate=1e-3,
        weight_decay=0.0,
        validation_fraction=0.1,
        n_iter_no_change=10,
        max_grad_norm=200.0,
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
        self.partition = partition
        self.architecture = architecture
        self.image_shape = image_shape
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.conv_channels = conv_channels
        self.core_flow = core_flow
        self.prior_flow = prior_flow
        self.flow_transforms = flow_transforms
        self.flow_hidden_layer_sizes = flow_hidden_layer_sizes
        self.logit_lambda = logit_lambda
        self.n_importance_samples = n_importance_samples
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.max_grad_norm = max_grad_norm
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

    # ------------------------------------------------------------------ input
    def _check_rows(self, X, reset: bool = False, allow_empty_rows: bool = False, **options) -> tuple[np.ndarray, bool]:
        X, has_missing = super()._check_rows(X, reset=reset, allow_empty_rows=allow_empty_rows, **options)
        if self.logit_lambda is not None and X.size:
            # The bijection's domain: [0, 1] widened by lambda / (1 - 2 lambda), which generated data can reach.
            s = self.logit_lambda + (1 - 2 * self.logit_lambda) * X
            outside = np.flatnonzero(((s <= 0) | (s >= 1)).any(axis=0))
            if outside.size:
                shown = ", ".join(map(str, outside[:10])) + (", ..." if outside.size > 10 else "")
                raise ValueError(
                    f"logit_lambda={self.logit_lambda} needs X in [0, 1], but {outside.size} column(s) leave it "
                    f"(columns {shown}). Rescale X into [0, 1] (e.g. MinMaxScaler) or set logit_lambda=None."
                )
        return X, has_missing

    def _check_fit_settings(self, X: np.ndarray, split: Split) -> None:
        if self.partition in ("center", "corner") and self.image_shape is None:
            raise ValueError(f"partition={self.partition!r} needs image_shape=(H, W) or (C, H, W).")
        if self.partition != "linear":
            core_indices(self.partition, self.n_components_, X.shape[1], self.image_shape)

    def _logit_moments(self, X: np.ndarray) -> tuple[Tensor, Tensor]:
        """Per-feature mean and log-std of the preprocessing logits of ``X``, accumulated block by block.

        Weighted by ``sample_weight`` in a weighted fit.
        """
        total, total_sq = np.zeros(X.shape[1]), np.zeros(X.shape[1])
        weight = self._row_weights()
        weight = np.ones(len(X)) if weight is None else weight  # unit weights: exact, as unweighted
        step = max(1, 2**22 // X.shape[1])
        for start, block in zip(range(0, len(X), step), iter_blocks(X, step), strict=True):
            logits = LogitActNorm.logits(torch.from_numpy(np.asarray(block, dtype=np.float64)), self.logit_lambda)
            w = torch.from_numpy(weight[start : start + len(block), None])
            total += (logits * w).sum(0).numpy()
            total_sq += (logits**2 * w).sum(0).numpy()
        n = self._rows_total(len(X))
        mean = total / n
        variance = (total_sq - n * mean**2) / max(n - 1, 1)
        return torch.from_numpy(mean), torch.from_numpy(np.log(np.sqrt(np.maximum(variance, 0)).clip(1e-3)))

    def _build_module(self, X: np.ndarray) -> AEFModule:
        n_features, k = X.shape[1], self.n_components_
        hidden_flow = tuple(self.flow_hidden_layer_sizes)
        self._core = core_indices(self.partition, k, n_features, self.image_shape, torch.default_generator)
        encoder, decoder = self._build_networks(n_features, UnitNormal(n_features), encoder_outputs=2 * k)
        core_flow = FlowAdapter(build_flow("maf", k, self.flow_transforms, hidden_flow), k) if self.core_flow else None
        prior = (
            FlowPrior(FlowAdapter(build_flow("maf", k, self.flow_transforms, hidden_flow), k))
            if self.prior_flow == "maf"
            else StandardNormalPrior(k)
        )
        preprocessing = LogitActNorm(self.logit_lambda, *self._logit_moments(X)) if self.logit_lambda else None
        return AEFModule(
            encoder,
            decoder,
            k,
            n_features,
            None if self._core is None else torch.as_tensor(self._core, dtype=torch.long),
            nn.Linear(n_features, k) if self._core is None else None,
            core_flow,
            prior,
            preprocessing,
        )

    def _fit_rest(self, X: np.ndarray, split: Split, rng: np.random.RandomState) -> None:
        if not self._continuing:  # the core and the importance draws stay those of the first fit
            self.core_indices_ = self._core
            self._importance_seed = draw_seed(rng)
        self.importance_scale_ = None
        if self.partition == "linear":
            rows = split.held_out[rng.permutation(len(split.held_out))[:_PROPOSAL_ROWS]]
            rows = np.sort(rows)
            self.importance_scale_ = self._choose_proposal_scale(X[rows], self._row_weights(rows))

    _offset_params = ("n_importance_samples",)

    def _cost_key(self) -> tuple:
        return (self.n_importance_samples,)

    # ------------------------------------------------------------- internals
    @property
    def _module(self) -> AEFModule:
        return self.net_.module_

    @property
    def residual_scale_(self) -> np.ndarray:
        """Learned residual std per feature, in preprocessed units: ndarray of shape (n_features,).

        Read from the fitted network (unused for core features); raises ``NotFittedError`` before fit.
        """
        check_is_fitted(self)
        return to_numpy(self._module.residual_scale.detach())

    def _choose_proposal_scale(self, X: np.ndarray, weight: np.ndarray | None = None) -> float:
        """The grid scale (relative to the RMS of ``h(y)``) with the highest (weighted) mean estimate on ``X``."""
        self._sync_modules()
        noise = self._importance_noise(min(self.n_importance_samples, _PROPOSAL_SAMPLES))
        module = self._module
        with torch.no_grad():
            x = self._tensor(X)
            y, _ = module.preprocess(x)
            squares = module.expansion(y).double().pow(2)
            if weight is None or not weight.any():
                rms = float(squares.mean().sqrt()) or 1.0
                means = [float(module.importance_log_prob(x, noise, float(s)).mean()) for s in rms * _PROPOSAL_GRID]
            else:
                w = torch.as_tensor(weight / weight.sum(), device=x.device)
                rms = float((squares.mean(-1) * w).sum().sqrt()) or 1.0
                estimates = (module.importance_log_prob(x, noise, float(s)) for s in rms * _PROPOSAL_GRID)
                means = [float((estimate * w).sum()) for estimate in estimates]
            candidates, means = rms * _PROPOSAL_GRID, np.array(means)
        if not np.isfinite(means).any():
            raise FloatingPointError(
                f"AEF: the importance-sampled log p(x) is not finite at any proposal scale ({candidates.min():.1e} "
                f"to {candidates.max():.1e}) on {len(X)} held-out rows: the fitted model is degenerate. "
                "Standardize X, lower learning_rate, or use an exact partition."
            )
        return float(candidates[int(np.nanargmax(np.where(np.isfinite(means), means, -np.inf)))])

    # ------------------------------------------------------------------- hooks
    def _encode(self, x: Tensor) -> Tensor:
        return self._module.codes(x)

    def _decode(self, z: Tensor) -> Tensor:
        return self._module.postprocess(self._module.decode(z))

    def _reconstruct(self, x: Tensor, return_std: bool):
        module = self._module
        y_hat = module.decode(module.codes(x))
        x_hat = module.postprocess(y_hat)
        if not return_std:
            return x_hat
        std = (module.residual_scale * module.shell_mask).expand_as(y_hat)
        if module.preprocessing is not None:
            std = std * module.preprocessing.inverse_slope(y_hat)
        return x_hat, std

    @property
    def _prior(self) -> LatentPrior:
        return self._module.prior

    def _log_density(self, x: Tensor) -> Tensor:
        if self.partition == "linear":
            noise = self._importance_noise(self.n_importance_samples)
            return self._module.importance_log_prob(x, noise, self.importance_scale_)
        log_p0, log_r, log_det = self._module.log_joint(x)
        return log_p0 + log_r + log_det
