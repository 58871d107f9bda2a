"""Property-based tests: every public method, given arbitrary input, returns finite float64 output of the
right shape or raises a ValueError / TypeError that says what is wrong, never a raw torch error or a
silent NaN.

The default profile ("ci") runs a fixed, derandomized example budget so that the suite stays fast and
reproducible; ``HYPOTHESIS_PROFILE=long`` runs many more examples with fresh randomness.
"""

import os
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from skprobae import PAE, PAEImputer, ProbabilisticAutoencoder, TrainingDivergedError
from skprobae._testing import AUTOENCODERS, small

settings.register_profile(
    "ci",
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
settings.register_profile("long", max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)
# Fitting and posterior inference cost far more per example than scoring: smaller budgets.
FIT_BUDGET = settings(max_examples=12 if PROFILE == "ci" else 150)
POSTERIOR_BUDGET = settings(max_examples=15 if PROFILE == "ci" else 100)

N_FEATURES = 6
# What an error message must point at: a parameter, the input's shape, its values or its type.
INFORMATIVE = re.compile(
    r"n_features|features|shape|X\b|Z\b|NaN|nan|infinit|finite|float32 range|dtype|numeric|n_samples|sample"
    r"|temperature|random_state|image_shape|codes|n_components|missing|string|complex|array|empty",
    re.IGNORECASE,
)
TORCH_ERRORS = re.compile(r"mat1 and mat2|size mismatch|Expected .* tensor|\bat::|\bc10::|\baten::")


@pytest.fixture(scope="module")
def train():
    rng = np.random.default_rng(0)
    return rng.normal(size=(300, 2)) @ rng.normal(size=(2, N_FEATURES)) + 0.1 * rng.normal(size=(300, N_FEATURES))


@pytest.fixture(scope="module", params=AUTOENCODERS, ids=lambda cls: cls.__name__)
def fitted(request, train):
    return small(request.param).fit(train)


# ----------------------------------------------------------------- inputs
def _special_values(draw, array):
    """Overwrite a few random entries of a float array with NaN, +-inf, huge, tiny or negative-zero values."""
    if array.size and array.dtype.kind == "f" and draw(st.booleans()):
        flat = array.reshape(-1)
        positions = draw(st.lists(st.integers(0, flat.size - 1), min_size=1, max_size=4))
        specials = st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -1e30, 1e-30, 3e38, -0.0])
        for position in positions:
            flat[position] = draw(specials)
    return array


@st.composite
def matrices(draw, n_features=None, max_rows=300):
    """Random 2-D input: shapes, dtypes, containers, magnitudes and special values."""
    n_rows = draw(st.integers(1, max_rows))
    columns = n_features if n_features is not None else draw(st.integers(1, 50))
    kind = draw(st.sampled_from(["float64", "float32", "int64", "bool", "object", "frame", "constant", "scaled"]))
    base = draw(hnp.arrays(np.float64, (n_rows, columns), elements=st.floats(-3, 3, width=32)))
    if kind == "float32":
        return _special_values(draw, base.astype(np.float32))
    if kind == "int64":
        return np.round(base * 10).astype(np.int64)
    if kind == "bool":
        return base > 0
    if kind == "object":
        return base.astype(object)
    if kind == "frame":
        return pd.DataFrame(_special_values(draw, base), columns=[f"c{i}" for i in range(columns)])
    if kind == "constant":
        base[:, draw(st.integers(0, columns - 1))] = draw(st.sampled_from([0.0, 1.0, 1e-12]))
        return base
    if kind == "scaled":
        return base * draw(st.sampled_from([1e-20, 1e-8, 1e8, 1e20]))
    return _special_values(draw, base)


def _check_outcome(call, expected_rows=None, expected_cols=None):
    """Run ``call``: finite float64 output of the right shape, or an informative ValueError / TypeError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = call()
        except (ValueError, TypeError) as error:
            message = str(error)
            assert INFORMATIVE.search(message), f"uninformative {type(error).__name__}: {message}"
            assert not TORCH_ERRORS.search(message), f"raw torch error: {message}"
            return None
    outputs = out if isinstance(out, tuple) else (out,)
    for array in outputs:
        assert isinstance(array, np.ndarray) and array.dtype == np.float64, (type(array), getattr(array, "dtype", None))
        assert np.isfinite(array).all(), f"{(~np.isfinite(array)).sum()} non-finite outputs"
        if expected_rows is not None:
            assert array.shape[0] == expected_rows
        if expected_cols is not None and array.ndim == 2:
            assert array.shape[1] == expected_cols
    return out


def _n_rows(X):
    return len(X)


ROW_METHODS = ("score_samples", "decision_function", "transform", "reconstruct")


# ----------------------------------------------------------------- scoring methods
@given(data=st.data())
def test_row_methods_on_arbitrary_input(fitted, data):
    X = data.draw(matrices(n_features=data.draw(st.sampled_from([N_FEATURES, N_FEATURES, 1, N_FEATURES + 3]))))
    method = data.draw(st.sampled_from(ROW_METHODS))
    width = fitted.n_components if method == "transform" else (N_FEATURES if method == "reconstruct" else None)
    out = _check_outcome(lambda: getattr(fitted, method)(X), _n_rows(X), width)
    if out is not None:
        assert np.shape(X)[1] == N_FEATURES  # a wrong width never scores


@given(data=st.data())
def test_predict_on_arbitrary_input(fitted, data):
    X = data.draw(matrices(n_features=N_FEATURES))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            labels = fitted.predict(X)
        except (ValueError, TypeError) as error:
            assert INFORMATIVE.search(str(error)), str(error)
            return
    assert set(np.unique(labels)) <= {-1, 1} and len(labels) == len(X)


@given(data=st.data())
def test_inverse_transform_on_arbitrary_codes(fitted, data):
    Z = data.draw(matrices(n_features=data.draw(st.sampled_from([fitted.n_components, fitted.n_components + 1]))))
    _check_outcome(lambda: fitted.inverse_transform(Z), _n_rows(Z), N_FEATURES)


@given(
    n_samples=st.one_of(st.integers(-3, 40), st.floats(-1, 5), st.sampled_from([None, "3", True, np.int64(4)])),
    temperature=st.one_of(st.floats(-1, 3), st.sampled_from([0, 1, "1", np.nan, np.inf, -np.inf])),
    random_state=st.one_of(st.none(), st.integers(0, 2**32 - 1), st.sampled_from([-1, 2**40, "seed"])),
)
def test_sample_with_arbitrary_arguments(fitted, n_samples, temperature, random_state):
    out = _check_outcome(lambda: fitted.sample(n_samples, random_state=random_state, temperature=temperature))
    if out is not None:
        assert out.shape == (int(n_samples), N_FEATURES) and int(n_samples) >= 1


# ----------------------------------------------------------------- fitting
def _fits_or_explains(model, X) -> bool:
    """Fit ``model``: True if it fitted; False after a clear error (asserted to be one)."""
    try:
        model.fit(X)
    except FloatingPointError as error:
        # A degenerate fit (constant or absurdly scaled data): the engine's own error, with remedies
        # (TrainingDivergedError, raised mid-training, also names the epoch).
        assert re.search(r"standardize X", str(error), re.IGNORECASE), str(error)
        if isinstance(error, TrainingDivergedError):
            assert re.search(r"at epoch \d+", str(error)), str(error)
        return False
    except (ValueError, TypeError) as error:
        assert INFORMATIVE.search(str(error)), f"uninformative: {error}"
        assert not TORCH_ERRORS.search(str(error)), f"raw torch error: {error}"
        return False
    return True


@FIT_BUDGET
@given(data=st.data())
def test_fit_on_arbitrary_input(data):
    cls = data.draw(st.sampled_from(AUTOENCODERS))
    X = data.draw(matrices(max_rows=120))
    model = small(cls).set_params(max_epochs=1)
    if cls is PAE:
        model.set_params(flow_max_epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not _fits_or_explains(model, X):
            return
    n_features = np.shape(X)[1]
    clean = np.zeros((3, n_features))
    _check_outcome(lambda: model.score_samples(clean), 3)
    _check_outcome(lambda: model.transform(clean), 3, model.n_components)


@pytest.mark.parametrize("image_shape", [(3, 2), (2, 3), (6,), (1, 2, 3), (4, 4), (0, 6), (-2, -3)])
def test_a_wrong_image_shape_is_a_clear_error_or_a_valid_fit(train, image_shape):
    model = small(ProbabilisticAutoencoder).set_params(image_shape=image_shape, distribution="matrix_normal_diag")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model.fit(train)
        except (ValueError, TypeError) as error:
            assert "image_shape" in str(error), str(error)
            return
    assert np.prod(image_shape) == N_FEATURES
    _check_outcome(lambda: model.score_samples(train[:5]), 5)


# ----------------------------------------------------------------- imputation
@pytest.fixture(scope="module")
def imputer(train):
    X = train.copy()
    X[::4, 0] = np.nan
    return small(PAEImputer).fit(X)


@POSTERIOR_BUDGET
@given(data=st.data())
def test_imputer_transform_on_arbitrary_input(imputer, data):
    X = data.draw(matrices(n_features=data.draw(st.sampled_from([N_FEATURES, N_FEATURES, 2])), max_rows=40))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            filled = imputer.transform(X)
        except (ValueError, TypeError) as error:
            assert INFORMATIVE.search(str(error)), f"uninformative: {error}"
            return
    assert filled.shape == np.shape(X) and filled.dtype == np.float64
    X_float = np.asarray(X, dtype=np.float64)
    observed = ~np.isnan(X_float)
    # Observed entries pass through; only NaNs are filled, with finite values. Infinite observed entries
    # are not missing: they must be refused, never passed through.
    assert np.isfinite(filled).all()
    np.testing.assert_array_equal(filled[observed], X_float[observed])


@POSTERIOR_BUDGET
@given(data=st.data())
def test_pae_impute_on_arbitrary_input(train, data):
    pae = _small_pae(train)
    X = data.draw(matrices(n_features=N_FEATURES, max_rows=20))
    method = data.draw(st.sampled_from(["impute", "denoise"]))
    kwargs = {"n_samples": 5, "n_steps": 5, **({"noise_std": 0.1} if method == "denoise" else {})}
    _check_outcome(lambda: getattr(pae, method)(X, **kwargs), _n_rows(X), N_FEATURES)


_PAE_CACHE = {}


def _small_pae(train):
    if "pae" not in _PAE_CACHE:
        _PAE_CACHE["pae"] = small(PAE).fit(train)
    return _PAE_CACHE["pae"]


@POSTERIOR_BUDGET
@given(data=st.data())
def test_imputer_fit_on_arbitrary_input(data):
    X = data.draw(matrices(max_rows=60))
    if isinstance(X, np.ndarray) and X.dtype.kind == "f" and X.size and data.draw(st.booleans()):
        X = X.copy()
        X.reshape(-1)[data.draw(st.integers(0, X.size - 1))] = np.nan  # a missing entry, what it is for
    imputer = small(PAEImputer).set_params(max_epochs=1, flow_max_epochs=1, n_rounds=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not _fits_or_explains(imputer, X):
            return
        filled = imputer.transform(X)
    assert filled.shape == np.shape(X) and np.isfinite(filled).all()


@pytest.fixture(scope="module")
def image_model():
    from sklearn.datasets import load_digits

    X = load_digits().data[:200] / 16
    return small(ProbabilisticAutoencoder).set_params(architecture="conv", image_shape=(8, 8)).fit(X)


@POSTERIOR_BUDGET
@given(
    leading=st.integers(1, 5),
    shape=st.lists(st.integers(1, 10), min_size=1, max_size=3),
    method=st.sampled_from(["score_samples", "transform", "reconstruct"]),
)
def test_image_models_on_arbitrarily_shaped_arrays(image_model, leading, shape, method):
    X = np.random.default_rng(0).uniform(size=(leading, *shape))
    out = _check_outcome(lambda: getattr(image_model, method)(X), leading)
    if out is not None:  # only the shapes an 8 x 8 one-channel model can read
        assert tuple(shape) in ((64,), (8, 8), (1, 8, 8))
