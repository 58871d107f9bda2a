"""The torch modules of autoencoders within flows (AEF): the bijection, its log-density, the logit preprocessing."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..distributions import positive
from ..distributions._base import batch_mean, sum_features
from ._prior import LOG_2PI, LatentPrior
from ._rows import apply_rows

_SOFTPLUS_INV_1 = math.log(math.e - 1)  # raw value whose softplus is 1


class LogitActNorm(nn.Module):
    r"""Bijection :math:`y = (\mathrm{logit}(\lambda + (1 - 2\lambda) x) - b) e^{-s}` for data in [0, 1].

    The ActNorm shift ``b`` and log-scale ``s`` are learnable; they start at
    the per-feature mean and log-std of the logits of the training data
    (:meth:`logits` gives those logits, so the caller can take the moments
    block by block).

    Parameters
    ----------
    logit_lambda : float
        The squeeze ``lambda`` in (0, 0.5) that keeps the logit finite at 0 and 1.
    loc : Tensor of shape (n_features,)
        Initial shift ``b``; stored as a float32 parameter.
    log_scale : Tensor of shape (n_features,)
        Initial log-scale ``s``; stored as a float32 parameter.

    Examples
    --------
    >>> import torch
    >>> from skprobae.nn import LogitActNorm
    >>> x = torch.tensor([[0.25, 0.5], [0.75, 0.5]])
    >>> logits = LogitActNorm.logits(x, 0.05)
    >>> norm = LogitActNorm(0.05, logits.mean(0), torch.zeros(2))
    >>> y, log_det = norm(x)
    >>> y.shape, log_det.dtype
    (torch.Size([2, 2]), torch.float64)
    >>> torch.allclose(norm.inverse(y), x)
    True
    """

    def __init__(self, logit_lambda: float, loc: Tensor, log_scale: Tensor):
        super().__init__()
        self.logit_lambda = float(logit_lambda)
        self.loc = nn.Parameter(torch.as_tensor(loc, dtype=torch.float32))
        self.log_scale = nn.Parameter(torch.as_tensor(log_scale, dtype=torch.float32))

    @staticmethod
    def logits(x: Tensor, logit_lambda: float) -> Tensor:
        """The squeezed logits ``logit(lambda + (1 - 2 lambda) x)``, before the ActNorm.

        Parameters
        ----------
        x : Tensor
            Data in [0, 1], any shape.
        logit_lambda : float
            The squeeze ``lambda``.

        Returns
        -------
        Tensor
            The logits, of the shape and dtype of ``x``.
        """
        s = logit_lambda + (1 - 2 * logit_lambda) * x
        return s.log() - torch.log1p(-s)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The bijection ``y`` of ``x`` and its log-determinant.

        Parameters
        ----------
        x : Tensor of shape (..., n_features)
            Data in [0, 1]; cast to the parameters' dtype.

        Returns
        -------
        y : Tensor of shape (..., n_features)
            The normalized logits.
        log_det : Tensor of shape (...)
            ``log |det dy/dx|`` per row, float64.
        """
        lam = self.logit_lambda
        s = lam + (1 - 2 * lam) * x.to(self.loc.dtype)
        log_s, log_1ms = s.log(), torch.log1p(-s)
        log_det = sum_features(math.log(1 - 2 * lam) - log_s - log_1ms) - self.log_scale.double().sum()
        return (log_s - log_1ms - self.loc) * torch.exp(-self.log_scale), log_det

    def inverse(self, y: Tensor) -> Tensor:
        """The inverse map, from normalized logits back to [0, 1].

        Parameters
        ----------
        y : Tensor of shape (..., n_features)
            Normalized logits.

        Returns
        -------
        Tensor of shape (..., n_features)
            ``x = (sigmoid(y e^s + b) - lambda) / (1 - 2 lambda)``.
        """
        return (torch.sigmoid(y * self.log_scale.exp() + self.loc) - self.logit_lambda) / (1 - 2 * self.logit_lambda)

    def inverse_slope(self, y: Tensor) -> Tensor:
        """The slope ``dx/dy`` of :meth:`inverse`, per feature, at ``y``.

        Parameters
        ----------
        y : Tensor of shape (..., n_features)
            Normalized logits.

        Returns
        -------
        Tensor of shape (..., n_features)
            The (positive) diagonal of the inverse's Jacobian.
        """
        s = torch.sigmoid(y * self.log_scale.exp() + self.loc)
        return self.log_scale.exp() * s * (1 - s) / (1 - 2 * self.logit_lambda)


class AEFModule(nn.Module):
    r"""The AEF bijection :math:`(x, w) \mapsto (z, \delta)` and its exact log-density.

    ``z = g_m(shell) + g_s(shell) * n^{-1}(core)``, ``delta = shell - f(z)``
    (Eqs. 4-5 and 9 of Silvestri et al.). The encoder sees the data with the
    core features zeroed (a function of the shell only); the decoder emits
    every feature and only the shell residuals count. With ``core_index=None``
    the core is ``w = expansion(y)`` and every feature is shell (``linear``).
    Log-densities and log-determinants are float64; the networks compute in
    their own dtype.

    Parameters
    ----------
    encoder : nn.Module
        ``y -> 2 K`` values: means and raw scales of the affine coupling.
    decoder : nn.Module
        ``z -> n_features`` values.
    n_components, n_features : int
        Latent dimension ``K`` and data dimension.
    core_index : LongTensor of shape (n_components,) or None
        Indices of the core features (a partition of the features into core
        and shell); None for the ``linear`` variant, where the core is
        ``w = expansion(y)``.
    expansion : nn.Module or None
        ``h``, for ``core_index=None``: maps ``(..., n_features)`` to
        ``(..., n_components)``. Unused otherwise.
    core_flow : FlowAdapter or None
        ``n^{-1}`` is ``core_flow.to_base``; None is the identity.
    prior : LatentPrior
        ``p0``.
    preprocessing : LogitActNorm or None
        Applied to ``x`` first (its log-determinant included); None is the identity.

    Attributes
    ----------
    loss_terms : dict of str to Tensor
        The detached ``"prior"``, ``"residual"`` and ``"log_det"`` terms of the last :meth:`loss`.

    Examples
    --------
    >>> import torch
    >>> from skprobae.nn import AEFModule, StandardNormalPrior, make_mlp
    >>> _ = torch.manual_seed(0)
    >>> module = AEFModule(
    ...     make_mlp(4, [8], 2 * 2), make_mlp(2, [8], 4), 2, 4, torch.tensor([0, 1]),
    ...     None, None, StandardNormalPrior(2), None,
    ... )
    >>> x = torch.randn(5, 4)
    >>> log_p0, log_r, log_det = module.log_joint(x)
    >>> log_p0.shape, log_r.dtype
    (torch.Size([5]), torch.float64)
    >>> module.codes(x).shape, module.decode(module.codes(x)).shape
    (torch.Size([5, 2]), torch.Size([5, 4]))
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        n_components: int,
        n_features: int,
        core_index: Tensor | None,
        expansion: nn.Module | None,
        core_flow: nn.Module | None,
        prior: LatentPrior,
        preprocessing: LogitActNorm | None,
    ):
        super().__init__()
        self.encoder, self.decoder, self.expansion = encoder, decoder, expansion
        self.n_components, self.n_features = n_components, n_features
        self.core_flow, self.prior, self.preprocessing = core_flow, prior, preprocessing
        shell = torch.ones(n_features)
        if core_index is not None:
            shell[core_index] = 0.0
        self.register_buffer("core_index", core_index)
        self.register_buffer("shell_mask", shell)
        self.residual_raw_scale = nn.Parameter(torch.full((n_features,), _SOFTPLUS_INV_1))
        self.loss_terms: dict[str, Tensor] = {}

    def forward(self, x: Tensor) -> Tensor:
        """The identity: :meth:`loss` computes everything from the rows.

        Parameters
        ----------
        x : Tensor of shape (batch, n_features)
            Rows.

        Returns
        -------
        Tensor of shape (batch, n_features)
            ``x`` unchanged.
        """
        return x

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the networks compute in.

        Returns
        -------
        torch.dtype
            The dtype of the residual-scale parameter.
        """
        return self.residual_raw_scale.dtype

    @property
    def residual_scale(self) -> Tensor:
        """The learnable per-feature std of the Gaussian residuals ``delta``.

        Returns
        -------
        Tensor of shape (n_features,)
            ``positive(residual_raw_scale)`` (1 at initialization).
        """
        return positive(self.residual_raw_scale)

    def preprocess(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The preprocessed data ``y`` and the preprocessing's log-determinant.

        Parameters
        ----------
        x : Tensor of shape (..., n_features)
            Raw rows; cast to the networks' dtype.

        Returns
        -------
        y : Tensor of shape (..., n_features)
            The preprocessed rows (``x`` itself without preprocessing), in the networks' dtype.
        log_det : Tensor of shape (...)
            The preprocessing's ``log |det dy/dx|``, float64 (zeros without preprocessing).
        """
        x = x.to(self.dtype)
        if self.preprocessing is None:
            return x, x.new_zeros(x.shape[:-1], dtype=torch.float64)
        return self.preprocessing(x)

    def postprocess(self, y: Tensor) -> Tensor:
        """The inverse of :meth:`preprocess`, back to data units.

        Parameters
        ----------
        y : Tensor of shape (..., n_features)
            Preprocessed rows.

        Returns
        -------
        Tensor of shape (..., n_features)
            ``preprocessing.inverse(y)``, or ``y`` without preprocessing.
        """
        return y if self.preprocessing is None else self.preprocessing.inverse(y)

    def core(self, y: Tensor) -> Tensor:
        """The core ``w`` of preprocessed rows.

        Parameters
        ----------
        y : Tensor of shape (..., n_features)
            Preprocessed rows.

        Returns
        -------
        Tensor of shape (..., n_components)
            The core features ``y[..., core_index]``, or ``expansion(y)`` when
            ``core_index`` is None.
        """
        return self.expansion(y) if self.core_index is None else y[..., self.core_index]

    def coupling(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Shift and scale of the affine coupling, from the shell of ``y``.

        Parameters
        ----------
        y : Tensor of shape (..., n_features)
            Preprocessed rows; the core features are zeroed before the encoder.

        Returns
        -------
        mean : Tensor of shape (..., n_components)
            The shift ``g_m``.
        scale : Tensor of shape (..., n_components)
            The positive scale ``g_s``.
        """
        mean, raw_scale = apply_rows(self.encoder, y * self.shell_mask).split(self.n_components, dim=-1)
        return mean, positive(raw_scale)

    def encode(self, coupling: tuple[Tensor, Tensor], w: Tensor) -> tuple[Tensor, Tensor]:
        """Codes ``z = mean + scale * n^{-1}(w)`` for a coupling and a core, and the log-determinant.

        Parameters
        ----------
        coupling : tuple of Tensor
            ``(mean, scale)`` from :meth:`coupling`, each of shape ``(..., n_components)``.
        w : Tensor of shape (..., n_components)
            The core, which may carry extra leading sample dimensions that
            broadcast against the coupling.

        Returns
        -------
        z : Tensor of shape (..., n_components)
            The codes.
        log_det : Tensor of shape (...)
            ``log |det dz/dw|`` (core flow and coupling), float64.
        """
        mean, scale = coupling
        if self.core_flow is None:
            u, log_det = w, w.new_zeros(w.shape[:-1], dtype=torch.float64)
        else:
            u, log_det = self.core_flow.to_base(w)
        return mean + scale * u, log_det.double() + sum_features(scale.log())

    def log_residual(self, y: Tensor, z: Tensor) -> Tensor:
        """Gaussian log-density of the shell residuals ``delta = y - f(z)``.

        Parameters
        ----------
        y : Tensor of shape (..., n_features)
            Preprocessed rows.
        z : Tensor of shape (..., n_components)
            Codes; extra leading dimensions broadcast against ``y``.

        Returns
        -------
        Tensor of shape (...)
            ``sum over shell features of log N(delta; 0, residual_scale^2)``, float64.
        """
        scale = self.residual_scale
        r = (y - apply_rows(self.decoder, z)) / scale
        return sum_features((-0.5 * r * r - scale.log() - 0.5 * LOG_2PI) * self.shell_mask)

    def log_joint(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``log p(x)`` (partitions) or ``log p(x, h(x))`` (linear), in three terms.

        Parameters
        ----------
        x : Tensor of shape (batch, n_features)
            Raw rows.

        Returns
        -------
        log_prior : Tensor of shape (batch,)
            ``log p0(z)``, float64.
        log_residual : Tensor of shape (batch,)
            :meth:`log_residual` of the rows, float64.
        log_det : Tensor of shape (batch,)
            Log-determinant of the bijection and the preprocessing, float64.
        """
        y, log_det_pre = self.preprocess(x)
        z, log_det = self.encode(self.coupling(y), self.core(y))
        return self.prior.log_prob(z), self.log_residual(y, z), log_det + log_det_pre

    def codes(self, x: Tensor) -> Tensor:
        """The codes ``z`` of raw rows.

        Parameters
        ----------
        x : Tensor of shape (batch, n_features)
            Raw rows.

        Returns
        -------
        Tensor of shape (batch, n_components)
            The codes, in the networks' dtype.
        """
        y, _ = self.preprocess(x)
        return self.encode(self.coupling(y), self.core(y))[0]

    def loss(self, out: Tensor, x: Tensor, weight: Tensor | None = None) -> Tensor:
        """Mean negative log-density of a batch; stores the detached terms in ``loss_terms``.

        Parameters
        ----------
        out : Tensor
            The output of :meth:`forward`; unused.
        x : Tensor of shape (batch, n_features)
            Raw rows.
        weight : Tensor of shape (batch,), optional
            Per-row weights (``sample_weight``).

        Returns
        -------
        Tensor
            A float64 scalar, ``-(log_prior + log_residual + log_det).mean()``.
        """
        log_p0, log_r, log_det = self.log_joint(x)
        self.loss_terms = {
            "prior": -batch_mean(log_p0, weight).detach(),
            "residual": -batch_mean(log_r, weight).detach(),
            "log_det": -batch_mean(log_det, weight).detach(),
        }
        return -batch_mean(log_p0 + log_r + log_det, weight)

    def importance_log_prob(self, x: Tensor, noise: Tensor, scale: float) -> Tensor:
        r"""``log (1/S) sum_s p(x, w_s) / q(w_s)``, ``w_s = h(y) + scale * noise_s``, all S draws in one pass.

        The importance estimate of ``log p(x)`` for the ``linear`` variant,
        with the Gaussian proposal ``q = N(h(y), scale^2 I)``. The coupling is
        computed once per row and broadcast over the draws.

        Parameters
        ----------
        x : Tensor of shape (batch, n_features)
            Raw rows.
        noise : Tensor of shape (S, n_components)
            Standard-normal draws, shared by every row.
        scale : float
            Std of the proposal around ``h(y)``.

        Returns
        -------
        Tensor of shape (batch,)
            The estimated log-densities (preprocessing log-determinant included), float64.
        """
        y, log_det_pre = self.preprocess(x)
        coupling = self.coupling(y)
        eps = noise[:, None, :]  # (S, 1, K)
        z, log_det = self.encode(coupling, self.core(y) + scale * eps.to(self.dtype))
        log_q = -0.5 * sum_features(eps**2) - self.n_components * (0.5 * LOG_2PI + math.log(scale))
        log_weights = self.prior.log_prob(z) + self.log_residual(y, z) + log_det - log_q
        return torch.logsumexp(log_weights, dim=0) - math.log(len(noise)) + log_det_pre

    def decode(self, z: Tensor) -> Tensor:
        """Generative pass with zero residuals (Algorithm 2, or 3 for ``linear``), in preprocessed units.

        Parameters
        ----------
        z : Tensor of shape (..., n_components)
            Codes; cast to the networks' dtype.

        Returns
        -------
        Tensor of shape (..., n_features)
            The preprocessed rows (pass them to :meth:`postprocess` for data units).
        """
        z = z.to(self.dtype)
        decoded = apply_rows(self.decoder, z)
        if self.core_index is None:
            return decoded
        mean, scale = self.coupling(decoded)
        u = (z - mean) / scale
        core = u if self.core_flow is None else self.core_flow.from_base(u)
        return decoded.index_copy(-1, self.core_index, core)
