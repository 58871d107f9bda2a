"""Contracts of the engine that every public autoencoder keeps (estimators discovered from ``skprobae.__all__``)."""

import os
import pickle
import signal
import threading
import time
import tracemalloc
import warnings

import numpy as np
import pytest
import torch

import skprobae._base
from skprobae import ProbabilisticAutoencoder, TrainingDivergedError
from skprobae._testing import AUTOENCODERS, small

METHODS = ("transform", "score_samples", "reconstruct")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(300, 2))
    return (latent @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(300, 6))).astype(np.float32)


@pytest.fixture(scope="module", params=AUTOENCODERS, ids=lambda cls: cls.__name__)
def fitted(request, data):
    return small(request.param).fit(data)


def test_a_row_gets_the_same_outputs_whatever_else_is_in_the_call(fitted, data):
    # Rows are evaluated in fixed-size blocks, so every call runs the same kernels on the same shapes.
    # A row's position inside a block can still move a float32 result by an ulp for some small layer
    # shapes (a BLAS kernel pairing rows: Linear(6, 8) on an AMD EPYC), hence the tolerance.
    for method in METHODS:
        full = getattr(fitted, method)(data)
        scale = np.abs(full).max()
        np.testing.assert_allclose(getattr(fitted, method)(data[7:9]), full[7:9], atol=1e-6 * scale, err_msg=method)
        np.testing.assert_allclose(getattr(fitted, method)(data[::-1])[::-1], full, atol=1e-6 * scale, err_msg=method)


def test_float32_inference_agrees_with_the_exact_mode(fitted, data):
    exact = pickle.loads(pickle.dumps(fitted)).set_params(inference_dtype="float64")
    for method in METHODS:
        fast, reference = getattr(fitted, method)(data), getattr(exact, method)(data)
        assert fast.dtype == reference.dtype == np.float64
        scale = np.abs(reference).max()
        np.testing.assert_allclose(fast, reference, atol=1e-4 * scale, err_msg=method)
    assert next(exact.net_.module_.parameters()).dtype == torch.float64


def test_pickle_round_trip_gives_identical_outputs(fitted, data):
    loaded = pickle.loads(pickle.dumps(fitted))
    for method in METHODS:
        np.testing.assert_array_equal(getattr(loaded, method)(data[:20]), getattr(fitted, method)(data[:20]))
    np.testing.assert_array_equal(loaded.sample(5, random_state=0), fitted.sample(5, random_state=0))


@pytest.mark.parametrize("cls", AUTOENCODERS, ids=lambda cls: cls.__name__)
def test_a_model_fitted_with_progress_bars_pickles(cls, data, capsys):
    model = small(cls, verbose=1).fit(data[:100])
    assert "epoch" in capsys.readouterr().err  # the bars ran
    loaded = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(loaded.score_samples(data[:20]), model.score_samples(data[:20]))


def test_memory_mapped_training_data_fits_the_same_model(data, tmp_path):
    path = tmp_path / "rows.f32"
    data.tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=data.shape)
    for cls in AUTOENCODERS:
        in_memory, from_file = small(cls).fit(data), small(cls).fit(mapped)
        np.testing.assert_allclose(from_file.score_samples(data), in_memory.score_samples(data), rtol=1e-6)


def test_integer_and_float64_inputs_are_accepted(data):
    model = small(ProbabilisticAutoencoder).fit(np.round(data * 10).astype(np.int64))
    assert model.score_samples(data.astype(np.float64)).dtype == np.float64


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_device_change_after_fit_is_applied_not_ignored(fitted, data):
    moved = pickle.loads(pickle.dumps(fitted)).set_params(device="cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        moved.score_samples(data)
    moved.set_params(device="cpu")
    np.testing.assert_array_equal(moved.score_samples(data), fitted.score_samples(data))


class ThreadRecorder(torch.nn.Module):
    """An encoder that records torch's intra-op thread setting (and the mode) at every call."""

    calls: list = []

    def __init__(self, n_in, n_out):
        super().__init__()
        self.linear = torch.nn.Linear(n_in, n_out)

    def forward(self, x):
        ThreadRecorder.calls.append((self.training, torch.get_num_threads()))
        return self.linear(x)


@pytest.mark.parametrize("n_threads", [None, 1, 2])
def test_thread_setting_applies_inside_calls_and_is_restored(data, n_threads):
    expected = 1 if n_threads is None else n_threads  # None: this small model gets one thread
    outer = torch.get_num_threads()
    torch.set_num_threads(2 if expected == 1 else 1)  # the caller's setting differs from the one expected inside
    try:
        ThreadRecorder.calls = []
        model = small(ProbabilisticAutoencoder, encoder=ThreadRecorder, n_threads=n_threads).fit(data)
        model.score_samples(data)
        assert torch.get_num_threads() == (2 if expected == 1 else 1)
    finally:
        torch.set_num_threads(outer)
    training = [threads for is_training, threads in ThreadRecorder.calls if is_training]
    assert len(training) >= model.n_iter_ and set(training) == {expected}
    assert ThreadRecorder.calls[-1] == (False, expected)  # the last block of score_samples


@pytest.mark.parametrize("cls", AUTOENCODERS, ids=lambda cls: cls.__name__)
def test_fits_in_concurrent_threads_give_the_models_of_lone_fits(cls, data):
    # joblib's threading backend and dask's threaded scheduler fit several models at once in one process. Each fit
    # draws its training noise (VAE codes, prior noise, masked table entries) from its own generators and seeds
    # torch's global one only under a lock, so the interleaving changes nothing, nor does the global RNG's state.
    def fit_and_sample(seed):
        model = small(cls, random_state=seed).fit(data)
        return model.score_samples(data), model.sample(5, random_state=seed)

    alone = {seed: fit_and_sample(seed) for seed in (0, 1)}
    together, errors = {}, []
    start = threading.Barrier(2)

    def run(seed):
        try:
            start.wait()
            together[seed] = fit_and_sample(seed)
        except BaseException as error:  # re-raised in the main thread
            errors.append(error)

    torch.manual_seed(123)  # another global state than the lone fits saw
    state = torch.get_rng_state()
    threads = [threading.Thread(target=run, args=(seed,)) for seed in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    assert torch.equal(torch.get_rng_state(), state)
    for seed in (0, 1):
        for got, expected in zip(together[seed], alone[seed], strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())
    assert not np.allclose(alone[0][0], alone[1][0])  # the seeds give different models


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_process_forked_while_a_thread_seeds_torch_can_still_seed(data):
    # The seeding lock held by another thread at a fork (multiprocessing's fork start method) is never released in
    # the child; the child gets a fresh one, or its first fit would hang.
    holding, release = threading.Event(), threading.Event()

    def hold():
        with skprobae._base.torch_seeded(0):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # the child: exit 0 if it can seed, or be killed by the parent below
            code = 1
            try:
                with skprobae._base.torch_seeded(1):
                    code = 0
            finally:
                os._exit(code)  # never return into pytest in the child
        deadline = time.monotonic() + 30
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if done[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung on the seeding lock")
        assert os.waitstatus_to_exitcode(done[1]) == 0
    finally:
        release.set()
        thread.join()


@pytest.mark.parametrize("cls", AUTOENCODERS, ids=lambda cls: cls.__name__)
def test_badly_scaled_tables_warn_at_fit(cls, data):
    # One column in the millions used to give scores near -1e20 without a word. The table estimators
    # standardize internally by default; with standardize=False (and AEF, which has no such step) they warn.
    wide = data.astype(np.float64)
    wide[:, 0] *= 1e6
    raw = {"standardize": False} if "standardize" in cls().get_params() else {}
    with pytest.warns(UserWarning, match=r"X is badly scaled \(column 0 has values of magnitude .*StandardScaler"):
        try:
            small(cls, **raw).fit(wide)
        except TrainingDivergedError:
            pass  # AEF's exact likelihood diverges on such data: after the warning, a clear error
    spread = 1e-4 * data.astype(np.float64)
    spread[:, 1] *= 1e4  # of unit scale, but every other column is 1e4 times narrower
    with pytest.warns(UserWarning, match=r"column 1 has std .* against a median column std"):
        small(cls, **raw).fit(spread)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        small(cls).fit(data)  # unit-scale data: no warning


def test_a_pickled_model_does_not_carry_its_training_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50_000, 6)).astype(np.float32)  # 1.2 MB
    model = small(ProbabilisticAutoencoder).set_params(max_epochs=1).fit(X)
    assert len(pickle.dumps(model)) < 200_000  # the validation split used to stay on the net: 1.3 MB


def test_rows_that_overflow_float32_are_recomputed_in_float64(fitted, data):
    far = data[:4].astype(np.float64)
    far[1, 0] = 1e20  # its squared residual overflows float32 (used to score -inf, or NaN in AEF)
    exact = pickle.loads(pickle.dumps(fitted)).set_params(inference_dtype="float64")
    with pytest.warns(RuntimeWarning, match=r"score_samples: float32 inference overflowed on 1 row\(s\)"):
        scores = fitted.score_samples(far)
    assert np.isfinite(scores).all() and scores[1] < -1e30
    np.testing.assert_allclose(scores[1], exact.score_samples(far[1:2])[0], rtol=1e-6)
    np.testing.assert_allclose(scores[[0, 2, 3]], fitted.score_samples(far[[0, 2, 3]]), rtol=1e-6)
    for method in ("transform", "reconstruct"):  # finite either way (1e20 is within float32)
        assert np.isfinite(getattr(fitted, method)(far)).all()


@pytest.mark.parametrize("cls", [cls for cls in AUTOENCODERS if "n_importance_samples" in cls().get_params()])
def test_a_score_setting_changed_after_fit_warns_that_offset_is_of_other_scores(cls, data):
    model = small(cls).fit(data)
    fitted_value = model.n_importance_samples
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(data[:5])
    model.set_params(n_importance_samples=fitted_value + 3)
    with pytest.warns(UserWarning, match=rf"computed with n_importance_samples={fitted_value}; .* now uses"):
        model.predict(data[:5])
    model.set_params(n_importance_samples=fitted_value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.decision_function(data[:5])


@pytest.mark.parametrize("cls", AUTOENCODERS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("name", ["hidden_layer_sizes", "flow_hidden_layer_sizes"])
def test_layer_widths_must_be_positive_integers(cls, name, data):
    if name not in cls().get_params():
        pytest.skip(f"{cls.__name__} has no {name}")
    with pytest.raises(ValueError, match=f"^{name} must be a tuple of positive integers, got \\(8, 0\\)"):
        small(cls).set_params(**{name: (8, 0)}).fit(data)


def test_sums_over_rows_hold_a_bounded_chunk_of_outputs(monkeypatch):
    # statistics of the training rows whose per-row output is wide (PAE's squared error per feature) are summed a
    # bounded chunk at a time: 20,000 rows x 200 float64 outputs would be 32 MB at once
    X = np.random.default_rng(0).normal(size=(20_000, 200)).astype(np.float32)
    model = small(ProbabilisticAutoencoder).fit(X[:200])
    monkeypatch.setattr(skprobae._base, "SUM_CHUNK_BYTES", 2**20)
    tracemalloc.start()
    try:
        total = model._sum_over_rows("squares", lambda x: x.double() ** 2, X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(total, (X.astype(np.float64) ** 2).sum(axis=0), rtol=1e-10)
    assert peak < 8 * 2**20, peak
