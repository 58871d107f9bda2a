"""One fitted model called from many threads at once gives what serial calls give."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from skprobae import PAE, PAEImputer
from skprobae._testing import AUTOENCODERS, small


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(300, 2)) @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(300, 6))


def _calls(model, data):
    """Each call with its own rows and seed, so that any state shared between threads would show."""
    calls = []
    for i in range(8):
        rows = data[i * 30 : i * 30 + 40]
        calls += [
            ("score_samples", lambda m, r=rows: m.score_samples(r)),
            ("transform", lambda m, r=rows: m.transform(r)),
            ("sample", lambda m, i=i: m.sample(5, random_state=i)),
        ]
    return calls


@pytest.mark.parametrize("cls", AUTOENCODERS, ids=lambda cls: cls.__name__)
def test_eight_threads_at_once_match_serial_calls(cls, data):
    model = small(cls).fit(data)
    calls = _calls(model, data)
    serial = [call(model) for _, call in calls]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):  # a few rounds: races show intermittently
            threaded = list(pool.map(lambda item: item[1](model), calls))
            for (name, _), expected, got in zip(calls, serial, threaded, strict=True):
                # Same rows, same blocks, same kernels: equal up to the threads' BLAS scheduling.
                np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6, err_msg=name)


def test_imputer_transform_from_eight_threads(data):
    X = data.copy()
    X[::5, 1] = np.nan
    imputer = small(PAEImputer).fit(X)
    expected = imputer.transform(X[:80])
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: imputer.transform(X[:80]), range(8)))
    for got in results:
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_laplace_scores_from_eight_threads(data):
    # The Laplace term takes forward-mode Jacobians, whose AD levels torch keeps per process.
    model = small(PAE).set_params(score_method="laplace", map_steps=3).fit(data)
    expected = model.score_samples(data[:60])
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: model.score_samples(data[:60]), range(8)))
    for got in results:
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
