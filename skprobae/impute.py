"""Missing-value imputation with a probabilistic autoencoder's posterior."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._base import forget_fitted_attributes
from ._table import _categorical_dtype, check_table, is_dataframe, table_output
from ._version import PersistenceMixin
from .flows import FLOW_NAMES
from .models import PAE

__all__ = ["PAEImputer"]


class PAEImputer(PersistenceMixin, OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Fill NaNs with the posterior mean of a PAE learned from the incomplete data.

    Features are standardized with the mean and std of their observed values.
    A :class:`~skprobae.PAE` is fitted on the incomplete rows themselves: its
    autoencoder maximises the likelihood of the observed entries only (a
    masked loss; the encoder sees missing entries at the mean plus the
    missingness mask), so no entry is ever made up for training. With
    ``n_rounds > 1``, the missing entries are then replaced by the current
    model's posterior means (:meth:`PAE.impute`) and the PAE refitted on
    the filled rows, ``n_rounds - 1`` times (the scheme of earlier versions,
    whose first round trained on mean-filled rows).

    ``transform`` fills each missing entry with its posterior mean given the
    observed entries of its row; ``transform(X, return_std=True)`` also gives
    the posterior std (0 for observed entries), so ``mean ± 1.645 std`` is a
    90% interval.

    **Categorical columns** (a DataFrame's ``category``, ``object`` or
    ``bool`` columns, or ``categorical_features``) are modelled by the PAE's
    categorical outputs: a missing category is filled with its most probable
    category under the posterior (the average over the posterior draws of the
    decoder's category probabilities, :meth:`impute_category_proba`), and
    ``transform`` returns the fitted column types (a DataFrame with the same
    dtypes and categories when fitted on one). A filled category has std NaN.

    **Calibration on held-out entries.** A model fitted to a few hundred rows
    of skewed or discrete features can impute worse than the feature mean,
    and its Laplace posterior is often too narrow. So ``fit`` hides a further
    ``calibration_fraction`` of the observed entries from every round, imputes
    them with the final model and learns two numbers per feature from their
    true values: a shrinkage ``shrinkage_`` in [0, 1] of the posterior mean
    towards the feature mean (the least-squares weight: 0 where the model
    does not beat the mean) and a factor ``std_scale_`` on the posterior std
    that makes the held-out 90% intervals cover 90% (split-conformal style).
    Features with fewer than 30 held-out entries share the pooled values.
    ``calibration_fraction=0`` turns this off (both are then 1).

    Parameters
    ----------
    n_components : int or "auto", default="auto"
        Latent dimension of the PAE; ``"auto"`` chooses it from the data (see
        :class:`~skprobae.PAE`).
    categorical_features : "from_dtype", None, array-like of int, str or bool, default="from_dtype"
        Categorical columns, as for :class:`~skprobae.PAE`: ``"from_dtype"``
        takes a DataFrame's ``category``, ``object``, ``string`` and ``bool``
        columns; indices, names or a boolean mask name them (numeric values
        are then the categories); None treats every column as continuous.
    hidden_layer_sizes : tuple of int, default=(64,)
        Hidden widths of the PAE's encoder (the decoder mirrors them).
    activation : str, default="relu"
        Hidden-layer nonlinearity of the PAE.
    flow : {"realnvp", "auto", "maf", "nsf"}, default="realnvp"
        The PAE's latent flow (see :class:`~skprobae.PAE`). The posterior
        search inverts the flow at each of its steps: a coupling flow
        (RealNVP) does that in one pass, an autoregressive one (``"maf"``,
        ``"nsf"``, and ``"auto"`` above 32 latent dimensions) in one pass per
        latent dimension (on musk, 76 latent dimensions: over 15 times slower).
    flow_hidden_layer_sizes : tuple of int, default=(64, 64)
        Hidden widths of each layer of the latent flow.
    max_epochs, flow_max_epochs : int, default=100
        Autoencoder and flow epochs per round (early stopping on a
        validation split applies).
    batch_size, learning_rate, validation_fraction, n_iter_no_change
        Training settings of the PAE.
    mask_fraction : float in [0, 1), default=0.3
        Share of the observed entries hidden from the PAE's encoder at each
        training step (they stay in the likelihood; see
        :class:`~skprobae.PAE`): the model learns to predict entries it does
        not see, which is what imputation asks of it.
    n_rounds : int, default=1
        Fits of the PAE: the first on the incomplete rows (masked
        likelihood), each further one on the previous round's posterior
        means.
    n_restarts, n_posterior_samples, posterior_steps : int, default=4, 100, 200
        Posterior inference settings (see :meth:`PAE.impute`).
    calibration_fraction : float in [0, 0.5], default=0.1
        Share of the observed entries held out of training to learn
        ``shrinkage_`` and ``std_scale_``.
    n_threads, device, random_state, verbose
        As for :class:`~skprobae.PAE`; ``random_state`` also fixes the
        posterior draws, so ``transform`` is deterministic.

    Attributes
    ----------
    pae_ : PAE
        The model of the last round, on standardized features.
    mean_, scale_ : ndarray of shape (n_features,)
        Standardization of each feature (observed values; an all-missing
        feature gets 0 and 1 and is filled from the model).
    shrinkage_ : ndarray of shape (n_features,)
        Weight of the posterior mean against the feature mean, learned on the
        held-out entries (1: the posterior mean as it is).
    std_scale_ : ndarray of shape (n_features,)
        Factor applied to the posterior std, learned on the held-out entries
        (1 for categorical columns).
    is_categorical_ : ndarray of bool of shape (n_features,)
        Which columns are categorical.
    categories_ : list of ndarray
        The categories of each categorical column, in column order.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Column names of a DataFrame passed to ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_diabetes
    >>> from skprobae.impute import PAEImputer
    >>> X = load_diabetes().data[:100]
    >>> X_missing = np.where(np.random.default_rng(0).random(X.shape) < 0.1, np.nan, X)
    >>> imputer = PAEImputer(
    ...     n_components=3, max_epochs=5, flow_max_epochs=5, n_posterior_samples=20, posterior_steps=20, random_state=0
    ... ).fit(X_missing)
    >>> filled, std = imputer.transform(X_missing, return_std=True)
    >>> bool(np.isnan(filled).any()), bool((std[~np.isnan(X_missing)] == 0).all())
    (False, True)
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "categorical_features": [StrOptions({"from_dtype"}), "array-like", str, None],
        "hidden_layer_sizes": [tuple, list],
        "activation": [str],
        "flow": [StrOptions(set(FLOW_NAMES))],
        "flow_hidden_layer_sizes": [tuple, list],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "flow_max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), None],
        "mask_fraction": [Interval(Real, 0, 1, closed="left")],
        "n_rounds": [Interval(Integral, 1, None, closed="left")],
        "n_restarts": [Interval(Integral, 1, None, closed="left")],
        "n_posterior_samples": [Interval(Integral, 1, None, closed="left")],
        "posterior_steps": [Interval(Integral, 0, None, closed="left")],
        "calibration_fraction": [Interval(Real, 0, 0.5, closed="both")],
        "n_threads": [Interval(Integral, 1, None, closed="left"), Options(Integral, {-1}), None],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_components="auto",
        categorical_features="from_dtype",
        hidden_layer_sizes=(64,),
        activation="relu",
        flow="realnvp",
        flow_hidden_layer_sizes=(64, 64),
        max_epochs=100,
        flow_max_epochs=100,
        batch_size=128,
        learning_rate=1e-3,
        validation_fraction=0.1,
        n_iter_no_change=10,
        mask_fraction=0.3,
        n_rounds=1,
        n_restarts=4,
        n_posterior_samples=100,
        posterior_steps=200,
        calibration_fraction=0.1,
        n_threads=None,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.categorical_features = categorical_features
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.flow = flow
        self.flow_hidden_layer_sizes = flow_hidden_layer_sizes
        self.max_epochs = max_epochs
        self.flow_max_epochs = flow_max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.mask_fraction = mask_fraction
        self.n_rounds = n_rounds
        self.n_restarts = n_restarts
        self.n_posterior_samples = n_posterior_samples
        self.posterior_steps = posterior_steps
        self.calibration_fraction = calibration_fraction
        self.n_threads = n_threads
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _make_pae(self, seed: int) -> PAE:
        return PAE(
            n_components=self.n_components,
            categorical_features=self.is_categorical_ if self.is_categorical_.any() else None,
            hidden_layer_sizes=self.hidden_layer_sizes,
            activation=self.activation,
            flow=self.flow,
            flow_hidden_layer_sizes=self.flow_hidden_layer_sizes,
            max_epochs=self.max_epochs,
            flow_max_epochs=self.flow_max_epochs,
            # PAE's default (3e-3) was set for outlier scores; the posterior's calibration was measured with 1e-3
            flow_learning_rate=1e-3,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            validation_fraction=self.validation_fraction,
            n_iter_no_change=self.n_iter_no_change,
            mask_fraction=self.mask_fraction,
            refit_on_inliers=False,  # an imputer models every row, outliers included
            n_threads=self.n_threads,
            device=self.device,
            random_state=seed,
            verbose=self.verbose,
        )

    def _posterior_settings(self) -> dict:
        return {
            "n_restarts": self.n_restarts,
            "n_samples": self.n_posterior_samples,
            "n_steps": self.posterior_steps,
            "random_state": self._posterior_seed,
        }

    def _posterior_mean(self, Z: np.ndarray, return_std: bool):
        return self.pae_.impute(Z, return_std=return_std, **self._posterior_settings())

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the PAE from ``X`` with missing entries (NaN).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows; NaN marks a missing entry.
        y : None
            Ignored; present for scikit-learn API compatibility.

        Returns
        -------
        self : PAEImputer
            The fitted imputer.
        """
        try:
            return self._fit(X)
        except KeyboardInterrupt:
            # Fitting runs in rounds, each with its own posterior pass: an interrupt leaves nothing half-fitted.
            forget_fitted_attributes(self)
            raise

    def _uses_table(self, X) -> bool:
        """Whether ``X`` has categorical columns (a DataFrame's dtypes, or ``categorical_features``)."""
        spec = self.categorical_features
        if spec is None:
            return False
        if isinstance(spec, str) and spec == "from_dtype":
            return is_dataframe(X) and any(_categorical_dtype(dtype) for dtype in X.dtypes)
        return True

    def _check_X(self, X, reset: bool) -> np.ndarray:
        """Rows as float64, category codes in the categorical columns, NaN where missing."""
        if reset:
            self.is_categorical_, self.categories_ = np.zeros(0, dtype=bool), []
        table = self._uses_table(X) if reset else self.is_categorical_.any()
        if not table:
            X = validate_data(self, X, reset=reset, dtype=np.float64, ensure_all_finite="allow-nan")
            if reset:
                self.is_categorical_ = np.zeros(X.shape[1], dtype=bool)
            return X
        values, _ = check_table(self, X, reset=reset, allow_empty_rows=True, float32_range=False)
        return np.asarray(values, dtype=np.float64)

    def _fit(self, X) -> PAEImputer:
        X = self._check_X(X, reset=True)
        missing = np.isnan(X)
        continuous = ~self.is_categorical_
        observed_any = ~missing.all(axis=0)
        mean = np.zeros(X.shape[1])
        scale = np.ones(X.shape[1])
        measured = observed_any & continuous  # category codes are not standardized
        mean[measured] = np.nanmean(X[:, measured], axis=0)
        std = np.nanstd(X[:, measured], axis=0)
        # a constant column's std can come out as rounding noise (1e-17): treat it as constant
        constant = std <= 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean[measured]), 1.0)
        scale[measured] = np.where(constant, 1.0, std)
        self.mean_, self.scale_ = mean, scale
        Z = (X - mean) / scale
        rng = check_random_state(self.random_state)
        self._posterior_seed = int(rng.randint(np.iinfo(np.int32).max))
        held_out = ~missing & (rng.random_sample(X.shape) < self.calibration_fraction) & continuous
        Z_train = np.where(held_out, np.nan, Z)
        hidden = missing | held_out
        usable = ~hidden.all(axis=1)  # rows with an observed entry left to train on
        if not usable.any():
            raise ValueError("PAEImputer: every row has all its entries missing; there is nothing to learn from.")
        training = Z_train[usable]
        training[:, ~observed_any] = 0.0  # a column never observed: its standardized mean, a constant to the model
        for round_ in range(self.n_rounds):
            pae = self._make_pae(int(rng.randint(np.iinfo(np.int32).max)))
            pae._interrupt_raises = True  # an interrupted round is not a fitted imputer
            self.pae_ = pae.fit(training)
            if round_ < self.n_rounds - 1 and hidden.any():
                training = self._posterior_mean(Z_train, return_std=False)
        self.shrinkage_, self.std_scale_ = np.ones(X.shape[1]), np.ones(X.shape[1])
        if held_out.any():
            rows = held_out.any(axis=1)
            predicted, std = self._posterior_mean(Z_train[rows], return_std=True)
            shrinkage, std_scale = _calibrate(Z[rows], predicted, std, held_out[rows])
            self.shrinkage_, self.std_scale_ = (
                np.where(continuous, shrinkage, 1.0),
                np.where(continuous, std_scale, 1.0),
            )
        return self

    def transform(self, X, return_std: bool = False):
        """Fill the NaNs of ``X`` with their posterior means.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The rows to fill; NaN marks a missing entry.
        return_std : bool, default=False
            Also return the posterior std of every entry (0 where observed).

        Returns
        -------
        X_filled : ndarray or DataFrame of shape (n_samples, n_features)
            Float64; with categorical columns, the fitted column types (a
            DataFrame with the fitted dtypes and categories when fitted on one).
        X_std : ndarray of shape (n_samples, n_features), only if ``return_std``
            NaN for a filled category.
        """
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        filled, std = self._posterior_mean((X - self.mean_) / self.scale_, return_std=True)
        filled = np.where(np.isnan(X), self.shrinkage_ * filled * self.scale_ + self.mean_, X)
        filled = table_output(self, filled)
        return (filled, self.std_scale_ * std * self.scale_) if return_std else filled

    def impute_category_proba(self, X) -> list[np.ndarray]:
        """Posterior probabilities of the categories of each categorical column.

        ``transform`` fills a missing category with the most probable one
        (the same posterior draws); an observed entry gets probability 1 on
        its category.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            NaN (or None / pd.NA in a DataFrame) marks a missing entry.

        Returns
        -------
        probabilities : list of ndarray of shape (n_samples, n_categories)
            One array per categorical column in the order of ``categories_``
            (column ``j`` of array ``i`` is the probability of
            ``categories_[i][j]``); empty without categorical columns.

        Examples
        --------
        >>> import numpy as np
        >>> import pandas as pd
        >>> from skprobae.impute import PAEImputer
        >>> rng = np.random.default_rng(0)
        >>> size = rng.normal(size=200)
        >>> table = pd.DataFrame({"size": size, "kind": pd.Categorical(np.where(size > 0, "big", "small"))})
        >>> table.loc[:9, "kind"] = np.nan
        >>> imputer = PAEImputer(max_epochs=5, flow_max_epochs=5, n_posterior_samples=10, posterior_steps=10,
        ...                      random_state=0).fit(table)
        >>> filled = imputer.transform(table)
        >>> filled["kind"].dtype == table["kind"].dtype, bool(filled["kind"].notna().all())
        (True, True)
        >>> [p.shape for p in imputer.impute_category_proba(table)]  # one array per categorical column
        [(200, 2)]
        """
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        if not self.is_categorical_.any():
            return []
        per_pae_category = self.pae_.impute_category_proba((X - self.mean_) / self.scale_, **self._posterior_settings())
        probabilities = []
        for levels, seen, p in zip(self.categories_, self.pae_.categories_, per_pae_category, strict=True):
            full = np.zeros((len(X), len(levels)))  # a category never observed in fit keeps probability 0
            full[:, seen.astype(int)] = p
            probabilities.append(full)
        return probabilities

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.sparse = False
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags


_MIN_HELD_OUT = 30  # held-out entries a feature needs for its own shrinkage and std scale
_Z_90 = 1.6448536269514722  # standard normal 95% quantile: mean ± _Z_90 std is a 90% interval


def _calibrate(truth: np.ndarray, predicted: np.ndarray, std: np.ndarray, held_out: np.ndarray):
    """Per-feature shrinkage towards 0 (the standardized mean) and std factor from held-out entries.

    The shrinkage is the least-squares weight of the prediction, clipped to
    [0, 1]; the std factor makes ``|truth - shrunk| <= _Z_90 * factor * std``
    hold for 90% of the entries. Features with fewer than ``_MIN_HELD_OUT``
    entries get the values pooled over all features.
    """

    def fit(t: np.ndarray, p: np.ndarray, s: np.ndarray) -> tuple[float, float]:
        power = float(p @ p)
        weight = float(np.clip(t @ p / power, 0.0, 1.0)) if power > 0 else 1.0
        ratios = np.abs(t - weight * p)[s > 0] / s[s > 0]
        factor = float(np.quantile(ratios, 0.9)) / _Z_90 if len(ratios) else 1.0
        return weight, max(factor, 1e-3)

    pooled = fit(truth[held_out], predicted[held_out], std[held_out])
    shrinkage, std_scale = np.empty(truth.shape[1]), np.empty(truth.shape[1])
    for j in range(truth.shape[1]):  # a loop over features, not rows
        entries = held_out[:, j]
        shrinkage[j], std_scale[j] = (
            fit(truth[entries, j], predicted[entries, j], std[entries, j]) if entries.sum() >= _MIN_HELD_OUT else pooled
        )
    return shrinkage, std_scale
