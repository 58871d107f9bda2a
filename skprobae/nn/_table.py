"""Rows of a table as a network sees them, and the joint likelihood of mixed continuous and categorical columns.

A fitted table layout (:class:`TableLayout`) says which columns are
categorical (their values are category codes 0, 1, ...), how many categories
each has, and the location and scale that standardize each continuous column.
:class:`TableInput` turns raw rows (NaN marking missing entries) into the
encoder's input; :class:`TableHead` is the output distribution of the whole
row: the chosen family over the standardized continuous columns and a
categorical (Bernoulli for two categories) distribution over each categorical
column, conditionally independent given the code. Its log-likelihood is in
the units of the raw rows: the standardization's log-determinant is included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional

from ..distributions import OutputDistribution
from ..distributions._base import batch_mean
from ._noise import noise_generator


@dataclass(frozen=True)
class TableLayout:
    """Column roles of a fitted table.

    Parameters
    ----------
    n_features : int
    categorical : ndarray of int
        Indices of the categorical columns (values are category codes).
    n_categories : tuple of int
        Categories of each categorical column.
    loc, scale : ndarray of shape (n_features,)
        Standardization of the continuous columns (0 and 1 elsewhere).
    missing_indicators : bool
        Whether the encoder also sees the 0/1 missingness mask of every column.
    mask_fraction : float, default=0.0
        Share of the observed entries hidden from the encoder (as if missing)
        at each training step; none at inference.
    """

    n_features: int
    categorical: np.ndarray
    n_categories: tuple[int, ...]
    loc: np.ndarray
    scale: np.ndarray
    missing_indicators: bool = False
    mask_fraction: float = 0.0

    @property
    def continuous(self) -> np.ndarray:
        return np.setdiff1d(np.arange(self.n_features), self.categorical)

    @property
    def n_inputs(self) -> int:
        """Width of the encoder input: continuous columns, one-hot categories, missingness indicators."""
        indicators = self.n_features if self.missing_indicators else 0
        return len(self.continuous) + sum(self.n_categories) + indicators

    @property
    def is_plain(self) -> bool:
        """No categorical column, no standardization, no indicators: the rows go to the networks as they are."""
        return (
            not len(self.categorical)
            and not self.missing_indicators
            and bool(np.all(self.loc == 0) and np.all(self.scale == 1))
        )


def _is_every_column(index: np.ndarray, n_features: int) -> bool:
    """Whether ``index`` selects every column in order (selecting them is then the identity)."""
    return bool(np.array_equal(index, np.arange(n_features)))


def _logit_sizes(n_categories: tuple[int, ...]) -> list[int]:
    """Decoder outputs per categorical column: one logit for two categories (Bernoulli), else one per category."""
    return [1 if k == 2 else (0 if k < 2 else k) for k in n_categories]


class TableInput(nn.Module):
    """Raw rows -> encoder input: standardized continuous values, one-hot categories, missingness indicators.

    A missing entry (NaN) becomes 0 (the mean of a standardized column, no
    category) and, with ``missing_indicators``, a 1 in its indicator. In
    training mode, each observed entry is also hidden this way with
    probability ``layout.mask_fraction`` (from the fit's own generator,
    ``skprobae.nn._noise.training_noise``), so that the encoder learns to
    infer entries it does not see; the loss still scores them.
    """

    mask_fraction = 0.0  # modules pickled before the parameter existed
    all_continuous = False  # and before this shortcut

    def __init__(self, layout: TableLayout):
        super().__init__()
        self.plain = layout.is_plain
        self.all_continuous = _is_every_column(layout.continuous, layout.n_features)
        self.missing_indicators = layout.missing_indicators
        self.mask_fraction = float(layout.mask_fraction)
        continuous = layout.continuous
        self.register_buffer("continuous", torch.as_tensor(continuous, dtype=torch.long), persistent=False)
        self.register_buffer("categorical", torch.as_tensor(layout.categorical, dtype=torch.long), persistent=False)
        self.register_buffer("loc", torch.as_tensor(layout.loc[continuous], dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(layout.scale[continuous], dtype=torch.float32))
        offsets = np.concatenate([[0], np.cumsum(layout.n_categories)[:-1]]).astype(np.int64)
        self.register_buffer("offsets", torch.as_tensor(offsets, dtype=torch.long), persistent=False)
        self.n_one_hot = int(sum(layout.n_categories))
        self.n_outputs = layout.n_inputs

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.mask_fraction > 0:
            hidden = torch.rand(x.shape, device=x.device, generator=noise_generator(x.device)) < self.mask_fraction
            x = x.masked_fill(hidden, float("nan"))
        missing = torch.isnan(x)
        if self.plain:
            return torch.where(missing, 0.0, x)
        if self.all_continuous:  # no gather: a copy of the batch per step
            values, missing_values = x, missing
        else:
            values, missing_values = x[:, self.continuous], missing[:, self.continuous]
        parts = [torch.where(missing_values, 0.0, (values - self.loc) / self.scale)]
        if self.n_one_hot:
            codes = x[:, self.categorical]
            present = ~torch.isnan(codes)
            index = torch.where(present, codes, 0.0).long() + self.offsets
            one_hot = x.new_zeros(len(x), self.n_one_hot)
            parts.append(one_hot.scatter_(1, index, present.to(x.dtype)))
        if self.missing_indicators:
            parts.append(missing.to(x.dtype))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def extra_repr(self) -> str:
        return f"n_outputs={self.n_outputs}, plain={self.plain}, mask_fraction={self.mask_fraction}"


class TableHead(OutputDistribution):
    """The distribution of a whole row: ``continuous`` over the standardized continuous columns, categoricals.

    Raw parameters: those of ``continuous``, then one logit per binary
    column and one per category of the other categorical columns. Every
    log-density is of the raw values (``x = loc + scale * x_std``, so
    ``- sum log scale`` over the observed continuous entries is added) and of
    the observed entries only: a NaN in ``x`` is left out (for the continuous
    family through its exact marginal, :meth:`OutputDistribution.log_prob_observed`).

    Parameters
    ----------
    continuous : OutputDistribution or None
        Family over the continuous columns (None if there are none).
    layout : TableLayout
    """

    all_continuous = False  # heads pickled before the shortcut

    def __init__(self, continuous: OutputDistribution | None, layout: TableLayout):
        super().__init__(layout.n_features)
        self.continuous = continuous
        self.point_estimate_kind = continuous.point_estimate_kind if continuous is not None else "mode"
        continuous_index = layout.continuous
        self.register_buffer("continuous_index", torch.as_tensor(continuous_index, dtype=torch.long), persistent=False)
        self.all_continuous = _is_every_column(continuous_index, layout.n_features)
        self.register_buffer("column_loc", torch.as_tensor(layout.loc[continuous_index], dtype=torch.float32))
        self.register_buffer("column_scale", torch.as_tensor(layout.scale[continuous_index], dtype=torch.float32))
        self.categorical_index = [int(j) for j in layout.categorical]
        self.n_categories = tuple(int(k) for k in layout.n_categories)
        self.logit_sizes = _logit_sizes(self.n_categories)
        self.standardizes = bool(
            np.any(layout.loc[continuous_index] != 0) or np.any(layout.scale[continuous_index] != 1)
        )

    def __getattr__(self, name: str):
        # the continuous family's own attributes (n_point_samples, matrix_shape, ...) read through the table
        try:
            return super().__getattr__(name)
        except AttributeError:
            continuous = self.__dict__.get("_modules", {}).get("continuous")  # no recursion while unpickling
            if continuous is None:
                raise
            return getattr(continuous, name)

    # ----------------------------------------------------------- layout
    @property
    def n_continuous_params(self) -> int:
        return self.continuous.n_params if self.continuous is not None else 0

    @property
    def n_params(self) -> int:
        return self.n_continuous_params + sum(self.logit_sizes)

    @property
    def feature_channels(self) -> int:
        # a convolutional decoder emits per-feature channels only when every column is continuous
        return self.continuous.feature_channels if not self.categorical_index else 0

    def assemble(self, per_feature: Tensor, extra: Tensor) -> Tensor:
        return self.continuous.assemble(per_feature, extra)

    @property
    def inference_cost(self) -> int:
        return (self.continuous.inference_cost if self.continuous is not None else 0) + sum(self.logit_sizes)

    @property
    def marginalizes(self) -> bool:
        return self.continuous is None or self.continuous.marginalizes

    def _continuous_params(self, params: Tensor) -> Tensor:
        return params[..., : self.n_continuous_params]

    def _logits(self, params: Tensor) -> list[Tensor]:
        return self._split_logits(self.category_logits(params))

    def _split_logits(self, logits: Tensor) -> list[Tensor]:
        return list(logits.split(self.logit_sizes, dim=-1))

    def category_logits(self, params: Tensor) -> Tensor:
        """The categorical part of the raw parameters: one logit per binary column, one per category otherwise."""
        return params[..., self.n_continuous_params :]

    # ------------------------------------------------------ likelihoods
    def _standardized(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The continuous columns of ``x`` standardized (missing entries at 0), and which of them are observed."""
        values = x if self.all_continuous else x[..., self.continuous_index]
        observed = ~torch.isnan(values)
        # a missing entry becomes the column's mean before the arithmetic: a NaN there would poison the gradients
        filled = torch.where(observed, values, self.column_loc.to(values.dtype))
        return (filled - self.column_loc) / self.column_scale, observed

    def _continuous_log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        if self.continuous is None:
            return params.new_zeros(params.shape[:-1], dtype=torch.float64)
        standardized, observed = self._standardized(x)
        cp = self._continuous_params(params)
        if bool(observed.all()):
            log_prob = self.continuous.log_prob(cp, standardized)
            log_scale = self.column_scale.log().sum(dtype=torch.float64)
        else:
            log_prob = self.continuous.log_prob_observed(cp, standardized, observed)
            log_scale = torch.where(observed, self.column_scale.log(), 0.0).sum(-1, dtype=torch.float64)
        return log_prob - log_scale if self.standardizes else log_prob

    def categorical_log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """Sum over the observed categorical entries of their log-probability (0 without categorical columns)."""
        return self.logits_log_prob(self.category_logits(params), x)

    def logits_log_prob(self, logits: Tensor, x: Tensor) -> Tensor:
        """:meth:`categorical_log_prob` from the categorical logits (:meth:`category_logits`) alone, float64."""
        total = logits.new_zeros(logits.shape[:-1], dtype=torch.float64)
        columns = zip(self.categorical_index, self.n_categories, self._split_logits(logits), strict=True)
        for column, k, column_logits in columns:
            if k < 2:
                continue
            codes = x[..., column].expand(logits.shape[:-1])
            present = ~torch.isnan(codes)
            safe = torch.where(present, codes, 0.0).long()
            if k == 2:
                logit = column_logits[..., 0]
                term = -functional.softplus(torch.where(safe == 1, -logit, logit))
            else:
                term = column_logits.log_softmax(-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
            total = total + torch.where(present, term, 0.0).double()
        return total

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        return self._continuous_log_prob(params, x) + self.categorical_log_prob(params, x)

    def loss(self, params: Tensor, x: Tensor, weight: Tensor | None = None) -> Tensor:
        """The continuous family's own loss on standardized values, plus the categorical negative log-likelihood.

        ``weight`` (per row, optional) weights every row's terms; it is passed
        on to the continuous family only when given.
        """
        if self.continuous is None:
            return -batch_mean(self.categorical_log_prob(params, x), weight)
        standardized, observed = self._standardized(x)
        cp = self._continuous_params(params)
        categorical = -batch_mean(self.categorical_log_prob(params, x), weight) if self.categorical_index else 0.0
        weighted = {} if weight is None else {"weight": weight}
        if bool(observed.all()):
            continuous = self.continuous.loss(cp, standardized, **weighted)
        elif hasattr(self.continuous, "loss_observed"):
            continuous = self.continuous.loss_observed(cp, standardized, observed, **weighted)
        else:
            nll = -batch_mean(self.continuous.log_prob_observed(cp, standardized, observed), weight)
            continuous = self.continuous.scale_loss(nll)
        return continuous + categorical

    # --------------------------------------------------------- summaries
    def category_probabilities(self, params: Tensor) -> list[Tensor]:
        """Per-category probabilities of each categorical column, shapes ``(..., n_categories_j)``."""
        return self.logits_probabilities(self.category_logits(params))

    def logits_probabilities(self, logits: Tensor) -> list[Tensor]:
        """:meth:`category_probabilities` from the categorical logits alone."""
        probabilities = []
        for k, column_logits in zip(self.n_categories, self._split_logits(logits), strict=True):
            if k == 2:
                p = torch.sigmoid(column_logits[..., 0])
                probabilities.append(torch.stack([1 - p, p], dim=-1))
            elif k < 2:
                probabilities.append(logits.new_ones(*logits.shape[:-1], max(k, 1)))
            else:
                probabilities.append(column_logits.softmax(-1))
        return probabilities

    def logits_fisher(self, logits: Tensor, x: Tensor) -> Tensor:
        """Fisher information of the observed categorical entries with respect to the logits, ``(..., L, L)``.

        The Hessian of the negative log-likelihood in the logits (it does not
        depend on the observed category): ``p (1 - p)`` for a Bernoulli logit,
        ``diag(p) - p p^T`` for a softmax column, zero for a missing entry;
        block diagonal over the columns. A Gauss-Newton Laplace approximation
        in the codes takes ``J^T F J`` from it.
        """
        size = logits.shape[-1]
        fisher = logits.new_zeros(*logits.shape[:-1], size, size)
        start = 0
        for column, k, column_logits in zip(
            self.categorical_index, self.n_categories, self._split_logits(logits), strict=True
        ):
            width = column_logits.shape[-1]
            if not width:
                continue
            present = ~torch.isnan(x[..., column]).expand(logits.shape[:-1])
            if k == 2:
                p = torch.sigmoid(column_logits)
                block = torch.diag_embed(p * (1 - p))
            else:
                p = column_logits.softmax(-1)
                block = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
            block = torch.where(present[..., None, None], block, 0.0)
            fisher[..., start : start + width, start : start + width] = block
            start += width
        return fisher

    def _fill(self, params: Tensor, continuous: Tensor | None, categorical: list[Tensor]) -> Tensor:
        out = params.new_empty(*params.shape[:-1], self.n_features)
        if continuous is not None:
            out[..., self.continuous_index] = continuous.to(out.dtype)
        for column, values in zip(self.categorical_index, categorical, strict=True):
            out[..., column] = values.to(out.dtype)
        return out

    def _unstandardize(self, values: Tensor) -> Tensor:
        return (
            values * self.column_scale.to(values.dtype) + self.column_loc.to(values.dtype)
            if self.standardizes
            else values
        )

    def point_estimate(self, params: Tensor) -> Tensor:
        """Continuous columns: the family's point estimate; categorical columns: the most probable category."""
        continuous = None
        if self.continuous is not None:
            continuous = self._unstandardize(self.continuous.point_estimate(self._continuous_params(params)))
        modes = [p.argmax(-1) for p in self.category_probabilities(params)]
        return self._fill(params, continuous, modes)

    def variance(self, params: Tensor) -> Tensor:
        """Continuous columns: the family's variance in raw units; categorical columns: NaN (no variance of a label)."""
        continuous = None
        if self.continuous is not None:
            continuous = self._unstandardize_variance(self.continuous.variance(self._continuous_params(params)))
        return self._fill_variance(params, continuous)

    def point_and_variance(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`point_estimate` and :meth:`variance`, from one call of the continuous family's."""
        if self.continuous is None:
            return self.point_estimate(params), self.variance(params)
        point, variance = self.continuous.point_and_variance(self._continuous_params(params))
        modes = [p.argmax(-1) for p in self.category_probabilities(params)]
        return (
            self._fill(params, self._unstandardize(point), modes),
            self._fill_variance(params, self._unstandardize_variance(variance)),
        )

    def _unstandardize_variance(self, variance: Tensor) -> Tensor:
        return variance * self.column_scale.to(variance.dtype) ** 2 if self.standardizes else variance

    def _fill_variance(self, params: Tensor, continuous: Tensor | None) -> Tensor:
        nan = [params.new_full(params.shape[:-1], float("nan")) for _ in self.categorical_index]
        return self._fill(params, continuous, nan)

    def components(self, params: Tensor) -> tuple[Tensor, Tensor]:
        if self.continuous is None:
            point = self.point_estimate(params).unsqueeze(-2)
            return point, point.new_zeros(point.shape[:-1])
        points, log_weights = self.continuous.components(self._continuous_params(params))
        modes = [p.argmax(-1).unsqueeze(-1).expand(points.shape[:-1]) for p in self.category_probabilities(params)]
        out = points.new_empty(*points.shape[:-1], self.n_features)
        out[..., self.continuous_index] = self._unstandardize(points)
        for column, values in zip(self.categorical_index, modes, strict=True):
            out[..., column] = values.to(out.dtype)
        return out, log_weights

    def sample_values(self, params: Tensor, n_samples: int) -> Tensor:
        """``n_samples`` draws of every row, shape ``(n_samples, ..., n_features)``."""
        continuous = None
        if self.continuous is not None:
            draws = self.continuous.sample_values(self._continuous_params(params), n_samples)
            continuous = self._unstandardize(draws)
        categorical = [
            torch.distributions.Categorical(probs=p.double(), validate_args=False).sample((n_samples,))
            for p in self.category_probabilities(params)
        ]
        out = params.new_empty(n_samples, *params.shape[:-1], self.n_features)
        if continuous is not None:
            out[..., self.continuous_index] = continuous.to(out.dtype)
        for column, values in zip(self.categorical_index, categorical, strict=True):
            out[..., column] = values.to(out.dtype)
        return out

    def scale_loss(self, nll: Tensor) -> Tensor:
        return self.continuous.scale_loss(nll) if self.continuous is not None else nll

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}, categorical={self.categorical_index}, standardizes={self.standardizes}"
