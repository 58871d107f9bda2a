"""The torch modules of autoencoders within flows (AEF): the bijection, its log-density, the logit preprocessing."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..distributions import positive
from ..distributions._base import sum_features
from ._prior import LOG_2PI, LatentPrior
from ._rows import apply_rows

_SOFTPLUS_INV_1 = math.log(math.e - 1)  # raw value whose softplus is 1


class LogitActNorm(nn.Module):
    r"""Bijection :math:`y = (\mathrm{logit}(\lambda + (1 - 2\lambda) x) - b) e^{-s}` for data in [0, 1].

    The ActNorm shift ``b`` and log-scale ``s`` are learnable; they start at
    the per-feature mean and log-std of the logits of the training data
    (:meth:`logits` gives those logits, so the caller can take the moments
    block by block).
    """

    def __init__(self, logit_lambda: float, loc: Tensor, log_scale: Tensor):
        super().__init__()
        self.logit_lambda = float(logit_lambda)
        self.loc = nn.Parameter(torch.as_tensor(loc, dtype=torch.float32))
        self.log_scale = nn.Parameter(torch.as_tensor(log_scale, dtype=torch.float32))

    @staticmethod
    def logits(x: Tensor, logit_lambda: float) -> Tensor:
        s = logit_lambda + (1 - 2 * logit_lambda) * x
        return s.log() - torch.log1p(-s)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``y`` and ``log |det dy/dx|`` per row (float64)."""
        lam = self.logit_lambda
        s = lam + (1 - 2 * lam) * x.to(self.loc.dtype)
        log_s, log_1ms = s.log(), torch.log1p(-s)
        log_det = sum_features(math.log(1 - 2 * lam) - log_s - log_1ms) - self.log_scale.double().sum()
        return (log_s - log_1ms - self.loc) * torch.exp(-self.log_scale), log_det

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
    Log-densities and log-determinants are float64; the networks compute in
    their own dtype.

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
    core_flow : FlowAdapter or None
        ``n^{-1}`` is ``core_flow.to_base``; None is the identity.
    prior : LatentPrior
        ``p0``.
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
        return x

    @property
    def dtype(self) -> torch.dtype:
        return self.residual_raw_scale.dtype

    @property
    def residual_scale(self) -> Tensor:
        return positive(self.residual_raw_scale)

    def preprocess(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``y`` in the network dtype and the preprocessing's log-determinant (float64)."""
        x = x.to(self.dtype)
        if self.preprocessing is None:
            return x, x.new_zeros(x.shape[:-1], dtype=torch.float64)
        return self.preprocessing(x)

    def postprocess(self, y: Tensor) -> Tensor:
        return y if self.preprocessing is None else self.preprocessing.inverse(y)

    def core(self, y: Tensor) -> Tensor:
        return self.expansion(y) if self.core_index is None else y[..., self.core_index]

    def coupling(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Shift and scale of the affine coupling, from the shell of ``y``."""
        mean, raw_scale = apply_rows(self.encoder, y * self.shell_mask).split(self.n_components, dim=-1)
        return mean, positive(raw_scale)

    def encode(self, coupling: tuple[Tensor, Tensor], w: Tensor) -> tuple[Tensor, Tensor]:
        """Codes ``z`` for a coupling and core ``w`` (which may carry extra leading sample dims), and the log-det."""
        mean, scale = coupling
        if self.core_flow is None:
            u, log_det = w, w.new_zeros(w.shape[:-1], dtype=torch.float64)
        else:
            u, log_det = self.core_flow.to_base(w)
        return mean + scale * u, log_det.double() + sum_features(scale.log())

    def log_residual(self, y: Tensor, z: Tensor) -> Tensor:
        scale = self.residual_scale
        r = (y - apply_rows(self.decoder, z)) / scale
        return sum_features((-0.5 * r * r - scale.log() - 0.5 * LOG_2PI) * self.shell_mask)

    def log_joint(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``log p(x)`` (partitions) or ``log p(x, h(x))`` (linear) in three float64 terms: prior, residual, log-det."""
        y, log_det_pre = self.preprocess(x)
        z, log_det = self.encode(self.coupling(y), self.core(y))
        return self.prior.log_prob(z), self.log_residual(y, z), log_det + log_det_pre

    def codes(self, x: Tensor) -> Tensor:
        y, _ = self.preprocess(x)
        return self.encode(self.coupling(y), self.core(y))[0]

    def loss(self, out: Tensor, x: Tensor) -> Tensor:
        log_p0, log_r, log_det = self.log_joint(x)
        self.loss_terms = {
            "prior": -log_p0.mean().detach(),
            "residual": -log_r.mean().detach(),
            "log_det": -log_det.mean().detach(),
        }
        return -(log_p0 + log_r + log_det).mean()

    def importance_log_prob(self, x: Tensor, noise: Tensor, scale: float) -> Tensor:
        r"""``log (1/S) sum_s p(x, w_s) / q(w_s)``, ``w_s = h(y) + scale * noise_s``, all S draws in one pass.

        ``noise`` (S, K) is shared by every row; the coupling is computed once
        per row and broadcast over the draws.
        """
        y, log_det_pre = self.preprocess(x)
        coupling = self.coupling(y)
        eps = noise[:, None, :]  # (S, 1, K)
        z, log_det = self.encode(coupling, self.core(y) + scale * eps.to(self.dtype))
        log_q = -0.5 * sum_features(eps**2) - self.n_components * (0.5 * LOG_2PI + math.log(scale))
        log_weights = self.prior.log_prob(z) + self.log_residual(y, z) + log_det - log_q
        return torch.logsumexp(log_weights, dim=0) - math.log(len(noise)) + log_det_pre

    def decode(self, z: Tensor) -> Tensor:
        """Generative pass with zero residuals (Algorithm 2, or 3 for ``linear``), in preprocessed units."""
        z = z.to(self.dtype)
        decoded = apply_rows(self.decoder, z)
        if self.core_index is None:
            return decoded
        mean, scale = self.coupling(decoded)
        u = (z - mean) / scale
        core = u if self.core_flow is None else self.core_flow.from_base(u)
        return decoded.index_copy(-1, self.core_index, core)
