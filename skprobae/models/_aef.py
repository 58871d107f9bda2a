"""Autoencoders within flows (AEF): an autoencoder made of invertible pieces, trained by exact likelihood."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn

from .._base import BaseAutoencoder, draw_seed, to_numpy, torch_seeded
from ..distributions import UnitNormal, positive
from ..flows import FlowAdapter, build_flow
from ..nn import parse_image_shape

_LOG_2PI = math.log(2 * math.pi)
_SOFTPLUS_INV_1 = math.log(math.e - 1)  # raw value whose softplus is 1
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


class LogitActNorm(nn.Module):
    r"""Bijection :math:`y = (\mathrm{logit}(\lambda + (1 - 2\lambda) x) - b) e^{-s}` for data in [0, 1].

    The ActNorm shift ``b`` and log-scale ``s`` are learnable and start at the
    per-feature mean and log-std of the logits of the data they are built from.
    """

    def __init__(self, logit_lambda: float, X: Tensor):
        super().__init__()
        self.logit_lambda = float(logit_lambda)
        logits, _ = self._logit(X)
        self.loc = nn.Parameter(logits.mean(0))
        self.log_scale = nn.Parameter(logits.std(0).clamp_min(1e-3).log())

    def _logit(self, x: Tensor) -> tuple[Tensor, Tensor]:
        lam = self.logit_lambda
        s = lam + (1 - 2 * lam) * x
        log_s, log_1ms = s.log(), torch.log1p(-s)
        return log_s - log_1ms, (math.log(1 - 2 * lam) - log_s - log_1ms).sum(-1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``y`` and ``log |det dy/dx|`` per row."""
        logits, log_det = self._logit(x)
        return (logits - self.loc) * torch.exp(-self.log_scale), log_det - self.log_scale.sum()

    def inverse(self, y: Tensor) -> Tensor:
        return (torch.sigmoid(y * self.log_scale.exp() + self.loc) - self.logit_lambda) / (1 - 2 * self.logit_lambda)

    def inverse_slope(self, y: Tensor) -> Tensor:
        """``dx/dy`` per feature at ``y``."""
        s = torch.sigmoid(y * self.log_scale.exp() + self.loc)
        return self.log_scale.exp() * s * (1 - s) / (1 - 2 * self.logit_lambda)


class AEFModule(nn.Module):
    r"""The AEF bijection :math:`(x, w) \mapsto (z, \delta)` and its exact log-density.

    ``z = g_m(shell) + g_s(shell) * n^{-1}(core)``, ``delta = shell - f(z)``
    (Eqs. 4-5 and 9 of Silvestri et al.). The encoder sees the data with the
    core features zeroed (a function of the shell only); the decoder emits
    every feature and only the shell residuals count. With ``core_index=None``
    the core is ``w = expansion(y)`` and every feature is shell (``linear``).

    Parameters
    ----------
    encoder : nn.Module
        ``y -> 2 K`` values: means and raw scales of the affine coupling.
    decoder : nn.Module
        ``z -> n_features`` values.
    n_components, n_features : int
    core_index : LongTensor or None
    expansion : nn.Module or None
        ``h``, for ``core_index=None``.
    core_flow, prior_flow : FlowAdapter or None
        ``n^{-1}`` is ``core_flow.to_base``; ``p0`` is ``prior_flow`` or ``N(0, I)``.
    preprocessing : LogitActNorm or None
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        n_components: int,
        n_features: int,
        core_index: Tensor | None,
        expansion: nn.Module | None,
        core_flow: FlowAdapter | None,
        prior_flow: FlowAdapter | None,
        preprocessing: LogitActNorm | None,
    ):
        super().__init__()
        self.encoder, self.decoder, self.expansion = encoder, decoder, expansion
        self.n_components, self.n_features = n_components, n_features
        self.core_flow, self.prior_flow, self.preprocessing = core_flow, prior_flow, preprocessing
        shell = torch.ones(n_features)
        if core_index is not None:
            shell[core_index] = 0.0
        self.register_buffer("core_index", core_index)
        self.register_buffer("shell_mask", shell)
        self.residual_raw_scale = nn.Parameter(torch.full((n_features,), _SOFTPLUS_INV_1))
        self.loss_terms: dict[str, Tensor] = {}

    def forward(self, x: Tensor) -> Tensor:
        return x

    @property
    def residual_scale(self) -> Tensor:
        return positive(self.residual_raw_scale)

    def preprocess(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.preprocessing is None:
            return x, x.new_zeros(x.shape[:-1])
        return self.preprocessing(x)

    def postprocess(self, y: Tensor) -> Tensor:
        return y if self.preprocessing is None else self.preprocessing.inverse(y)

    def core(self, y: Tensor) -> Tensor:
        return self.expansion(y) if self.core_index is None else y[..., self.core_index]

    def _coupling(self, y: Tensor) -> tuple[Tensor, Tensor]:
        mean, raw_scale = self.encoder(y * self.shell_mask).split(self.n_components, dim=-1)
        return mean, positive(raw_scale)

    def encode(self, y: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        """Codes ``z`` for shell ``y`` and core ``w`` (which may carry extra leading sample dims) and the log-det."""
        mean, scale = self._coupling(y)
        if self.core_flow is None:
            u, log_det = w, w.new_zeros(w.shape[:-1])
        else:
            u, log_det = self.core_flow.to_base(w)
        return mean + scale * u, log_det + scale.log().sum(-1)

    def log_residual(self, y: Tensor, z: Tensor) -> Tensor:
        scale = self.residual_scale
        r = (y - self.decoder(z)) / scale
        return ((-0.5 * r * r - scale.log() - 0.5 * _LOG_2PI) * self.shell_mask).sum(-1)

    def log_prior(self, z: Tensor) -> Tensor:
        if self.prior_flow is None:
            return (-0.5 * z * z - 0.5 * _LOG_2PI).sum(-1)
        return self.prior_flow.log_prob(z)

    def log_joint(self, x: Tensor, w: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``log p(x)`` (partitions) or ``log p(x, w)`` (linear; ``w = h(y)`` by default), split in terms.

        Returns the prior, residual and log-det (encoder flow, coupling scales
        and preprocessing) terms; their sum is the log-density.
        """
        y, log_det_pre = self.preprocess(x)
        z, log_det = self.encode(y, self.core(y) if w is None else w)
        return self.log_prior(z), self.log_residual(y, z), log_det + log_det_pre, y

    def loss(self, out: Tensor, x: Tensor) -> Tensor:
        log_p0, log_r, log_det, _ = self.log_joint(x)
        self.loss_terms = {
            "prior": -log_p0.mean().detach(),
            "residual": -log_r.mean().detach(),
            "log_det": -log_det.mean().detach(),
        }
        return -(log_p0 + log_r + log_det).mean()

    def decode(self, z: Tensor) -> Tensor:
        """Generative pass with zero residuals (Algorithm 2, or 3 for ``linear``), in preprocessed units."""
        decoded = self.decoder(z)
        if self.core_index is None:
            return decoded
        mean, scale = self._coupling(decoded)
        u = (z - mean) / scale
        core = u if self.core_flow is None else self.core_flow.from_base(u)
        return decoded.index_copy(-1, self.core_index, core)


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
    ``X``.

    Parameters
    ----------
    n_components : int, default=8
        Latent dimension, and the number of core features.
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
    device, random_state, verbose, contamination
        As for :class:`~skprobae.ProbabilisticAutoencoder`.

    Attributes
    ----------
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
        subsample of 1,000 training rows when there are more).
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

    _offset_max_rows = 1_000  # each score costs n_importance_samples decoder passes

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
        n_components=8,
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
        device="auto",
        random_state=None,
        verbose=0,
        contamination=0.1,
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
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.contamination = contamination

    # ------------------------------------------------------------------ input
    def _check_X(self, X, reset: bool = False) -> np.ndarray:
        X = super()._check_X(X, reset=reset)
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
        return X

    def fit(self, X, y=None):
        """Train on the exact negative log-likelihood (Algorithm 1).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self : AEF
        """
        X = self._validate_params_and_data(X)
        n_features, k = X.shape[1], self.n_components
        if self.partition in ("center", "corner") and self.image_shape is None:
            raise ValueError(f"partition={self.partition!r} needs image_shape=(H, W) or (C, H, W).")
        if self.partition != "linear":
            core_indices(self.partition, k, n_features, self.image_shape)  # fail before training starts
        hidden_flow = tuple(self.flow_hidden_layer_sizes)
        chosen: dict[str, np.ndarray | None] = {}

        def build_module() -> AEFModule:
            core = core_indices(self.partition, k, n_features, self.image_shape, torch.default_generator)
            chosen["core"] = core
            encoder, decoder = self._build_networks(n_features, UnitNormal(n_features), encoder_outputs=2 * k)
            flows = [
                FlowAdapter(build_flow("maf", k, self.flow_transforms, hidden_flow), k) if name == "maf" else None
                for name in (self.core_flow, self.prior_flow)
            ]
            preprocessing = (
                LogitActNorm(self.logit_lambda, torch.tensor(X, dtype=torch.float32))
                if self.logit_lambda is not None
                else None
            )
            return AEFModule(
                encoder,
                decoder,
                k,
                n_features,
                None if core is None else torch.as_tensor(core, dtype=torch.long),
                nn.Linear(n_features, k) if core is None else None,
                *flows,
                preprocessing,
            )

        rng, train_idx, valid_idx = self._fit_module(build_module, X)
        self.core_indices_ = chosen["core"]
        self._importance_seed = int(rng.randint(np.iinfo(np.int32).max))
        self.importance_scale_ = None
        if self.partition == "linear":
            rows = valid_idx if len(valid_idx) else train_idx
            rows = rows[rng.permutation(len(rows))[:_PROPOSAL_ROWS]]
            self.importance_scale_ = self._choose_proposal_scale(X[rows])
        self.offset_ = self._offset_from(self._score_samples(self._offset_rows(X, rng)))
        return self

    # ------------------------------------------------------------- internals
    @property
    def _module(self) -> AEFModule:
        return self.net_.module_

    @property
    def residual_scale_(self) -> np.ndarray:
        check_is_fitted(self)
        return to_numpy(self._module.residual_scale.detach())

    def _importance_noise(self, n_samples: int) -> Tensor:
        generator = torch.Generator().manual_seed(self._importance_seed)
        noise = torch.randn(n_samples, self.n_components, generator=generator, dtype=torch.float64)
        return noise.to(self._device)

    def _importance_log_p(self, x: Tensor, noise: Tensor, scale: float) -> Tensor:
        """``log (1/S) sum_s p(x, w_s) / q(w_s)``, ``w_s = h(y) + scale * noise_s``, samples in chunks."""
        module = self._module
        y, log_det_pre = module.preprocess(x)
        w = module.expansion(y)
        log_q_const = -self.n_components * (0.5 * _LOG_2PI + math.log(scale))
        chunk = max(1, 2**23 // max(1, len(x) * self.n_features_in_))
        log_weights = []
        for start in range(0, len(noise), chunk):
            eps = noise[start : start + chunk, None, :]  # (s, 1, K): shared by every row
            z, log_det = module.encode(y, w + scale * eps)
            log_q = -0.5 * (eps * eps).sum(-1) + log_q_const
            log_weights.append(module.log_prior(z) + module.log_residual(y, z) + log_det - log_q)
        return torch.logsumexp(torch.cat(log_weights), dim=0) - math.log(len(noise)) + log_det_pre

    def _choose_proposal_scale(self, X: np.ndarray) -> float:
        """The grid scale (relative to the RMS of ``h(y)``) with the highest mean estimate on ``X``."""
        noise = self._importance_noise(min(self.n_importance_samples, _PROPOSAL_SAMPLES))
        with torch.no_grad():
            x = torch.tensor(X, dtype=torch.float64, device=self._device)
            y, _ = self._module.preprocess(x)
            rms = float(self._module.expansion(y).pow(2).mean().sqrt()) or 1.0
            candidates = rms * _PROPOSAL_GRID
            means = [float(self._importance_log_p(x, noise, float(s)).mean()) for s in candidates]
        means = np.nan_to_num(np.asarray(means), nan=-np.inf)
        return float(candidates[int(np.argmax(means))])

    def _log_density(self, x: Tensor) -> Tensor:
        if self.partition == "linear":
            return self._importance_log_p(x, self._importance_noise(self.n_importance_samples), self.importance_scale_)
        log_p0, log_r, log_det, _ = self._module.log_joint(x)
        return log_p0 + log_r + log_det

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        return self._map_batches(self._log_density, X)

    def _codes(self, x: Tensor) -> Tensor:
        y, _ = self._module.preprocess(x)
        return self._module.encode(y, self._module.core(y))[0]

    def _generate(self, z: Tensor) -> Tensor:
        return self._module.postprocess(self._module.decode(z))

    # ----------------------------------------------------------------- public
    def score_samples(self, X) -> np.ndarray:
        """``log p(x)`` in the units of X: exact for the partitions, importance-sampled for ``linear``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,), float64
        """
        return super().score_samples(X)

    def transform(self, X) -> np.ndarray:
        """Latent codes ``z`` (Eq. 4, or Eq. 9 with ``w = h(x)`` for ``linear``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
        """
        check_is_fitted(self)
        return self._map_batches(self._codes, self._check_X(X))

    def inverse_transform(self, Z) -> np.ndarray:
        """Data for codes ``Z`` with zero residuals (Algorithm 2, or 3 for ``linear``).

        Parameters
        ----------
        Z : array-like of shape (n_samples, n_components)

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        return self._map_batches(self._generate, self._check_codes(Z))

    def reconstruct(self, X, return_std: bool = False):
        """``inverse_transform(transform(X))`` and optionally the residual std per feature.

        The std is the learned residual scale mapped through the inverse
        preprocessing (first order, exact without ``logit_lambda``); core
        features of a partition have none (0): the flow determines them.

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
            y_hat = module.decode(self._codes(x))
            x_hat = module.postprocess(y_hat)
            if not return_std:
                return x_hat
            std = (module.residual_scale * module.shell_mask).expand_as(y_hat)
            if module.preprocessing is not None:
                std = std * module.preprocessing.inverse_slope(y_hat)
            return x_hat, std

        return self._map_batches(point_and_std, self._check_X(X))

    def sample(self, n_samples: int = 1, random_state=None, temperature: float = 1.0) -> np.ndarray:
        """Draws ``z ~ p0`` (base draws scaled by ``temperature``), decoded with zero residuals.

        Parameters
        ----------
        n_samples : int, default=1
        random_state : int, RandomState or None
        temperature : float, default=1.0
            The paper samples at 0.85.

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
        return self._map_batches(self._generate, to_numpy(z))
