"""Tables in, tables out: categorical columns, missing values and the standardization of continuous columns.

An estimator fitted on a table keeps, as fitted attributes, which columns are
categorical (``is_categorical_``), their categories (``categories_``), the
location and scale that standardize the continuous ones (``feature_loc_``,
``feature_scale_``) and whether the encoder sees missingness indicators
(``missing_indicators_``). Rows reach the networks as one float matrix: the
continuous values as they are, each categorical value as its category code
(0, 1, ...), NaN where an entry is missing. Outputs in data space go back to
the fitted column types.
"""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
from sklearn.utils.validation import _check_feature_names, _check_n_features, validate_data

from ._engine import iter_blocks
from .nn._table import TableLayout

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_SCALE_SAMPLE_ROWS = 10_000
_EXPLAINED_VARIANCE = 0.9
"""Share of the standardized data's variance the latent size of ``n_components="auto"`` keeps (PCA spectrum)."""


def is_dataframe(X) -> bool:
    return type(X).__module__.split(".")[0] == "pandas" and hasattr(X, "columns") and hasattr(X, "dtypes")


def _categorical_dtype(dtype) -> bool:
    import pandas as pd

    return (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )


def _column_name(estimator, j: int) -> str:
    names = getattr(estimator, "feature_names_in_", None)
    return f"column {names[j]!r}" if names is not None else f"column {j}"


def _resolve_categorical(estimator, X, n_features: int) -> np.ndarray:
    """Boolean mask of the categorical columns from ``categorical_features`` (and the DataFrame's dtypes)."""
    # an estimator without the parameter (AEF) still finds a DataFrame's categorical columns, to refuse them clearly
    spec = getattr(estimator, "categorical_features", "from_dtype")
    owner = type(estimator).__name__
    if spec is None:
        return np.zeros(n_features, dtype=bool)
    if isinstance(spec, str):
        if spec != "from_dtype":
            spec = [spec]
        elif is_dataframe(X):
            return np.array([_categorical_dtype(dtype) for dtype in X.dtypes], dtype=bool)
        else:
            return np.zeros(n_features, dtype=bool)
    values = np.asarray(spec)
    if values.dtype == bool:
        if values.shape != (n_features,):
            raise ValueError(
                f"{owner}: categorical_features as a boolean mask needs {n_features} entries (one per column), "
                f"got shape {values.shape}."
            )
        return values.copy()
    mask = np.zeros(n_features, dtype=bool)
    names = getattr(estimator, "feature_names_in_", None)
    for item in values.ravel().tolist():
        if isinstance(item, str):
            if names is None:
                raise ValueError(
                    f"{owner}: categorical_features names column {item!r}, but X has no column names "
                    "(pass a DataFrame, or column indices)."
                )
            where = np.flatnonzero(names == item)
            if not len(where):
                raise ValueError(f"{owner}: categorical_features names column {item!r}, which X does not have.")
            mask[where[0]] = True
        elif isinstance(item, Integral) and not isinstance(item, bool):
            if not -n_features <= item < n_features:
                raise ValueError(f"{owner}: categorical_features has index {item}, but X has {n_features} column(s).")
            mask[item] = True
        else:
            raise ValueError(
                f"{owner}: categorical_features must be 'from_dtype', None, a boolean mask, or column indices "
                f"or names; got {spec!r}."
            )
    return mask


def _dataframe_values(estimator, X, categorical: np.ndarray, reset: bool) -> tuple[np.ndarray, list | None]:
    """A DataFrame with categorical columns as a float matrix of continuous values and category codes."""
    import pandas as pd

    owner = type(estimator).__name__
    n, d = X.shape
    out = np.empty((n, d), dtype=np.float64)
    categories: list = [] if reset else None
    fitted = iter(getattr(estimator, "categories_", []))
    kinds = getattr(estimator, "_column_kinds", None)
    for j in range(d):
        column = X.iloc[:, j]
        name = _column_name(estimator, j)
        if not categorical[j]:
            if _categorical_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
                raise ValueError(
                    f"{owner}: {name} is {column.dtype} at {'fit' if reset else 'scoring'} but was "
                    f"{'not declared categorical' if reset else 'numeric in fit'}; pass numbers, or list it in "
                    "categorical_features."
                )
            out[:, j] = pd.to_numeric(column, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
            continue
        if not reset and kinds is not None and kinds[j] == "category" and pd.api.types.is_numeric_dtype(column.dtype):
            raise ValueError(
                f"{owner}: {name} was categorical in fit but is numeric ({column.dtype}) now; pass it with the "
                "dtype it was fitted with (e.g. astype('category'))."
            )
        if reset:
            if isinstance(column.dtype, pd.CategoricalDtype):
                levels = np.asarray(column.cat.categories)
            else:
                levels = np.asarray(sorted(pd.unique(column[column.notna()]).tolist(), key=_sort_key))
            categories.append(levels)
        else:
            levels = next(fitted)
        out[:, j] = _codes(owner, name, column, levels)
    return out, categories


def _sort_key(value):
    return (str(type(value)), value)


def _codes(owner: str, name: str, column, levels: np.ndarray) -> np.ndarray:
    """Category codes of a pandas column (NaN where missing); an unseen category raises naming the column."""
    import pandas as pd

    present = column.notna().to_numpy()
    values = column.astype(object).where(column.notna(), None)
    codes = pd.Index(levels).get_indexer(values).astype(np.float64)  # -1: missing or not a fitted category
    unseen = present & (codes < 0)
    if unseen.any():
        shown = ", ".join(repr(v) for v in pd.unique(column[unseen])[:5].tolist())
        raise ValueError(
            f"{owner}: {name} has categories not seen in fit ({shown}; fitted: "
            f"{', '.join(repr(v) for v in levels.tolist()[:10])}). Map them to a fitted category or to NaN "
            "(missing), which the model scores on the other entries."
        )
    codes[~present] = np.nan
    return codes


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _array_codes(estimator, X: np.ndarray, categorical: np.ndarray, reset: bool) -> list | None:
    """Numeric arrays: replace each categorical column's values by their category codes, in place."""
    owner = type(estimator).__name__
    categories: list = [] if reset else None
    fitted = iter(getattr(estimator, "categories_", []))
    for j in np.flatnonzero(categorical):
        column = X[:, j]
        present = ~np.isnan(column)
        if reset:
            levels = np.unique(column[present])
            categories.append(levels)
        else:
            levels = next(fitted)
        codes = np.searchsorted(levels, column[present]).clip(0, max(len(levels) - 1, 0))
        known = levels[codes] == column[present] if len(levels) else np.zeros(present.sum(), dtype=bool)
        if not known.all():
            unseen = np.unique(column[present][~known])
            raise ValueError(
                f"{owner}: {_column_name(estimator, j)} has categories not seen in fit ({unseen[:5].tolist()}; "
                f"fitted: {levels[:10].tolist()}). Map them to a fitted category or to NaN (missing)."
            )
        column[present] = codes
    return categories


def check_table(
    estimator, X, *, reset: bool, allow_empty_rows: bool = False, float32_range: bool = True
) -> tuple[np.ndarray, bool]:
    """Validated rows as the networks read them: float32 / float64 (memory-mapped or not), codes for categories.

    NaN marks a missing entry; infinity and values beyond the float32 range
    raise. Finiteness is checked block by block, so a memory-mapped file is
    never read whole. At fit (``reset``) the categorical columns and their
    categories are found and an all-missing column raises; an all-missing row
    raises unless ``allow_empty_rows``. ``float32_range=False`` accepts any
    finite value (for float64 computations such as PAE's posterior search).
    """
    owner = type(estimator).__name__
    frame = is_dataframe(X)
    if reset:
        categorical = None
        if frame:
            _check_feature_names(estimator, X, reset=True)
            categorical = _resolve_categorical(estimator, X, X.shape[1])
    else:
        categorical = getattr(estimator, "is_categorical_", None)
    if categorical is not None and categorical.any() and frame:
        if not reset:
            _check_feature_names(estimator, X, reset=False)
        _check_n_features(estimator, X, reset=reset)
        values, categories = _dataframe_values(estimator, X, categorical, reset)
        if reset:
            estimator._column_kinds = [_kind(dtype) for dtype in X.dtypes]
            estimator._column_dtypes = [str(dtype) for dtype in X.dtypes]
    else:
        coded = categorical is not None and categorical.any()
        values = validate_data(estimator, X, reset=reset, dtype=[np.float64, np.float32], ensure_all_finite=False)
        if categorical is None:
            categorical = _resolve_categorical(estimator, X, values.shape[1])
            coded = categorical.any()
        if coded:
            values = np.array(values, dtype=np.float64)  # a copy: the codes are written into it
            categories = _array_codes(estimator, values, categorical, reset)
        else:
            categories = []
        if reset:
            estimator._column_kinds = None
    if reset:
        estimator.is_categorical_ = categorical
        estimator.categories_ = categories
    return values, _check_values(owner, estimator, values, reset, allow_empty_rows, float32_range)


def _kind(dtype) -> str:
    import pandas as pd

    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        return "object"
    return "float"


def _check_values(
    owner: str, estimator, X: np.ndarray, reset: bool, allow_empty_rows: bool, float32_range: bool = True
) -> bool:
    """Reject infinity and values beyond float32, all-missing columns (at fit) and rows; block by block.

    Returns whether any entry is missing.
    """
    missing_columns = np.ones(X.shape[1], dtype=bool) if reset else None
    has_missing = False
    for start, block in _blocks(X):
        if not block.size:
            continue
        low, high = np.nanmin(block, initial=np.inf), np.nanmax(block, initial=-np.inf)
        nan = np.isnan(block)
        if np.isinf(block).any():
            raise ValueError(f"Input X contains infinity or a value too large for {X.dtype!r}.")
        if float32_range and max(-low, high) > _FLOAT32_MAX:
            raise ValueError(
                "X has values beyond the float32 range (|x| > 3.4e38) that the network cannot represent; "
                "rescale X, e.g. with StandardScaler."
            )
        if nan.any():
            has_missing = True
            empty = nan.all(axis=1)
            if empty.any() and not allow_empty_rows:
                row = start + int(np.flatnonzero(empty)[0])
                raise ValueError(
                    f"{owner}: X has {int(empty.sum())} row(s) with every entry missing (NaN), row {row} the first; "
                    "such a row has no observed entry to fit or score. Drop those rows."
                )
        if missing_columns is not None:
            missing_columns &= nan.all(axis=0)
    if reset and len(X) and missing_columns.any():
        column = int(np.flatnonzero(missing_columns)[0])
        raise ValueError(
            f"{owner}: {_column_name(estimator, column)} has no observed value (every entry is NaN); drop it "
            "before fitting."
        )
    return has_missing


def _blocks(X: np.ndarray):
    step = max(1, 2**22 // max(1, X.shape[1]))
    yield from zip(range(0, len(X), step), iter_blocks(X, step), strict=False)


def observed_block(block: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``block`` with its missing entries at 0, and which entries are observed (None when all are)."""
    missing = np.isnan(block)
    if not missing.any():
        return block, None
    return np.where(missing, 0.0, block), ~missing


def column_sums(values: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    """Column sums of ``values`` accumulated in float64, each row weighted by ``weight`` when given."""
    if weight is None:
        return values.sum(axis=0, dtype=np.float64)
    return weight @ np.asarray(values, dtype=np.float64)


def observed_column_sums(block: np.ndarray, weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | float]:
    """Column sums of the observed entries of ``block`` and their counts, weighted by ``weight`` when given."""
    values, observed = observed_block(block)
    if observed is None:
        return column_sums(values, weight), (len(block) if weight is None else float(weight.sum()))
    return column_sums(values, weight), column_sums(observed, weight)


def fit_standardization(estimator, X: np.ndarray, standardize: bool, weight: np.ndarray | None = None) -> None:
    """``feature_loc_`` and ``feature_scale_``: mean and std of each continuous column's observed values.

    Two passes block by block (memory-mapped files are not read whole);
    with ``weight`` (``sample_weight``), the weighted mean and std.
    Categorical columns, near-constant columns (std below ``1e-8 * max(1,
    |mean|)``) and everything when ``standardize`` is off get 0 and 1.
    """
    d = X.shape[1]
    loc, scale = np.zeros(d), np.ones(d)
    if standardize and len(X):
        total, count = np.zeros(d), np.zeros(d)
        for start, block in _blocks(X):
            w = None if weight is None else weight[start : start + len(block)]
            block_total, block_count = observed_column_sums(block, w)
            total += block_total
            count += block_count
        denominator = np.where(count > 0, count, 1.0)  # a weighted count may be below 1 (weights of mean 1)
        mean = total / denominator
        squares = np.zeros(d)
        for start, block in _blocks(X):
            values, observed = observed_block(block)
            centred = np.subtract(values, mean)  # float64 whatever the dtype of the block
            if observed is not None:
                centred[~observed] = 0.0
            w = None if weight is None else weight[start : start + len(block)]
            squares += column_sums(np.square(centred, out=centred), w)
        std = np.sqrt(squares / denominator)
        varying = std > 1e-8 * np.maximum(1.0, np.abs(mean))
        continuous = ~estimator.is_categorical_
        loc = np.where(continuous, mean, 0.0)
        scale = np.where(continuous & varying, std, 1.0)
    estimator.feature_loc_, estimator.feature_scale_ = loc, scale


def table_layout(estimator) -> TableLayout:
    """The :class:`~skprobae.nn._table.TableLayout` of the fitted attributes."""
    categorical = np.flatnonzero(estimator.is_categorical_)
    return TableLayout(
        n_features=estimator.n_features_in_,
        categorical=categorical,
        n_categories=tuple(len(levels) for levels in estimator.categories_),
        loc=np.asarray(estimator.feature_loc_, dtype=np.float64),
        scale=np.asarray(estimator.feature_scale_, dtype=np.float64),
        missing_indicators=bool(estimator.missing_indicators_),
        mask_fraction=float(getattr(estimator, "mask_fraction_", 0.0)),  # absent in models fitted before it
    )


def auto_n_components(estimator, X: np.ndarray, weight: np.ndarray | None = None) -> int:
    """``n_components="auto"``: principal components keeping 90% of the variance of the standardized data.

    Computed on at most 10,000 evenly spaced rows of the encoder's view of
    the data (continuous columns standardized, categories one-hot, missing
    entries at the mean), then clipped to ``[1, n_features - 1]``. With
    ``weight`` (``sample_weight``), the spectrum of the weighted covariance.
    """
    step = max(1, len(X) // _SCALE_SAMPLE_ROWS)
    sample = np.asarray(X[::step], dtype=np.float64)
    sample_weight = None if weight is None else weight[::step]
    if sample_weight is not None:
        sample = sample[sample_weight > 0]
        sample_weight = sample_weight[sample_weight > 0]
    d = X.shape[1]
    if len(sample) < 2 or d < 2:
        return 1
    loc, scale = estimator.feature_loc_, estimator.feature_scale_
    columns = []
    n_categories = iter(len(levels) for levels in estimator.categories_)
    for j in range(d):
        values = sample[:, j]
        if estimator.is_categorical_[j]:
            k = next(n_categories)
            codes = np.where(np.isnan(values), -1, values).astype(int)
            columns.append((codes[:, None] == np.arange(k)).astype(np.float64))
        else:
            standardized = (values - loc[j]) / scale[j]
            columns.append(np.where(np.isnan(standardized), 0.0, standardized)[:, None])
    view = np.hstack(columns)
    if sample_weight is None:
        view -= view.mean(axis=0)
    else:
        view = (view - np.average(view, axis=0, weights=sample_weight)) * np.sqrt(sample_weight)[:, None]
    spectrum = np.linalg.svd(view, compute_uv=False) ** 2
    if spectrum.sum() <= 0:
        return 1
    explained = np.cumsum(spectrum) / spectrum.sum()
    k = int(np.searchsorted(explained, _EXPLAINED_VARIANCE - 1e-12) + 1)
    return int(np.clip(k, 1, d - 1))


def check_explicit_n_components(estimator, n_components: int, n_features: int) -> None:
    if n_components > n_features:
        warnings.warn(
            f"{type(estimator).__name__}: n_components={n_components} is larger than the {n_features} feature(s) "
            "of X: the codes cannot be a compression of the rows, and a likelihood score learns the identity. "
            "Use n_components='auto' (chosen from the data) or a value below n_features.",
            UserWarning,
            stacklevel=5,
        )


def table_output(estimator, values: np.ndarray):
    """Rows in data space back in the fitted column types.

    Without categorical columns: the float64 array. With them: a DataFrame
    with the fitted columns and dtypes when fitted on a DataFrame; otherwise
    the float64 array with each code replaced by its category value. A NaN
    stays missing.
    """
    categorical = np.flatnonzero(getattr(estimator, "is_categorical_", np.zeros(0, dtype=bool)))
    if not len(categorical):
        return values
    kinds = getattr(estimator, "_column_kinds", None)
    if kinds is None:
        out = values.copy()
        for j, levels in zip(categorical, estimator.categories_, strict=True):
            codes = out[:, j]
            present = ~np.isnan(codes)
            out[present, j] = levels[codes[present].astype(int)]
        return out
    import pandas as pd

    columns = {}
    categories = iter(estimator.categories_)
    for j, name in enumerate(estimator.feature_names_in_):
        if j not in categorical:
            columns[name] = values[:, j]
            continue
        levels = next(categories)
        codes = np.where(np.isnan(values[:, j]), -1, values[:, j]).astype(int)
        column = pd.Categorical.from_codes(codes, categories=pd.Index(levels))
        if kinds[j] == "category":
            columns[name] = column
        elif kinds[j] == "bool" and not (codes < 0).any():
            columns[name] = np.asarray(column, dtype=bool)
        else:  # the fitted object or string dtype (a bool column with missing entries stays object)
            labels = pd.Series(np.asarray(column, dtype=object))
            dtype = estimator._column_dtypes[j]
            columns[name] = labels if kinds[j] == "bool" or dtype == "object" else labels.astype(dtype)
    return pd.DataFrame(columns)
