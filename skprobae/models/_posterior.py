r"""Posterior inference in a PAE's flow base space (PAE paper, Section 2.3, Eqs. 13-14).

For a corrupted row :math:`\tilde x` (some entries missing, the rest
observed with Gaussian noise of std :math:`\sigma_n`), the posterior over the
flow's base variable :math:`u` is

.. math:: p(u \mid \tilde x) \propto \prod_{j\ \mathrm{observed}}
          \mathcal{N}(\tilde x_j;\ g_j(z(u)),\ \sigma_j^2 + \sigma_{n,j}^2)\ \mathcal{N}(u; 0, I),

with :math:`z(u) = \mu + s \odot b^{-1}(u)` (the flow on standardized codes)
and :math:`g` the decoder. :func:`posterior_draws` finds its modes by gradient
descent from several starts (one at the encoding of the mean-filled row, the
others seeded draws from the prior), puts a Laplace (Gauss-Newton) Gaussian
at each distinct mode, weighted by its Laplace evidence, and samples that
mixture. All rows of a batch are processed together; the random numbers (the
restarts, the draws) are shared by the rows, so a row's result does not
depend on the other rows.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import jvp

from ..nn._prior import LOG_2PI


@dataclass
class PosteriorSettings:
    n_restarts: int = 4
    n_steps: int = 200
    learning_rate: float = 0.05
    n_samples: int = 100
    mode_tolerance: float = 0.1  # base-space distance (per sqrt(K)) under which two modes are one


@dataclass
class CategoricalColumns:
    """The categorical columns of a table in the posterior: ``decode`` outputs ``d`` point values, then logits.

    ``head`` is the model's :class:`~skprobae.nn._table.TableHead`; ``x``
    holds the rows with their category codes (NaN where missing). Observed
    categories add their log-probability to the likelihood and their Fisher
    information to the Laplace precision.
    """

    head: object
    x: Tensor  # (n, d)

    @property
    def n_features(self) -> int:
        return self.x.shape[-1]

    def split(self, out: Tensor) -> tuple[Tensor, Tensor]:
        return out[..., : self.n_features], out[..., self.n_features :]


@dataclass
class CleanPosterior:
    """Per-sample Gaussian conditionals of the clean row: ``x | u_s, x~ ~ N(mean_s, var_s)``."""

    mean: Tensor  # (n, S, d)
    var: Tensor  # (n, S, d)
    n_modes: Tensor  # (n,) distinct modes found
    failed: Tensor  # (n,) True where no start gave a usable mode (the best start is kept with the prior's spread)
    category_probabilities: list[Tensor] | None = None  # per categorical column, (n, S, n_categories) per draw

    def moments(self) -> tuple[Tensor, Tensor]:
        """Posterior mean and std per feature (law of total variance over the draws)."""
        mean = self.mean.mean(1)
        var = self.var.mean(1) + self.mean.var(1, correction=0)
        return mean, var.clamp_min(0).sqrt()

    def draws(self, noise: Tensor) -> Tensor:
        return self.mean + self.var.sqrt() * noise


def _neg_log_joint(
    decode: Callable[[Tensor], Tensor],
    u: Tensor,
    x: Tensor,
    precision: Tensor,
    categorical: CategoricalColumns | None = None,
) -> Tensor:
    """``-log p(x_obs | u) - log N(u; 0, I)`` without the Gaussian constants; missing entries have zero precision.

    With ``categorical``, the observed categories' negative log-probabilities are added (a pmf: no constant).
    """
    out = decode(u)
    if categorical is None:
        residual = x - out
        return 0.5 * (residual * residual * precision).sum(-1) + 0.5 * (u * u).sum(-1)
    values, logits = categorical.split(out)
    residual = x - values
    gaussian = 0.5 * (residual * residual * precision).sum(-1) + 0.5 * (u * u).sum(-1)
    return gaussian - categorical.head.logits_log_prob(logits, categorical.x)


def _laplace_factor(hessian: Tensor) -> tuple[Tensor, Tensor]:
    """Cholesky factors of the Laplace precisions, and which of them are usable.

    ``I + J^T W J`` is positive definite in exact arithmetic, but where the
    flow's tails give the decoder a huge Jacobian (1e14 on shuttle) its
    condition number passes 1e16 and float64 Cholesky fails. Such a mode is
    nearly a point mass: a jitter of 1e-10 of the largest diagonal entry
    changes its (tiny) covariance, not the result. A factor that still fails
    or is not finite is replaced by the identity and reported unusable.
    """
    chol, info = torch.linalg.cholesky_ex(hessian)
    not_finite = ~torch.isfinite(hessian).all(-1).all(-1)
    failed = (info != 0) | not_finite
    if failed.any():
        eye = torch.eye(hessian.shape[-1], dtype=hessian.dtype, device=hessian.device)
        finite = torch.where(torch.isfinite(hessian), hessian, 0.0)
        jitter = 1e-10 * finite.diagonal(dim1=-2, dim2=-1).abs().amax(-1)
        repaired, info = torch.linalg.cholesky_ex(finite + jitter[..., None, None] * eye)
        failed_again = failed & ((info != 0) | not_finite)
        chol = torch.where(failed[..., None, None], repaired, chol)
        chol = torch.where(failed_again[..., None, None], eye, chol)
        return chol, ~failed_again
    return chol, torch.ones(hessian.shape[:-2], dtype=torch.bool, device=hessian.device)


_FORWARD_AD_LOCK = threading.Lock()


def jacobian_columns(fn: Callable[[Tensor], Tensor], u: Tensor) -> Tensor:
    """``d fn / d u`` at every row of ``u`` (..., K): all K forward-mode columns in one batched pass, (..., d, K).

    The rows are repeated K times, each copy with one unit tangent; no
    autograd graph is kept.
    """
    K = u.shape[-1]
    tangents = torch.eye(K, dtype=u.dtype, device=u.device).reshape(K, *([1] * (u.dim() - 1)), K)
    repeated = u.detach().unsqueeze(0).expand(K, *u.shape).contiguous()
    # torch's forward-AD levels are process-wide: two threads inside jvp at once delete each other's level
    # ("Trying to access a forward AD level with an invalid index"), so jvp runs one thread at a time.
    with _FORWARD_AD_LOCK, torch.no_grad():
        _, columns = jvp(fn, (repeated,), (tangents.expand_as(repeated).contiguous(),))
    return columns.movedim(0, -1)


def _find_modes(
    decode: Callable[[Tensor], Tensor],
    start: Tensor,
    restart_noise: Tensor,
    x: Tensor,
    precision: Tensor,
    settings: PosteriorSettings,
    categorical: CategoricalColumns | None = None,
) -> tuple[Tensor, Tensor]:
    """MAP from every start, all restarts and rows at once (Adam is per coordinate: rows stay independent).

    Returns the modes (R, n, K), diverged ones set to 0, and which diverged.
    """
    n, K = start.shape
    starts = torch.cat([start[None], restart_noise[:, None, :].expand(-1, n, K)])  # (R, n, K)
    u = starts.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([u], lr=settings.learning_rate)
    with torch.enable_grad():
        for _ in range(settings.n_steps):
            optimizer.zero_grad()
            (grad,) = torch.autograd.grad(_neg_log_joint(decode, u, x, precision, categorical).sum(), u)
            u.grad = grad
            optimizer.step()
    diverged = ~torch.isfinite(u.detach()).all(-1)
    return torch.where(diverged[..., None], 0.0, u.detach()), diverged


def _laplace_at_modes(
    decode: Callable[[Tensor], Tensor],
    modes: Tensor,
    diverged: Tensor,
    x: Tensor,
    observed: Tensor,
    variance: Tensor,
    precision: Tensor,
    categorical: CategoricalColumns | None = None,
) -> tuple[Tensor, Tensor]:
    """Gauss-Newton Laplace factor ``chol(I + J^T W J)`` at each mode and its log-evidence (-inf if unusable).

    With ``categorical``, ``J_l^T F J_l`` of the observed categories joins the precision (``J_l`` the
    Jacobian of the logits, ``F`` their Fisher information): the generalized Gauss-Newton Hessian.
    """
    K = modes.shape[-1]
    J = jacobian_columns(decode, modes)  # (R, n, d [+ L], K)
    if categorical is not None:
        d = categorical.n_features
        J, J_logits = J[..., :d, :], J[..., d:, :]
    hessian = torch.eye(K, dtype=x.dtype, device=x.device) + J.mT @ (precision[..., None] * J)
    if categorical is not None:
        with torch.no_grad():
            logits = categorical.split(decode(modes))[1]
        fisher = categorical.head.logits_fisher(logits, categorical.x).to(J_logits.dtype)
        hessian = hessian + J_logits.mT @ fisher @ J_logits
    chol, usable = _laplace_factor(hessian)
    n_observed = observed.sum(-1)
    log_norm = -0.5 * (torch.where(observed, variance.log().expand_as(x), 0).sum(-1) + n_observed * LOG_2PI)
    with torch.no_grad():
        log_joint = -_neg_log_joint(decode, modes, x, precision, categorical) + log_norm - 0.5 * K * LOG_2PI
    evidence = log_joint + 0.5 * K * LOG_2PI - chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (R, n)
    return chol, evidence.masked_fill(diverged | ~usable | ~torch.isfinite(evidence), -math.inf)


def _distinct_modes(
    modes: Tensor, chol: Tensor, evidence: Tensor, settings: PosteriorSettings
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Modes ranked by evidence with near-duplicates dropped; their factors, mixture weights, count, failures.

    A row whose every mode failed keeps its best-ranked one, with the
    prior's spread (an identity factor); it is reported in the last output.
    """
    K = modes.shape[-1]
    order = evidence.argsort(0, descending=True)
    ranked = modes.gather(0, order[..., None].expand_as(modes))
    keep = torch.zeros_like(evidence, dtype=torch.bool)
    tolerance = settings.mode_tolerance * math.sqrt(K)
    keep[0] = True
    for r in range(1, len(ranked)):
        distance = (ranked[:r] - ranked[r]).norm(dim=-1)  # (r, n)
        keep[r] = ~((distance < tolerance) & keep[:r]).any(0)
    ranked_evidence = evidence.gather(0, order).masked_fill(~keep, -math.inf)
    failed = torch.isinf(ranked_evidence).all(0)
    ranked_evidence[0] = torch.where(failed, 0.0, ranked_evidence[0])
    weights = torch.softmax(ranked_evidence, dim=0).T  # (n, R)
    ranked_chol = chol.gather(0, order[..., None, None].expand_as(chol))
    return ranked, ranked_chol, weights, keep.sum(0), failed


def _sample_mixture(
    decode: Callable[[Tensor], Tensor],
    ranked: Tensor,
    ranked_chol: Tensor,
    weights: Tensor,
    draw_uniform: Tensor,
    draw_noise: Tensor,
    bounds: tuple[Tensor, Tensor] | None,
) -> Tensor:
    """Decoded draws of the mixture: mode by the shared uniforms, then ``u = mode + L^{-T} eps``; (n, S, d)."""
    n = weights.shape[0]
    cumulative = weights.cumsum(-1)
    cumulative[:, -1] = 1.0
    component = torch.searchsorted(cumulative, draw_uniform.expand(n, -1).contiguous())  # (n, S)
    rows = torch.arange(n, device=weights.device)[:, None]
    mode = ranked.permute(1, 0, 2)[rows, component]  # (n, S, K)
    factor = ranked_chol.permute(1, 0, 2, 3)[rows, component]  # (n, S, K, K)
    offset = torch.linalg.solve_triangular(factor.mT, draw_noise.expand(n, -1, -1)[..., None], upper=True)
    with torch.no_grad():
        decoded = decode(mode + offset[..., 0])
    if bounds is None:
        return decoded
    d = bounds[0].shape[-1]  # with categorical columns, the logits after the d values are not clipped
    return torch.cat([torch.clamp(decoded[..., :d], *bounds), decoded[..., d:]], dim=-1)


def _clean_conditionals(
    decoded: Tensor, x: Tensor, observed: Tensor, sigma: Tensor, noise_std: Tensor, variance: Tensor
) -> tuple[Tensor, Tensor]:
    """Clean ``x`` given each draw: observed entries shrink towards the data, missing ones are g + N(0, sigma^2)."""
    obs = observed[:, None, :]
    shrunk = torch.where(noise_std > 0, (noise_std**2 * decoded + sigma**2 * x[:, None, :]) / variance, x[:, None, :])
    mean = torch.where(obs, shrunk, decoded)
    var = torch.where(obs, sigma**2 * noise_std**2 / variance, (sigma**2).expand_as(decoded))
    return mean, var


def posterior_draws(
    decode: Callable[[Tensor], Tensor],
    start: Tensor,
    x: Tensor,
    observed: Tensor,
    sigma: Tensor,
    noise_std: Tensor,
    restart_noise: Tensor,
    draw_uniform: Tensor,
    draw_noise: Tensor,
    settings: PosteriorSettings,
    bounds: tuple[Tensor, Tensor] | None = None,
    categorical: CategoricalColumns | None = None,
) -> CleanPosterior:
    """Mixture-of-Laplace posterior of the clean rows of ``x``: modes, Laplace factors, distinct modes, draws.

    Parameters
    ----------
    decode : callable
        ``u (..., K) -> g(z(u)) (..., d)``, differentiable.
    start : (n, K)
        Base-space start of the first restart (the mean-filled row's encoding).
    x : (n, d)
        Observed values (anything where ``observed`` is False).
    observed : (n, d) bool
    sigma, noise_std : (d,)
        Model noise std and corruption noise std per feature.
    restart_noise : (R - 1, K)
        Starts of the other restarts, shared by the rows.
    draw_uniform : (S,)
        Uniforms choosing each draw's mode, shared by the rows.
    draw_noise : (S, K)
        Standard-normal draws in base space, shared by the rows.
    bounds : (low, high) of shape (d,), optional
        Decoded draws are clipped to them: where the posterior is broad (few
        observed entries), draws reach the flow's tails, where the flow and
        the decoder extrapolate without support from the training data.
    categorical : CategoricalColumns, optional
        The categorical columns of a table: ``decode`` then returns the ``d``
        point values followed by the categorical logits, ``observed`` marks
        the observed continuous entries only, and the result carries each
        draw's category probabilities.
    """
    x = torch.where(observed, x, torch.zeros_like(x))
    variance = sigma**2 + noise_std**2
    precision = torch.where(observed, 1.0 / variance, torch.zeros_like(x))
    modes, diverged = _find_modes(decode, start, restart_noise, x, precision, settings, categorical)
    chol, evidence = _laplace_at_modes(decode, modes, diverged, x, observed, variance, precision, categorical)
    ranked, ranked_chol, weights, n_modes, failed = _distinct_modes(modes, chol, evidence, settings)
    decoded = _sample_mixture(decode, ranked, ranked_chol, weights, draw_uniform, draw_noise, bounds)
    probabilities = None
    if categorical is not None:
        decoded, logits = categorical.split(decoded)
        probabilities = categorical.head.logits_probabilities(logits)
    mean, var = _clean_conditionals(decoded, x, observed, sigma, noise_std, variance)
    return CleanPosterior(mean=mean, var=var, n_modes=n_modes, failed=failed, category_probabilities=probabilities)
