"""The steps every skprobae estimator shares, said once over small per-model hooks.

An estimator subclasses :class:`BaseAutoencoder`, lists its hyperparameters in
``__init__`` (which only stores them) and implements the hooks:

``_build_module(X)``
    the torch module trained by ``fit`` (built under the estimator's seed);
``_fit_rest(X, split, rng)``
    the fitted attributes beyond the trained network (named steps);
``_encode(x)``, ``_decode(z)``, ``_reconstruct(x, return_std)``
    codes, point estimates, point estimates with their per-feature std;
``_prior``
    the latent prior (:class:`~skprobae.nn.LatentPrior`) that ``sample`` draws from;
``_log_density(x)``
    what ``score_samples`` returns, float64.

This class turns them into ``fit``, ``transform``, ``inverse_transform``,
``reconstruct``, ``sample``, ``score_samples``, ``score`` and the outlier
contract of scikit-learn's ``IsolationForest`` (``contamination``,
``offset_``, ``decision_function``, ``predict``). Every inference call goes
through :meth:`BaseAutoencoder._run`: the model is moved to the current
``device`` and ``inference_dtype``, the rows are processed in fixed-size
blocks (:func:`~skprobae._engine.map_rows`) with the thread count of
:func:`~skprobae._engine.choose_threads`, and a device that runs out of memory
gets an error that says what to change.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from numbers import Integral, Real

import numpy as np
import torch
from sklearn import get_config
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, OutlierMixin, TransformerMixin
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted
from skorch.callbacks import PrintLog
from skorch.helper import predefined_split
from torch import Tensor, nn

from ._engine import (
    INFERENCE_DTYPES,
    MIXED_PRECISIONS,
    RowBatches,
    RowCost,
    RowData,
    block_rows,
    choose_threads,
    map_rows,
    measure_row_cost,
    torch_threads,
    training_source,
)
from ._net import AcceleratedLikelihoodNet, ClipGradNorm, EpochProgress, KeepBest, LikelihoodNet
from ._table import (
    auto_n_components,
    check_explicit_n_components,
    check_table,
    fit_standardization,
    table_layout,
    table_output,
)
from ._version import PersistenceMixin
from .distributions import BUILTIN_DISTRIBUTIONS, OutputDistribution, make_distribution
from .nn import ACTIVATIONS, LatentPrior, build_networks, parse_image_shape
from .nn._noise import training_noise
from .nn._table import TableHead, TableInput

_SEED_MAX = np.iinfo(np.int32).max
_FLOAT32_MAX = float(np.finfo(np.float32).max)

OFFSET_ROWS = (1_000, 20_000)
"""Training rows scored for ``offset_``: all of them up to the first number; above it, a seeded subsample
as large as :data:`OFFSET_FLOPS` of scoring allows, between the two numbers."""

SUM_CHUNK_ROWS = 65_536
"""Rows per pass at most when summing a statistic over the training rows."""

SUM_CHUNK_BYTES = 64 * 2**20
"""Per-row outputs held at once at most when summing a statistic (a first pass of :data:`SUM_FIRST_ROWS` rows
measures a row's output)."""

SUM_FIRST_ROWS = 1_024
"""Rows of the first pass of a sum over rows, which measures the size of a row's output."""

_ROW_COSTS: dict[tuple, RowCost] = {}  # measured costs by model structure and computation (oldest dropped first)
_ROW_COSTS_SIZE = 512

RUNTIME_PARAMS = frozenset(
    {
        "batch_size",
        "contamination",
        "device",
        "flow_batch_size",
        "flow_learning_rate",
        "flow_max_epochs",
        "inference_dtype",
        "learning_rate",
        "map_learning_rate",
        "map_steps",
        "max_epochs",
        "max_grad_norm",
        "mixed_precision",
        "n_importance_samples",
        "n_iter_no_change",
        "n_posterior_samples",
        "n_threads",
        "random_state",
        "score_method",
        "validation_fraction",
        "accelerator",
        "verbose",
        "warm_start",
        "weight_decay",
    }
)
"""Parameters that ``warm_start`` / ``partial_fit`` may change between calls; any other change is refused."""

AUTO_FENCE = 1.5
"""``contamination="auto"``: ``offset_`` is Tukey's lower fence ``Q1 - 1.5 IQR`` of the training scores."""

MARGINALIZING_FAMILIES = frozenset({"mse", "normal", "normal_diag", "normal_full", "t", "t_diag", "t_full"})
"""Built-in families with an exact marginal over the observed entries: they train on and score rows with NaN."""

RANKING_EPOCH_SHARE = 0.1
"""Share of ``max_epochs`` (and ``flow_max_epochs``) the first fit of ``refit_on_inliers`` trains, at least one: it only
ranks the training rows for the second fit (on the ten ODDS sets, the same mean AUROC as a full first fit)."""

RANKING_MAX_ROWS = 8192
"""Training rows the first fit of ``refit_on_inliers`` trains on at most (a seeded subset; it still scores every
row): on large tables its cost stays bounded."""

INTERRUPTED_OFFSET_ROWS = 256
"""Training rows scored for ``offset_`` after a KeyboardInterrupt, so that the fit ends within seconds."""

OFFSET_FLOPS = 2e11
"""Scoring work (FLOPs) the ``offset_`` subsample may cost, about two seconds on one CPU core."""


def draw_seed(random_state) -> int:
    """An integer seed from anything ``check_random_state`` accepts; anything else names ``random_state``."""
    try:
        generator = check_random_state(random_state)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"random_state must be None, an int in [0, 2**32 - 1] or a numpy RandomState; got {random_state!r} "
            f"({error})."
        ) from None
    return int(generator.randint(_SEED_MAX))


def torch_generator(random_state) -> torch.Generator:
    """A CPU torch generator seeded from anything ``check_random_state`` accepts."""
    return torch.Generator().manual_seed(draw_seed(random_state))


_GLOBAL_RNG_LOCK = threading.RLock()
"""Held while skprobae forks torch's global generator: another thread's fork would rewind the stream on its exit."""


def _renew_rng_lock() -> None:
    """A fresh lock in a forked child: one held by another thread at the fork would never be released there."""
    global _GLOBAL_RNG_LOCK
    _GLOBAL_RNG_LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_renew_rng_lock)


@contextlib.contextmanager
def _fork_rng(device: str | torch.device) -> Iterator[None]:
    """``torch.random.fork_rng`` over the CPU generator and, on a GPU, that device's, under the process-wide lock."""
    device = torch.device(device)
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        yield


@contextlib.contextmanager
def torch_seeded(seed: int, device: str | torch.device = "cpu") -> Iterator[None]:
    """Run the body with torch's global RNG seeded, then restore the caller's RNG state.

    Module initialisation and ``torch.distributions`` sampling draw from the
    global generator; forking it keeps the user's own torch randomness intact.
    The body holds a process-wide lock, so seeded sections of other threads
    (a search with joblib's threading backend) wait instead of drawing from
    the same stream; keep it short (training noise has its own generators,
    ``skprobae.nn._noise.training_noise``).
    """
    with _fork_rng(device):
        torch.manual_seed(seed)
        yield


def noise_seed(seed: int, epochs_done: int = 0) -> int:
    """The seed of a training stage's noise generators, derived from (and independent of) the stage's ``seed``.

    ``epochs_done``: the epochs the module has already trained (``partial_fit``, ``warm_start``), so that a
    continued stage, whose ``seed`` repeats with an int ``random_state``, does not replay the noise of the last call.
    """
    return int(np.random.SeedSequence(seed, spawn_key=(epochs_done,)).generate_state(1)[0])


def _move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Move an optimizer's state (Adam's moments) to ``device``, after its parameters.

    As ``Optimizer.load_state_dict`` does: the step count moves too when the
    optimizer is fused or capturable (kept beside the parameters), otherwise it
    stays a CPU scalar.
    """
    for group in optimizer.param_groups:
        step_on_device = group.get("fused") or group.get("capturable")
        for parameter in group["params"]:
            state = optimizer.state.get(parameter, {})
            for key, value in state.items():
                if isinstance(value, Tensor) and (key != "step" or step_on_device):
                    state[key] = value.to(device)


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``; check explicit choices."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}.") from exc
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available; use device='auto' or 'cpu' "
            "(a model fitted on a GPU runs on the CPU after set_params(device='cpu'))."
        )
    return device


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """float64 numpy copy of a tensor, wherever it lives."""
    return tensor.detach().to("cpu", torch.float64).numpy()


@dataclass(frozen=True)
class Split:
    """The seeded training / validation rows of a fit."""

    train: np.ndarray
    valid: np.ndarray

    @property
    def fit_rows(self) -> np.ndarray:
        """Rows statistics of the training data are taken on: the training rows (all, if there are none)."""
        return self.train if len(self.train) else np.concatenate([self.train, self.valid])

    @property
    def held_out(self) -> np.ndarray:
        """Rows a held-out quantity is measured on: the validation rows, else the training rows."""
        return self.valid if len(self.valid) else self.fit_rows


def forget_fitted_attributes(estimator: BaseEstimator) -> None:
    """Back to unfitted: drop every fitted attribute (a fit that did not finish leaves none behind)."""
    for name in [n for n in vars(estimator) if n.endswith("_") and not n.startswith("__")]:
        delattr(estimator, name)


_SCALE_LIMIT = 1e3
_SCALE_SAMPLE_ROWS = 10_000


def weighted_quantile(values: np.ndarray, quantiles, weight: np.ndarray) -> np.ndarray:
    """Quantiles of weighted ``values``: the smallest value whose weighted distribution function reaches each ``q``.

    NumPy's ``np.quantile(values, q, weights=weight, method="inverted_cdf")``,
    which needs NumPy 2; rows of weight 0 do not count.
    """
    order = np.argsort(values, kind="stable")
    cdf = np.cumsum(np.asarray(weight, dtype=np.float64)[order])
    index = np.searchsorted(cdf / cdf[-1], np.asarray(quantiles, dtype=np.float64), side="left")
    return np.asarray(values)[order][np.minimum(index, len(values) - 1)]


def _warn_if_badly_scaled(owner: str, X: np.ndarray) -> None:
    """Warn when the columns of a table are far from unit scale or far apart in scale.

    The networks see raw values: a column with values near 1e6 saturates
    them and dominates every log-likelihood (scores near -1e20). The check
    reads at most ``_SCALE_SAMPLE_ROWS`` evenly spaced rows, so a
    memory-mapped file is not read whole.
    """
    sample = np.asarray(X[:: max(1, len(X) // _SCALE_SAMPLE_ROWS)], dtype=np.float64)
    if len(sample) < 2:
        return
    std = sample.std(axis=0)
    rms = np.sqrt(np.mean(sample * sample, axis=0))
    varying = std[std > 0]
    widest = int(np.argmax(rms))
    if rms[widest] > _SCALE_LIMIT:
        problem = f"column {widest} has values of magnitude {rms[widest]:.1e}"
    elif len(varying) and varying.max() > _SCALE_LIMIT * np.median(varying):
        median = np.median(varying)
        problem = f"column {int(np.argmax(std))} has std {std.max():.1e} against a median column std of {median:.1e}"
    else:
        return
    warnings.warn(
        f"{owner}: X is badly scaled ({problem}). The networks train on raw values, so such columns dominate "
        "the fit and the scores; standardize X first, e.g. make_pipeline(StandardScaler(), model).",
        UserWarning,
        stacklevel=4,
    )


@contextlib.contextmanager
def _explain_out_of_memory(owner: str, action: str, remedy: str) -> Iterator[None]:
    try:
        yield
    except torch.OutOfMemoryError as exc:
        raise torch.OutOfMemoryError(f"{owner} ran out of device memory {action}. {remedy}") from exc


class BaseAutoencoder(PersistenceMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, OutlierMixin, BaseEstimator):
    """Base class of the autoencoder estimators; not for direct use (see the module docstring)."""

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "architecture": [StrOptions({"mlp", "conv"})],
        "image_shape": [tuple, list, None],
        "hidden_layer_sizes": [tuple, list],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), None],
        "max_grad_norm": [Interval(Real, 0, None, closed="neither"), None],
        "inference_dtype": [StrOptions(set(INFERENCE_DTYPES))],
        "mixed_precision": [StrOptions(set(MIXED_PRECISIONS)), None],
        "n_threads": [Interval(Integral, 1, None, closed="left"), Options(Integral, {-1}), None],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "contamination": [Interval(Real, 0, 0.5, closed="right"), StrOptions({"auto"})],
        "warm_start": ["boolean"],
        "accelerator": [dict, "boolean", None],
        "encoder": [callable, None],
        "decoder": [callable, None],
        "encoder_kwargs": [dict, None],
        "decoder_kwargs": [dict, None],
    }

    _stage = "autoencoder"  # label of the main training stage in progress bars and summaries
    _final_stage = "autoencoder"  # the last training stage: an interrupt there still leaves a fitted model

    # ------------------------------------------------------------------ hooks
    def _build_module(self, X: np.ndarray) -> nn.Module:
        raise NotImplementedError

    def _fit_rest(self, X: np.ndarray, split: Split, rng: np.random.RandomState) -> None:
        """Fitted attributes beyond the trained network; nothing by default."""

    def _encode(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _decode(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def _reconstruct(self, x: Tensor, return_std: bool) -> Tensor | tuple[Tensor, Tensor]:
        raise NotImplementedError

    @property
    def _prior(self) -> LatentPrior:
        raise NotImplementedError

    def _log_density(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _reconstruction_params(self, x: Tensor) -> Tensor:
        """Raw output-distribution parameters of the reconstruction of ``x`` (the head's input)."""
        module = self.net_.module_
        return module.decoder_params(module.encode(x))

    @property
    def _output_head(self) -> OutputDistribution:
        return self.net_.module_.head

    def _fitted_nets(self) -> list[LikelihoodNet]:
        """The skorch nets of the fitted model (moved together between devices and dtypes)."""
        return [self.net_]

    def _cost_key(self) -> tuple:
        """Parameters that change the per-row cost of inference after fit (they key the block sizes)."""
        return ()

    # ------------------------------------------------------------------ input
    def _validate_params_and_data(self, X, sample_weight=None) -> np.ndarray:
        """Check hyperparameters, the training matrix and ``sample_weight``; set ``n_features_in_``."""
        self._validate_params()
        for name in ("hidden_layer_sizes", "flow_hidden_layer_sizes"):
            sizes = getattr(self, name, "auto")
            if isinstance(sizes, str):  # "auto", where the estimator allows it
                continue
            if not all(isinstance(s, Integral) and not isinstance(s, bool) and s >= 1 for s in sizes):
                raise ValueError(f"{name} must be a tuple of positive integers, got {sizes!r}.")
        channels = getattr(self, "conv_channels", (1,))
        if not channels or not all(isinstance(c, Integral) and not isinstance(c, bool) and c >= 1 for c in channels):
            raise ValueError(f"conv_channels must be a non-empty tuple of positive integers, got {channels!r}.")
        if self.mixed_precision == "fp16" and torch.device(resolve_device(self.device)).type == "cpu":
            warnings.warn(
                "mixed_precision='fp16' on the CPU is emulated and usually slower than float32; "
                "'bf16' uses the CPU's bfloat16 instructions where it has them.",
                UserWarning,
                stacklevel=3,
            )
        X, has_missing = self._check_rows(X, reset=True)
        self._fit_weight = self._check_fit_weight(sample_weight, X)
        images = self._images
        if images:
            parse_image_shape(self.image_shape, X.shape[1])
        self._fit_table(X, has_missing)
        if not images and not getattr(self, "standardize", False):
            _warn_if_badly_scaled(type(self).__name__, X)
        return X

    @property
    def _images(self) -> bool:
        return self.image_shape is not None or self.architecture == "conv"

    _tabular = True  # the estimator reads categorical columns and standardizes continuous ones (not AEF)

    def _fit_table(self, X: np.ndarray, has_missing: bool) -> None:
        """The table's fitted attributes: categories, standardization, missingness indicators, ``n_components_``."""
        owner = type(self).__name__
        if self.is_categorical_.any() and (self._images or not self._tabular):
            names = [str(n) for n in np.asarray(self._feature_names())[self.is_categorical_]][:5]
            why = "image rows" if self._tabular else f"{owner}'s bijection, which needs continuous values"
            raise ValueError(
                f"{owner}: categorical columns ({', '.join(names)}) are not supported with {why}; one-hot encode "
                "them or use ProbabilisticAutoencoder, PAE or VAE, which model categories natively."
            )
        weight = getattr(self, "_fit_weight", None)
        fit_standardization(self, X, bool(getattr(self, "standardize", False)) and not self._images, weight)
        mask_fraction = getattr(self, "mask_fraction", None)
        if isinstance(mask_fraction, str):  # "auto": the estimator's table default, none for images
            mask_fraction = 0.0 if self._images else self._auto_mask_fraction
        if mask_fraction is not None:  # the estimators with the parameter (not AEF)
            self.mask_fraction_ = float(mask_fraction)
        masks_inputs = bool(mask_fraction)
        if masks_inputs and self._images:
            raise ValueError(
                f"{owner}: mask_fraction={self.mask_fraction} hides table entries from the encoder; it does not "
                "apply to images (image_shape or architecture='conv'). Use mask_fraction=0."
            )
        # the encoder must tell a hidden entry from an observed 0
        self.missing_indicators_ = bool((has_missing or masks_inputs) and not self._images)
        if has_missing:
            self._check_missing_supported(self._make_head(X.shape[1]) if self._tabular else None)
        if self.n_components == "auto":
            self.n_components_ = self._default_image_components if self._images else auto_n_components(self, X, weight)
        else:
            check_explicit_n_components(self, self.n_components, X.shape[1])
            self.n_components_ = int(self.n_components)

    _default_image_components = 8
    """``n_components_`` of ``n_components="auto"`` for images (``image_shape``), where no spectrum rule is used."""

    _auto_mask_fraction = 0.0
    """``mask_fraction_`` of ``mask_fraction="auto"`` on tables (images: 0)."""

    def _feature_names(self) -> np.ndarray:
        names = getattr(self, "feature_names_in_", None)
        return names if names is not None else np.array([f"x{j}" for j in range(self.n_features_in_)], dtype=object)

    def _allows_nan(self) -> bool:
        """Whether this configuration trains on and scores rows with missing entries (the ``allow_nan`` tag)."""
        if not self._tabular:
            return False
        name = getattr(self, "distribution", "mse")
        if name in MARGINALIZING_FAMILIES:
            return True
        if name in BUILTIN_DISTRIBUTIONS:
            return False
        try:  # a registered family: ask it
            return make_distribution(name, 4, self.n_mixtures, **(self.distribution_options or {})).marginalizes
        except Exception:  # a family that cannot be built without the data cannot promise a marginal
            return False

    def _check_missing_supported(self, head: OutputDistribution | None) -> None:
        """Rows with NaN need a family that scores the observed entries (its exact marginal)."""
        if head is not None and head.marginalizes:
            return
        owner = type(self).__name__
        if head is None:
            raise ValueError(
                f"{owner}: X contains NaN, but {owner}'s likelihood is a bijection of every feature and has no "
                "marginal over the observed ones. Impute first (skprobae.PAEImputer), or use "
                "ProbabilisticAutoencoder, PAE or VAE, which train on and score the observed entries of a row."
            )
        name = getattr(self, "distribution", type(head).__name__)
        raise ValueError(
            f"{owner}: X contains NaN, but distribution={name!r} has no closed-form marginal over the observed "
            "entries of a row. Choose a factorised or full-covariance family ('mse', 'normal', 'normal_diag', "
            "'normal_full', 't', 't_diag', 't_full'), or impute X first (skprobae.PAEImputer)."
        )

    def _check_rows(self, X, reset: bool = False, allow_empty_rows: bool = False, **options) -> tuple[np.ndarray, bool]:
        """Validated rows (see :func:`~skprobae._table.check_table`) and whether any entry is missing."""
        if isinstance(X, np.ndarray) and X.ndim > 2:
            X = self._flatten_images(X)
        return check_table(self, X, reset=reset, allow_empty_rows=allow_empty_rows, **options)

    def _check_X(self, X, reset: bool = False, allow_empty_rows: bool = False) -> np.ndarray:
        """Validated rows: float32 and float64 (memory-mapped or not) as they are, anything else as float64.

        NaN marks a missing entry; categorical values become category codes.
        Finiteness and the float32 range are checked block by block, so a
        memory-mapped file is never read whole into memory.
        """
        X, has_missing = self._check_rows(X, reset=reset, allow_empty_rows=allow_empty_rows)
        if has_missing and not reset and hasattr(self, "net_"):
            self._check_missing_supported(self._output_head if self._tabular else None)
        return X

    def _check_fit_weight(self, sample_weight, X: np.ndarray) -> np.ndarray | None:
        """``sample_weight`` as float64, one finite non-negative weight per row, not all zero (None: unweighted).

        ``fit`` scales the weights to mean 1 (only their ratios matter, as in
        ``KernelDensity``); ``partial_fit`` keeps them as given, so that a
        chunk's rows weigh against the other chunks' (weight 1: an
        unweighted row).
        """
        if sample_weight is None:
            return None
        try:
            weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        except ValueError as error:
            raise ValueError(f"{type(self).__name__}: sample_weight: {error}") from None
        if not weight.any():  # scikit-learn refuses this itself only from 1.7 on
            raise ValueError(
                f"{type(self).__name__}: sample_weight is zero for every row; at least one row needs a positive weight."
            )
        return weight if self._partial else weight / weight.mean()

    def _row_weights(self, rows: np.ndarray | None = None) -> np.ndarray | None:
        """The fit's weights of ``rows`` (all rows: None), or None for an unweighted fit."""
        weight = getattr(self, "_fit_weight", None)
        return weight if weight is None or rows is None else weight[rows]

    def _rows_total(self, n_rows: int, rows: np.ndarray | None = None) -> float:
        """How many rows ``rows`` (of ``n_rows``; None: all) count for: their total weight, or their number."""
        weight = self._row_weights(rows)
        if weight is None:
            return float(n_rows if rows is None else len(rows))
        return float(weight.sum())

    def _check_codes(self, Z) -> np.ndarray:
        """Latent codes for ``inverse_transform``: 2-D, finite, ``n_components`` columns."""
        Z = check_array(Z, dtype=[np.float64, np.float32])
        if Z.shape[1] != self.n_components_:
            raise ValueError(
                f"Z has {Z.shape[1]} columns, but {type(self).__name__} has n_components={self.n_components_}."
            )
        return Z

    @staticmethod
    def _check_n_samples(n_samples) -> int:
        if not isinstance(n_samples, Integral) or isinstance(n_samples, bool) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
        return int(n_samples)

    @staticmethod
    def _check_temperature(temperature) -> float:
        if (
            not isinstance(temperature, Real)
            or isinstance(temperature, bool)
            or not math.isfinite(temperature)
            or temperature <= 0
        ):
            raise ValueError(f"temperature must be a positive finite number, got {temperature!r}.")
        return float(temperature)

    def _flatten_images(self, X: np.ndarray) -> np.ndarray:
        """Accept ``(n, C, H, W)`` or ``(n, H, W)`` arrays matching ``image_shape`` as flat rows."""
        if self.image_shape is None:
            raise ValueError(f"X has shape {X.shape}; pass 2-D rows, or set image_shape to fit images.")
        expected = parse_image_shape(self.image_shape, int(np.prod(X.shape[1:])))
        if X.shape[1:] not in (tuple(self.image_shape), expected, expected[1:]):
            raise ValueError(f"X has images of shape {X.shape[1:]}, but image_shape is {tuple(self.image_shape)}.")
        return X.reshape(len(X), -1)

    # ----------------------------------------------------------------- networks
    def _make_head(self, n_features: int) -> TableHead:
        """The distribution of a row: ``distribution`` (a mixture of ``n_mixtures``) over the continuous columns,
        a categorical one over each categorical column (:class:`~skprobae.nn._table.TableHead`)."""
        layout = self._table_layout()
        n_continuous = len(layout.continuous)
        continuous = None
        if n_continuous:
            continuous = make_distribution(
                self.distribution,
                n_continuous,
                self.n_mixtures,
                image_shape=self.image_shape,
                **(self.distribution_options or {}),
            )
        return TableHead(continuous, layout)

    def _table_layout(self):
        if not hasattr(self, "feature_loc_"):  # a model restored from before tables: every column continuous, raw
            d = self.n_features_in_
            defaults = {"is_categorical_": np.zeros(d, dtype=bool), "categories_": [], "missing_indicators_": False}
            for name, value in defaults.items():
                if not hasattr(self, name):
                    setattr(self, name, value)
            self.feature_loc_, self.feature_scale_ = np.zeros(d), np.ones(d)
        return table_layout(self)

    def _table_networks(self, head: OutputDistribution, encoder_outputs: int | None = None) -> tuple[nn.Module, ...]:
        """Encoder, decoder and the :class:`~skprobae.nn._table.TableInput` in front of the encoder."""
        inputs = TableInput(self._table_layout())
        encoder, decoder = self._build_networks(inputs.n_outputs, head, encoder_outputs)
        return encoder, decoder, inputs

    def _build_networks(
        self, n_features: int, head: OutputDistribution, encoder_outputs: int | None = None
    ) -> tuple[nn.Module, nn.Module]:
        """Encoder and decoder: the user's ``encoder`` / ``decoder`` classes, else the built-in ``architecture``.

        A user class is called as ``encoder(n_features, encoder_outputs,
        **encoder_kwargs)`` and ``decoder(n_components, head.n_params,
        **decoder_kwargs)`` (the signature of ``torch.nn.Linear``); a probe
        pass checks that it maps rows to the right number of values.
        """
        k = self.n_components_
        n_out = encoder_outputs or k
        custom = {
            "encoder": (getattr(self, "encoder", None), getattr(self, "encoder_kwargs", None), n_features, n_out),
            "decoder": (getattr(self, "decoder", None), getattr(self, "decoder_kwargs", None), k, head.n_params),
        }
        if custom["encoder"][0] is not None and custom["decoder"][0] is not None:
            encoder = decoder = None
        else:
            encoder, decoder = build_networks(
                self.architecture,
                n_features,
                k,
                head,
                self.hidden_layer_sizes,
                self.activation,
                self.image_shape,
                channels=tuple(getattr(self, "conv_channels", None) or (32, 64)),
                encoder_outputs=encoder_outputs,
            )
        built = {"encoder": encoder, "decoder": decoder}
        for role, (factory, kwargs, n_in, n_expected) in custom.items():
            if factory is None:
                continue
            if isinstance(factory, nn.Module):
                raise TypeError(
                    f"{role} must be a torch.nn.Module class (or a function returning a module), not an instance: "
                    f"the estimator builds a fresh one in every fit. Pass {type(factory).__name__} and its "
                    f"arguments as {role}_kwargs."
                )
            try:
                module = factory(n_in, n_expected, **(kwargs or {}))
            except TypeError as exc:
                raise TypeError(
                    f"{role}={getattr(factory, '__name__', factory)!r} could not be built as "
                    f"{role}({n_in}, {n_expected}, **{role}_kwargs): {exc}"
                ) from exc
            if not isinstance(module, nn.Module):
                raise TypeError(f"{role} must build a torch.nn.Module, got {type(module).__name__}.")
            self._check_network_output(role, module, n_in, n_expected, head)
            built[role] = module
        return built["encoder"], built["decoder"]

    def _check_network_output(
        self, role: str, module: nn.Module, n_in: int, n_expected: int, head: OutputDistribution
    ) -> None:
        dtype = next(module.parameters(), torch.empty(0)).dtype
        training = module.training
        module.eval()  # the probe must not touch batch-norm statistics
        with torch.no_grad():
            try:
                output = module(torch.zeros(2, n_in, dtype=dtype))
            except Exception as exc:
                raise ValueError(f"The custom {role} fails on a batch of shape (2, {n_in}): {exc}") from exc
            finally:
                module.train(training)
        if tuple(output.shape) == (2, n_expected):
            return
        if role == "encoder":
            need = f"{n_expected} (n_components={self.n_components_}" + (
                ", means and scales)" if n_expected != self.n_components_ else ")"
            )
        else:
            name = getattr(self, "distribution", type(head).__name__)
            need = f"{n_expected} (the raw parameters of distribution {name!r} over {head.n_features} features)"
        raise ValueError(
            f"The custom {role} maps a batch of shape (2, {n_in}) to shape {tuple(output.shape)}; "
            f"it must return (2, {n_expected}): {need}."
        )

    # --------------------------------------------------------------- training
    def fit(self, X, y=None, sample_weight=None):
        """Train the model on ``X``.

        With ``warm_start=True`` and a fitted model, training continues from
        the current weights and optimizer state for ``max_epochs`` more
        epochs (as ``MLPRegressor`` does); the fitted statistics are
        recomputed on ``X``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Training data. NaN marks a missing entry (the likelihood of the
            observed entries is trained; see the estimator); categorical
            columns follow ``categorical_features``; no infinite values. A
            float32 ``np.memmap`` is read batch by batch, never copied whole.
        y : None
            Ignored; present for scikit-learn API compatibility.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each row's log-likelihood, as in
            ``KernelDensity``: an integer weight counts a row that many times
            and 0 leaves it out. Training minimises the weighted mean negative
            log-likelihood (weights scaled to mean 1, so only their ratios
            matter; the validation loss is weighted the same way), and every
            fitted statistic is weighted: the standardization,
            ``n_components="auto"``, latent and noise statistics, and the
            ``contamination`` quantile ``offset_``. None weighs every row 1.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        mode = "warm" if self.warm_start and hasattr(self, "net_") else "new"
        return self._fit_guarded(X, mode, sample_weight)

    def partial_fit(self, X, y=None, sample_weight=None):
        """Train for one epoch on ``X``, continuing from the current model; the first call builds it.

        For data larger than memory: feed it chunk by chunk (or through
        ``dask_ml.wrappers.Incremental``). The optimizer state is kept
        between calls; there is no validation split and no early stopping.
        Fitted statistics that depend on the training rows are recomputed on
        each chunk under the current weights (``offset_``, the noise and
        latent statistics, AEF's proposal scale), except what accumulates
        exactly over chunks (``n_samples_seen_``; PAE's ``feature_mean_`` and
        ``feature_bounds_``) and what is fixed by the first call (the
        importance-sampling draws, AEF's core features). A chunk of fewer than
        two rows trains the networks but keeps the statistics of the previous
        call. ``PAE`` trains its autoencoder one epoch on the chunk, then
        standardizes the chunk's codes and trains its latent flow one epoch on
        them.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            One chunk of training rows; the first chunk needs at least two
            (``PAE``: more than ``n_components``).
        y : None
            Ignored; present for scikit-learn API compatibility.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each row's log-likelihood in this chunk's
            epoch and statistics, used as given (not rescaled, unlike
            ``fit``): a row of weight 1 counts as an unweighted one. None
            weighs every row 1.

        Returns
        -------
        self : object
            The updated estimator.
        """
        return self._fit_guarded(X, "partial" if hasattr(self, "net_") else "first_partial", sample_weight)

    def _fit_guarded(self, X, mode: str, sample_weight=None):
        """``_fit`` in ``mode``: nothing half-fitted after a KeyboardInterrupt, and a warning when one ended it."""
        self._interrupted_net = None
        refit = mode == "new" and bool(getattr(self, "refit_on_inliers", False))
        try:
            if refit:  # the first fit only ranks the training rows: a short one does
                self._epoch_share = RANKING_EPOCH_SHARE
            self._fit(X, mode, sample_weight)
            self._epoch_share = 1.0
            if hasattr(self, "refit_on_inliers") and mode != "partial":
                self.n_refit_outliers_ = 0
                if refit and self._interrupted_net is None:
                    self._refit_on_inliers(X, sample_weight)
        except KeyboardInterrupt:
            self._forget_fit()
            raise
        finally:
            interrupted = vars(self).pop("_interrupted_net", None)  # state of this fit only
            vars(self).pop("_fit_mode", None)
            vars(self).pop("_fit_accelerator", None)
            vars(self).pop("_fit_weight", None)
            vars(self).pop("_epoch_share", None)
        if interrupted is not None:
            warnings.warn(
                f"{type(self).__name__}: training was interrupted: {interrupted.stop_summary()} The model "
                f"is fitted from those weights (offset_ from at most {INTERRUPTED_OFFSET_ROWS} training rows).",
                UserWarning,
                stacklevel=3,
            )
        return self

    def _refit_on_inliers(self, X, sample_weight) -> None:
        """Fit again with weight 0 on the training rows the fit flags as outliers; ``offset_`` over all rows.

        A trimmed likelihood: the second fit (from scratch, same seed and
        split, all the epochs) learns the rows the first, short one calls
        inliers (score at or above ``offset_``), and the ``contamination``
        quantile is then taken over every training row, with the user's
        weights. Where nothing is left out, the second fit is on every row.
        """
        X_checked = self._check_X(X)
        inlier = self._score_samples(X_checked) >= self.offset_
        n_outliers = int(np.count_nonzero(~inlier))
        if n_outliers == 0:
            self._fit(X, "new", sample_weight)
            return
        weight = self._check_fit_weight(sample_weight, X_checked)
        trimmed = (np.ones(len(X_checked)) if weight is None else weight) * inlier
        # At worst every validation row is an inlier: the training rows that keep a weight are at least these.
        n_valid = math.ceil(self.validation_fraction * len(X_checked)) if self.validation_fraction > 0 else 0
        if np.count_nonzero(trimmed) - n_valid <= self.n_components_:
            warnings.warn(
                f"{type(self).__name__}: refit_on_inliers left {np.count_nonzero(trimmed)} of {len(X_checked)} "
                f"training rows, too few for n_components_={self.n_components_}; fitted on every row instead.",
                UserWarning,
                stacklevel=4,
            )
            self._fit(X, "new", sample_weight)
            return
        self._fit(X, "new", trimmed)
        self._fit_weight = weight
        self._fit_offset(X_checked, check_random_state(self.random_state))
        self.n_refit_outliers_ = n_outliers

    def _stage_epochs(self, max_epochs: int) -> int:
        """Epochs of a training stage: one per ``partial_fit`` call; the ranking fit of ``refit_on_inliers`` a share."""
        if self._partial:
            return 1
        return max(1, math.ceil(max_epochs * getattr(self, "_epoch_share", 1.0)))

    @property
    def _continuing(self) -> bool:
        """Whether this fit continues an existing model (``warm_start`` or a later ``partial_fit`` call)."""
        return getattr(self, "_fit_mode", None) in ("warm", "partial")

    @property
    def _partial(self) -> bool:
        return getattr(self, "_fit_mode", None) in ("partial", "first_partial")

    def _fit(self, X, mode: str, sample_weight=None) -> None:
        self._fit_mode = mode
        if self._continuing:
            self._check_same_structure()
            self._validate_params()
            X = self._check_X(X, reset=False)
            self._fit_weight = self._check_fit_weight(sample_weight, X)
        else:
            X = self._validate_params_and_data(X, sample_weight)
        self._fit_accelerator = self._make_accelerator()
        rng = check_random_state(self.random_state)
        if self._partial:
            if len(X) < 2 and not self._continuing:
                raise ValueError(
                    f"{type(self).__name__}: the first partial_fit call needs at least 2 rows to estimate the fitted "
                    f"statistics; got n_samples={len(X)}."
                )
            split = Split(train=np.arange(len(X)), valid=np.arange(0))
        else:
            split = self._split(len(X), rng)
            if getattr(self, "_epoch_share", 1.0) < 1 and len(split.train) > RANKING_MAX_ROWS:
                # the ranking fit of refit_on_inliers: a subset of the training rows, as FastMCD starts from subsets
                train = rng.choice(split.train, RANKING_MAX_ROWS, replace=False)
                split = Split(train=np.sort(train), valid=split.valid)
        self._check_training_weight(split)
        if not self._continuing:
            self._check_fit_settings(X, split)
        epochs = self._stage_epochs(self.max_epochs)
        self.net_ = self._train_stage(
            partial(self._build_module, X),
            X,
            split,
            seed=draw_seed(rng),
            stage=self._stage,
            max_epochs=epochs,
            learning_rate=self.learning_rate,
            existing=self.net_ if self._continuing else None,
        )
        self.history_ = self.net_.history
        self.n_iter_ = len(self.net_.history)
        self._n_features_out = self.n_components_
        accumulating = self._partial and self._continuing
        seen = getattr(self, "n_samples_seen_", 0) if accumulating else 0
        weight_seen = getattr(self, "_weight_seen", seen) if accumulating else 0.0
        self.n_samples_seen_ = seen + len(X)
        self._weight_seen = weight_seen + self._rows_total(len(X))  # the rows' total sample_weight
        if self._partial and self._continuing and len(X) < 2:
            return  # too few rows to re-estimate the statistics: keep the previous call's
        self._fit_rest(X, split, rng)
        self._fit_offset(X, rng)
        self._structure = self._structure_params()

    def _make_accelerator(self):
        """The ``accelerate.Accelerator`` of this fit (None without ``accelerator``), checked before any training."""
        if self.accelerator is None or self.accelerator is False:
            return None
        owner = type(self).__name__
        if self._continuing:
            raise ValueError(
                f"{owner}: accelerator= trains with fit from scratch; warm_start and partial_fit continue in one "
                "process (set accelerator=None to continue this model)."
            )
        if self.mixed_precision is not None:
            raise ValueError(
                f"{owner}: mixed_precision={self.mixed_precision!r} together with accelerator=: give the accelerator "
                f"its mixed precision instead, e.g. accelerator={{'mixed_precision': {self.mixed_precision!r}}}."
            )
        try:
            from accelerate import Accelerator
        except ImportError as error:
            raise ImportError(
                f"{owner}: accelerator= needs the accelerate package: pip install -c constraints.txt 'skprobae[scale]'."
            ) from error
        options = {} if self.accelerator is True else dict(self.accelerator)
        try:
            return Accelerator(**options)
        except (TypeError, ValueError) as error:
            message = f"{owner}: accelerator={self.accelerator!r} does not make an accelerate.Accelerator: {error}"
            raise ValueError(message) from None

    def _structure_params(self) -> dict:
        """The parameters the fitted networks and statistics were built from (all but :data:`RUNTIME_PARAMS`)."""
        return {k: v for k, v in self.get_params(deep=False).items() if k not in RUNTIME_PARAMS}

    def _check_same_structure(self) -> None:
        """``warm_start`` and ``partial_fit`` continue a model only with the parameters it was built with."""
        built = getattr(self, "_structure", None)
        if built is None:
            return  # a model restored without the record (an older pickle): nothing to compare
        current = self._structure_params()
        changed = sorted(k for k in built.keys() | current.keys() if built.get(k) != current.get(k))
        if changed:
            what = ", ".join(f"{k}={built.get(k)!r} -> {current.get(k)!r}" for k in changed)
            raise ValueError(
                f"{type(self).__name__}: cannot continue training after set_params changed {what}; the fitted "
                "networks were built with the old values. Call fit with warm_start=False to start over."
            )

    def _forget_fit(self) -> None:
        forget_fitted_attributes(self)

    def _check_training_weight(self, split: Split) -> None:
        """The training rows must carry weight: zero weight on all of them would train nothing."""
        weight = self._row_weights(split.train)
        if weight is not None and len(weight) and not weight.any():
            raise ValueError(
                f"{type(self).__name__}: every training row has sample_weight 0 (the {len(split.valid)} rows of "
                f"the validation split, validation_fraction={self.validation_fraction}, carry all the weight). "
                "Give some training rows a positive weight, or set validation_fraction=0."
            )

    def _check_fit_settings(self, X: np.ndarray, split: Split) -> None:
        """Reject settings that cannot fit ``X`` with ``split``, before any training; nothing by default."""

    def _split(self, n_samples: int, rng: np.random.RandomState) -> Split:
        """Seeded train/validation rows according to ``validation_fraction``."""
        n_valid = math.ceil(self.validation_fraction * n_samples) if self.validation_fraction > 0 else 0
        if n_valid and n_samples - n_valid < 1:
            warnings.warn(
                f"{type(self).__name__}: {n_samples} sample(s) are too few for validation_fraction="
                f"{self.validation_fraction}; training on all of them without a validation split.",
                UserWarning,
                stacklevel=3,
            )
            n_valid = 0
        if not n_valid:  # no draw: the seeds that follow do not depend on n_samples (weights vs repeated rows)
            return Split(train=np.arange(n_samples), valid=np.arange(0))
        order = rng.permutation(n_samples)
        return Split(train=np.sort(order[n_valid:]), valid=np.sort(order[:n_valid]))

    def _callbacks(self, stage: str, max_epochs: int, has_validation: bool) -> list:
        callbacks = []
        if self.n_iter_no_change is not None:
            monitor = "valid_loss" if has_validation else "train_loss"
            callbacks.append(("keep_best", KeepBest(monitor, self.n_iter_no_change)))
        if self.max_grad_norm is not None:
            callbacks.append(("gradient_clipping", ClipGradNorm(self.max_grad_norm)))
        if self.verbose:
            callbacks.append(("progress_bar", EpochProgress(stage, max_epochs)))
        if self.verbose and self.verbose > 1:
            callbacks.append(("print_log", PrintLog()))
        return callbacks

    def _train_stage(
        self,
        build_module: Callable[[], nn.Module],
        X: np.ndarray | Tensor,
        split: Split,
        *,
        seed: int,
        stage: str,
        max_epochs: int,
        learning_rate: float,
        batch_size: int | None = None,
        existing: LikelihoodNet | None = None,
    ) -> LikelihoodNet:
        """Build a module under ``seed`` and train it on ``module.loss(module(X), X)``: one training stage.

        With ``existing``, its module and optimizer state continue training
        for ``max_epochs`` more epochs instead (``warm_start``, ``partial_fit``).

        Batch size (unless given), weight decay, early stopping, clipping,
        precision, threads and verbosity come from the estimator's parameters. The rows are read
        from where ``X`` lives (:func:`~skprobae._engine.training_source`).
        Afterwards the module is in eval mode, on the inference device and in
        the inference dtype.
        """
        device = resolve_device(self.device)
        batch_size = batch_size or self.batch_size
        if existing is None:
            with torch_seeded(seed, device):  # weight initialisation draws from torch's global generator
                module = build_module()
        else:
            module = existing.module_.to(device=device, dtype=torch.float32)  # back to the training dtype
        source = training_source(X, device) if isinstance(X, np.ndarray) else X.to(device)
        cost = self._training_cost(module, X.shape[1], device)
        weight = self._row_weights()
        valid = RowData(source, split.valid, weight) if len(split.valid) else None
        if existing is None:
            net = self._make_net(
                module,
                stage=stage,
                max_epochs=max_epochs,
                learning_rate=learning_rate,
                batch_size=batch_size,
                device=device,
                valid=valid,
                valid_batch_size=block_rows(cost, device),
                seed=seed,
            )
        else:
            rows = block_rows(cost, device)
            net = self._continue_net(existing, valid, learning_rate, batch_size, rows, device, max_epochs)
        threads = choose_threads(self.n_threads, 3 * cost.flops * min(batch_size, len(split.train) or 1))
        remedy = (
            f"Lower the batch size (now {batch_size}); the training data stays in host memory when it is a "
            "memory-mapped array (np.memmap or np.load(..., mmap_mode='r'))."
        )
        with (
            training_noise(noise_seed(seed, len(existing.history) if existing is not None else 0)),
            torch_threads(threads),
            _explain_out_of_memory(type(self).__name__, f"training the {stage}", remedy),
        ):
            if existing is None:
                net.fit(RowData(source, split.train, weight))
            else:
                net.partial_fit(RowData(source, split.train, weight), epochs=max_epochs)
        if isinstance(net, AcceleratedLikelihoodNet):
            net = net.detach()  # a plain net from here on: it pickles and loads without accelerate
        net.train_split = None  # it holds the training data: a fitted model must not carry (or pickle) it
        if self.verbose:
            print(net.stop_summary())
        if net.interrupted_epoch_ is not None:
            if stage != self._final_stage or getattr(self, "_interrupt_raises", False):
                # Later stages would need the rest of the fit: one Ctrl-C ends it, leaving nothing half-fitted.
                owner = type(self).__name__
                raise KeyboardInterrupt(f"{owner}: fit interrupted in the {stage}; the model is not fitted.")
            self._interrupted_net = net
        self._prepare_net(net)
        return net

    def _continue_net(
        self,
        net: LikelihoodNet,
        valid: RowData | None,
        learning_rate: float,
        batch_size: int,
        valid_batch_size: int,
        device: str,
        max_epochs: int,
    ) -> LikelihoodNet:
        """Point a trained net at new data and the current settings, keeping its optimizer state.

        skorch's ``set_params`` would re-initialize the optimizer, so the
        attributes are set directly; the callbacks (early stopping, clipping,
        progress) are rebuilt from the current parameters.
        """
        net.callbacks = self._callbacks(net.stage, max_epochs, valid is not None)
        net.initialize_callbacks()
        net.train_split = predefined_split(valid) if valid is not None else None
        net.batch_size = batch_size
        net.iterator_valid__batch_size = valid_batch_size
        net.iterator_train__device = net.iterator_valid__device = device
        net.device = device
        net.ensure_optimizer()
        _move_optimizer_state(net.optimizer_, torch.device(device))
        mixed_precision = MIXED_PRECISIONS.get(self.mixed_precision)
        if net.mixed_precision != mixed_precision or net.scaler_ is not None:
            net.mixed_precision = mixed_precision
            fp16 = mixed_precision == torch.float16
            net.scaler_ = torch.amp.GradScaler(torch.device(device).type) if fp16 else None
        net.lr = learning_rate
        for group in net.optimizer_.param_groups:
            group["lr"] = learning_rate
            group["weight_decay"] = self.weight_decay
        return net

    def _make_net(
        self,
        module: nn.Module,
        *,
        stage: str,
        max_epochs: int,
        learning_rate: float,
        batch_size: int,
        device: str,
        valid: RowData | None = None,
        valid_batch_size: int | None = None,
        seed: int = 0,
        has_validation: bool | None = None,
    ) -> LikelihoodNet:
        """The skorch net of one training stage (also what :func:`skprobae.load` wraps restored modules in).

        ``valid`` is the validation data (None: none); ``has_validation``
        overrides what the callbacks monitor when there is no data to give
        (a restored net).
        """
        has_validation = valid is not None if has_validation is None else has_validation
        accelerator = getattr(self, "_fit_accelerator", None)
        net_class, parallel = LikelihoodNet, {}
        if accelerator is not None:  # placement by the accelerator; each process reads its share of a batch
            net_class, device = AcceleratedLikelihoodNet, str(accelerator.device)
            parallel = {"accelerator": accelerator, "device": None}
            for iterator in ("iterator_train", "iterator_valid"):
                parallel[f"{iterator}__rank"] = accelerator.process_index
                parallel[f"{iterator}__world"] = accelerator.num_processes
        return net_class(
            module,
            criterion=nn.Identity,  # unused: LikelihoodNet.get_loss asks the module
            optimizer=torch.optim.Adam,
            optimizer__weight_decay=self.weight_decay,
            **({"optimizer__fused": True} if torch.device(device).type in ("cpu", "cuda") else {}),
            lr=learning_rate,
            max_epochs=max_epochs,
            batch_size=batch_size,
            iterator_train=RowBatches,
            iterator_train__shuffle=True,
            iterator_train__generator=torch.Generator().manual_seed(seed),
            iterator_train__device=device,
            iterator_valid=RowBatches,
            **({"iterator_valid__batch_size": valid_batch_size} if valid_batch_size else {}),
            iterator_valid__device=device,
            train_split=predefined_split(valid) if valid is not None else None,
            callbacks=self._callbacks(stage, max_epochs, has_validation),
            verbose=self.verbose,
            owner=type(self).__name__,
            stage=stage,
            mixed_precision=MIXED_PRECISIONS.get(self.mixed_precision),
            **{"device": device, **parallel},
        )

    @staticmethod
    def _training_cost(module: nn.Module, n_features: int, device: str) -> RowCost:
        """Per-row cost of the training loss (forward pass), measured in eval mode on a private RNG."""
        training = module.training
        module.to(device).eval()
        try:
            with _fork_rng(device):
                example = torch.zeros(4, n_features, device=device)
                return measure_row_cost(lambda x: module.loss(module(x), x), example)
        finally:
            module.train(training)

    # -------------------------------------------------------------- inference
    def _prepare_net(self, net: LikelihoodNet) -> None:
        """Put a trained net in eval mode on the current device and inference dtype."""
        device = torch.device(resolve_device(self.device))
        dtype = INFERENCE_DTYPES[self.inference_dtype]
        module = net.module_
        if module.training:
            module.eval()
        parameter = next(module.parameters(), None)
        if parameter is None or parameter.device != device or parameter.dtype != dtype:
            module.to(device=device, dtype=dtype)
        net.device = str(device)

    def _sync_modules(self) -> None:
        """Move the fitted model to the current ``device`` and ``inference_dtype`` (``set_params`` after fit)."""
        for net in self._fitted_nets():
            self._prepare_net(net)

    @property
    def _device(self) -> torch.device:
        return torch.device(self.net_.device)

    @property
    def _network_dtype(self) -> torch.dtype:
        return INFERENCE_DTYPES[self.inference_dtype]

    def _tensor(self, array: np.ndarray) -> Tensor:
        """A fitted float64 array as a float64 tensor on the model's device."""
        return torch.as_tensor(np.asarray(array), dtype=torch.float64, device=self._device)

    def _row_cost(
        self,
        kind: str,
        fn: Callable[[Tensor], object],
        example: np.ndarray,
        steps: tuple[Callable[[int], Callable[[Tensor], object]], int] | None = None,
    ) -> RowCost:
        """What a row of ``fn`` costs (:func:`~skprobae._engine.measure_row_cost`), measured once per model shape.

        The cost depends on the networks' shapes and the settings, not on the
        weights, so it is cached for every model of the same structure
        (refits, cross-validation folds, the rounds of ``PAEImputer``).
        ``steps = (make, n)`` describes an iterative computation, ``make(k)``
        being ``fn`` with ``k`` steps.
        """
        structure = tuple(
            (type(net.module_).__name__, *((name, tuple(p.shape)) for name, p in net.module_.named_parameters()))
            for net in self._fitted_nets()
        )
        key = (type(self).__name__, kind, example.shape[-1], example.dtype.str, str(self._device))
        key += (self.inference_dtype, self._cost_key(), structure)
        if key not in _ROW_COSTS:
            rows = torch.from_numpy(np.ascontiguousarray(example[:1].repeat(4, axis=0))).to(self._device)
            with _fork_rng(self._device):  # a probe must not move the caller's (seeded) random stream
                cost = measure_row_cost(fn, rows, steps)
            if len(_ROW_COSTS) >= _ROW_COSTS_SIZE:
                _ROW_COSTS.pop(next(iter(_ROW_COSTS)))
            _ROW_COSTS[key] = cost
        return _ROW_COSTS[key]

    def _run(
        self,
        kind: str,
        fn: Callable[[Tensor], Tensor | tuple[Tensor, ...]],
        X: np.ndarray,
        rows: np.ndarray | None = None,
        steps: tuple[Callable[[int], Callable[[Tensor], object]], int] | None = None,
    ) -> np.ndarray | tuple[np.ndarray, ...]:
        """``fn`` over the rows of ``X`` in fixed-size blocks on the model's device; float64 numpy results.

        ``kind`` names the computation: its measured cost per row (cached,
        see :meth:`_row_cost`, which also explains ``steps``) sets the block
        size and the thread count.
        """
        self._sync_modules()
        example = X[rows[:1]] if rows is not None and len(rows) else X[:1]
        cost = self._row_cost(kind, fn, example, steps)
        block = block_rows(cost, self._device)
        threads = choose_threads(self.n_threads, block * cost.flops)
        remedy = f"Lower sklearn's working_memory (now {get_config()['working_memory']} MiB) to use smaller blocks."
        with torch_threads(threads), _explain_out_of_memory(type(self).__name__, f"in {kind}", remedy):
            return map_rows(fn, X, block=block, device=self._device, rows=rows)

    def _outputs_by_chunk(
        self, kind: str, fn: Callable[[Tensor], Tensor], X: np.ndarray, rows: np.ndarray
    ) -> Iterator[tuple[slice, np.ndarray]]:
        """``fn``'s per-row outputs over ``rows`` of ``X``, a chunk of rows at a time, with the chunk's positions.

        A chunk holds at most :data:`SUM_CHUNK_BYTES` of outputs (and
        :data:`SUM_CHUNK_ROWS` rows): the first, of :data:`SUM_FIRST_ROWS`
        rows, measures a row's output, so statistics of a large
        (memory-mapped) training set never hold one output per row, even where
        a row's output is wide (a squared error per feature).
        """
        start, size = 0, SUM_FIRST_ROWS
        while start < len(rows):
            chunk = slice(start, start + size)
            values = self._run(kind, fn, X, rows=rows[chunk])
            yield chunk, values
            start = chunk.stop
            size = int(np.clip(SUM_CHUNK_BYTES // max(values[:1].nbytes, 1), 1, SUM_CHUNK_ROWS))

    def _sum_over_rows(
        self, kind: str, fn: Callable[[Tensor], Tensor], X: np.ndarray, rows: np.ndarray | None = None
    ) -> np.ndarray:
        """The sum over the rows of ``X`` (or its rows ``rows``) of ``fn``'s per-row output, float64.

        In a weighted fit, each row's output counts with its ``sample_weight``
        (divide by :meth:`_rows_total` for a mean). Chunked by
        :meth:`_outputs_by_chunk`.
        """
        rows = np.arange(len(X)) if rows is None else rows
        weight = self._row_weights(rows)
        total = 0.0
        for chunk, values in self._outputs_by_chunk(kind, fn, X, rows):
            if weight is not None:
                values = values * weight[chunk].reshape(-1, *([1] * (values.ndim - 1)))
            total = total + values.sum(axis=0)
        return np.asarray(total, dtype=np.float64)

    def _mean_and_scatter_over_rows(
        self, kind: str, fn: Callable[[Tensor], Tensor], X: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The mean of ``fn``'s per-row vectors over the rows of ``X`` and their scatter ``sum (v - mean)(v - mean)^T``.

        One pass (the rows are read once, chunked by
        :meth:`_outputs_by_chunk`), each chunk's scatter one matrix product.
        The sums are taken about the first chunk's mean (the shifted-data
        algorithm), which keeps the accuracy of two passes without their
        second read. Weighted by ``sample_weight`` in a weighted fit; the
        mean divides by :meth:`_rows_total`.
        """
        rows = np.arange(len(X))
        weight = self._row_weights(rows)
        shift, centred_total, scatter = None, 0.0, 0.0
        for chunk, values in self._outputs_by_chunk(kind, fn, X, rows):
            if shift is None:
                shift = values.mean(axis=0)
            centred = values - shift
            weighted = centred if weight is None else centred * weight[chunk, None]
            centred_total = centred_total + weighted.sum(axis=0)
            scatter = scatter + weighted.T @ centred
        n = self._rows_total(len(X))
        offset = np.asarray(centred_total, dtype=np.float64) / n
        return shift + offset, np.asarray(scatter, dtype=np.float64) - n * np.outer(offset, offset)

    def _importance_noise(self, n_samples: int) -> Tensor:
        """Standard-normal base draws of an importance sampler, fixed at fit (``_importance_seed``), on the device.

        Every row shares them: scores are deterministic and a row's score does
        not depend on the other rows.
        """
        generator = torch.Generator().manual_seed(self._importance_seed)
        noise = torch.randn(n_samples, self.n_components_, generator=generator, dtype=torch.float64)
        return noise.to(self._device)

    def _network_input(self, x: Tensor) -> Tensor:
        return x.to(self._network_dtype)

    def _finite(self, method: str, inputs: np.ndarray, result, *args, checked: int | None = None, **kwargs):
        """``result`` of ``method(inputs, ...)``, its non-finite rows recomputed in float64, or a clear error.

        float32 inference overflows on rows far outside the training data
        (one entry near 1e20 gives a squared residual beyond 3.4e38); the
        float64 networks (``inference_dtype="float64"``) score such rows
        correctly. A row that is not finite even then raises. Only the first
        ``checked`` parts of a tuple result must be finite (a Student-t
        reconstruction std is infinite or NaN where ``df <= 2``, by design).
        """
        parts = result if isinstance(result, tuple) else (result,)
        bad = np.zeros(len(inputs), dtype=bool)
        for part in parts[:checked]:
            bad |= ~np.isfinite(part.reshape(len(inputs), -1)).all(axis=1)
        if not bad.any():
            return result
        owner, n_bad = type(self).__name__, int(bad.sum())
        if self.inference_dtype != "float64":
            exact = copy.deepcopy(self).set_params(inference_dtype="float64")
            redone = getattr(exact, method)(inputs[bad], *args, **kwargs)
            for part, fixed in zip(parts, redone if isinstance(redone, tuple) else (redone,), strict=True):
                part[bad] = fixed
            warnings.warn(
                f"{owner}.{method}: float32 inference overflowed on {n_bad} row(s) (values far outside the "
                "training data); they were recomputed with float64 networks.",
                RuntimeWarning,
                stacklevel=3,
            )
            return result
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{owner}.{method}: the result is not finite for {n_bad} row(s) even with float64 networks (row {first}: "
            f"max |value| = {np.abs(inputs[first]).max():.3g}); such rows are too far outside the training data "
            "to score. Rescale X as the training data was scaled."
        )

    def transform(self, X) -> np.ndarray:
        """Latent codes of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The rows to encode.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components), float64
        """
        check_is_fitted(self)
        X = self._check_X(X)
        return self._finite("transform", X, self._run("transform", self._encode, X))

    def inverse_transform(self, Z) -> np.ndarray:
        """Point estimates of ``x`` decoded from codes ``Z``.

        Parameters
        ----------
        Z : array-like of shape (n_samples, n_components)
            Latent codes, as returned by :meth:`transform` or drawn from the prior.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features), float64
        """
        check_is_fitted(self)
        Z = self._check_codes(Z)
        return table_output(self, self._finite("inverse_transform", Z, self._run("inverse_transform", self._decode, Z)))

    def reconstruct(self, X, return_std: bool = False):
        """Point estimate of ``x`` given ``x``, and optionally its per-feature standard deviation.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The rows to reconstruct.
        return_std : bool, default=False
            Also return the per-feature std of the model's reconstruction
            distribution (see the estimator).

        Returns
        -------
        X_rec : ndarray of shape (n_samples, n_features), float64
        X_std : ndarray of shape (n_samples, n_features), only if ``return_std``
        """
        check_is_fitted(self)
        kind = "reconstruct_std" if return_std else "reconstruct"
        X = self._check_X(X)
        result = self._run(kind, partial(self._reconstruct, return_std=bool(return_std)), X)
        result = self._finite("reconstruct", X, result, return_std=return_std, checked=1)
        if not return_std:
            return table_output(self, result)
        self._warn_undefined_std(result[1])
        return table_output(self, result[0]), result[1]

    def _warn_undefined_std(self, std: np.ndarray) -> None:
        """Say how many continuous entries have no std (a Student-t with df <= 2 has no variance); none silently."""
        continuous = ~np.asarray(getattr(self, "is_categorical_", np.zeros(std.shape[1], dtype=bool)))
        undefined = ~np.isfinite(std[:, continuous])
        if undefined.any():
            warnings.warn(
                f"{type(self).__name__}.reconstruct: the std is undefined (NaN or inf) for {int(undefined.sum())} of "
                f"{undefined.size} continuous entries, where the output distribution has no variance (a "
                "Student-t with df <= 2). Use the normal families for intervals, or the point estimate only.",
                RuntimeWarning,
                stacklevel=3,
            )

    def predict_category_proba(self, X) -> list[np.ndarray]:
        """Per-category probabilities of every categorical column in the reconstruction of each row.

        ``reconstruct`` gives the most probable category; this gives the
        whole distribution, one array per categorical column in the order of
        ``categories_`` (column ``j`` of array ``i`` is the probability of
        ``categories_[i][j]``).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            The rows whose reconstructions are evaluated.

        Returns
        -------
        probabilities : list of ndarray of shape (n_samples, n_categories)
            Empty when the model has no categorical column.
        """
        check_is_fitted(self)
        X = self._check_X(X)
        if not self.is_categorical_.any():
            return []
        head = self._output_head
        result = self._run(
            "category_proba", lambda x: tuple(head.category_probabilities(self._reconstruction_params(x))), X
        )
        return list(result)

    def sample(self, n_samples: int = 1, random_state=None, temperature: float = 1.0) -> np.ndarray:
        """New rows: codes drawn from the latent prior, decoded.

        Parameters
        ----------
        n_samples : int, default=1
            Number of rows to generate.
        random_state : int, RandomState instance or None, default=None
            Seeds the draws; with an int two calls are identical.
        temperature : float, default=1.0
            Scales the prior's standard-normal base draws; below 1 trades
            diversity for typicality.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features), float64
        """
        check_is_fitted(self)
        n_samples, temperature = self._check_n_samples(n_samples), self._check_temperature(temperature)
        base = np.random.default_rng(draw_seed(random_state)).standard_normal((n_samples, self.n_components_))
        prior = self._prior
        return table_output(self, self._run("sample", lambda u: self._decode(prior.from_base(u)), temperature * base))

    def _score_steps(self) -> tuple[Callable[[int], Callable[[Tensor], object]], int] | None:
        """``_log_density`` as an iterative computation for the cost probe (see :meth:`_row_cost`); None if not."""
        return None

    def _score_samples(self, X: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Scores of validated ``X`` (or of its rows ``rows``)."""
        return self._run("score_samples", self._log_density, X, rows=rows, steps=self._score_steps())

    def score_samples(self, X) -> np.ndarray:
        """Per-sample score, higher for more normal data (see the estimator).

        A row with missing entries (NaN) scores the log-likelihood of its
        observed entries.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            The rows to score.

        Returns
        -------
        scores : ndarray of shape (n_samples,), float64
        """
        check_is_fitted(self)
        X = self._check_X(X)
        return self._finite("score_samples", X, self._score_samples(X))

    def score(self, X, y=None) -> float:
        """Mean of :meth:`score_samples`; ``GridSearchCV`` maximises it by default.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The rows to score.
        y : None
            Ignored; present for scikit-learn API compatibility.

        Returns
        -------
        score : float
            The mean per-sample score of ``X``.
        """
        return float(np.mean(self.score_samples(X)))

    # ---------------------------------------------------------- outlier contract
    def _offset_rows(self, X: np.ndarray, rng: np.random.RandomState) -> np.ndarray | None:
        """Training rows scored for ``offset_`` (None: all), by :data:`OFFSET_ROWS` and :data:`OFFSET_FLOPS`."""
        low, high = OFFSET_ROWS
        if getattr(self, "_interrupted_net", None) is not None:
            low = high = INTERRUPTED_OFFSET_ROWS  # the user asked to stop: a quick, coarser quantile
        if len(X) <= low:
            return None
        cost = self._row_cost("score_samples", self._log_density, X[:1], self._score_steps())
        n_rows = int(np.clip(OFFSET_FLOPS / max(cost.flops, 1.0), low, high))
        if len(X) <= n_rows:
            return None
        return np.sort(rng.permutation(len(X))[:n_rows])

    _offset_params: tuple[str, ...] = ()
    """Runtime parameters that change ``score_samples``: ``offset_`` holds only for the values it was fitted with."""

    def _fit_offset(self, X: np.ndarray, rng: np.random.RandomState) -> None:
        rows = self._offset_rows(X, rng)
        self.offset_ = self._offset_from(self._score_samples(X, rows=rows), self._row_weights(rows))
        self._offset_settings = {name: getattr(self, name) for name in self._offset_params}

    def _check_offset_settings(self) -> None:
        """Warn when ``set_params`` after fit changed how scores are computed, so ``offset_`` is of other scores."""
        fitted = getattr(self, "_offset_settings", None) or {}
        changed = {name: value for name, value in fitted.items() if getattr(self, name) != value}
        if changed:
            now = ", ".join(f"{name}={getattr(self, name)!r}" for name in changed)
            then = ", ".join(f"{name}={value!r}" for name, value in changed.items())
            warnings.warn(
                f"{type(self).__name__}: offset_ is the contamination quantile of training scores computed with "
                f"{then}; score_samples now uses {now} (set_params after fit), so decision_function and predict "
                "compare against a threshold of slightly different scores. Refit to recompute offset_, or set "
                f"{then} back.",
                UserWarning,
                stacklevel=3,
            )

    def _offset_from(self, training_scores: np.ndarray, weight: np.ndarray | None = None) -> float:
        """The ``contamination`` quantile of the training scores (``"auto"``: Tukey's lower fence); finite scores.

        With ``weight`` (the rows' ``sample_weight``), the quantiles of the
        weighted scores (the inverse of their weighted distribution function);
        rows of weight 0 do not count.
        """
        bad = ~np.isfinite(training_scores)
        if bad.any():
            raise FloatingPointError(
                f"{type(self).__name__}: the fitted model gives non-finite scores on {int(bad.sum())} "
                "training rows. Standardize X, lower learning_rate or choose a simpler distribution."
            )
        quantiles = [0.25, 0.75] if self.contamination == "auto" else [self.contamination]
        if weight is None:
            values = np.percentile(training_scores, 100.0 * np.asarray(quantiles))
        else:
            values = weighted_quantile(training_scores, quantiles, weight)
        if self.contamination == "auto":
            q1, q3 = values
            return float(q1 - AUTO_FENCE * (q3 - q1))
        return float(values[0])

    def decision_function(self, X) -> np.ndarray:
        """``score_samples(X) - offset_``: negative for outliers, positive for inliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The rows to score.

        Returns
        -------
        scores : ndarray of shape (n_samples,), float64
        """
        self._check_offset_settings()
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        """+1 for inliers, -1 for outliers (``decision_function < 0``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The rows to classify.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return np.where(self.decision_function(X) < 0, -1, 1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self._allows_nan()
        tags.input_tags.sparse = False
        tags.non_deterministic = False
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags


def head_point_and_std(head: OutputDistribution, params: Tensor, return_std: bool):
    """An output distribution's point estimate and (optionally) its per-feature std at float64 raw parameters."""
    if not return_std:
        return head.point_estimate(params)
    point, variance = head.point_and_variance(params)
    return point, variance.sqrt()
