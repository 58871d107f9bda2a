"""Scaling out: searches on a dask.distributed cluster, torch threads in its workers, dask arrays chunk by chunk, ray.

One ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` serves the module. Tests that need dask,
distributed or ray skip without them (the ``scale`` extra installs dask and distributed; ray is optional).
"""

import os
import sys
import threading
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import FitFailedWarning
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from skprobae import PAE, PAEImputer, ProbabilisticAutoencoder, _engine
from skprobae._engine import cpu_count, thread_budget
from skprobae._testing import AUTOENCODERS, small

N_WORKERS, THREADS_PER_WORKER = 2, 1
RTOL = 1e-6
"""Cluster and serial runs, chunked and in-memory calls agree to this (same rows, same block sizes, same kernels)."""

PRE_SPAWN = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")
"""Variables distributed's nanny writes into the environment of the process that starts it."""


def _data(n: int = 120, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)) @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(n, 6))


def _with_missing(X: np.ndarray) -> np.ndarray:
    return np.where(np.random.default_rng(1).random(X.shape) < 0.1, np.nan, X)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    saved = {name: os.environ.get(name) for name in PRE_SPAWN}
    cluster = distributed.LocalCluster(
        n_workers=N_WORKERS, threads_per_worker=THREADS_PER_WORKER, processes=True, dashboard_address=None
    )
    try:
        with cluster, distributed.Client(cluster) as client:
            yield client
    finally:
        for name, value in saved.items():  # the nanny set them in this process too: leave it as it was
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# ------------------------------------------------------------------ search
def _imputation_score(estimator, X, y=None) -> float:
    """Minus the mean squared error of imputing every fifth observed entry (a scorer for PAEImputer)."""
    observed = np.flatnonzero(~np.isnan(X))[::5]
    hidden = X.copy()
    hidden.flat[observed] = np.nan
    return -float(np.mean((estimator.transform(hidden).flat[observed] - X.flat[observed]) ** 2))


def _searches():
    grid = {"n_components": [1, 3]}
    cases = [pytest.param(GridSearchCV(small(cls), grid), False, id=cls.__name__) for cls in AUTOENCODERS]
    imputer = GridSearchCV(small(PAEImputer), grid, scoring=_imputation_score)
    pipeline = RandomizedSearchCV(
        make_pipeline(StandardScaler(), small(PAE)), {"pae__n_components": [1, 2, 3]}, n_iter=2, random_state=0
    )
    return [*cases, pytest.param(imputer, True, id="PAEImputer"), pytest.param(pipeline, False, id="Pipeline")]


@pytest.mark.parametrize(("search", "missing"), _searches())
def test_search_on_a_cluster_equals_the_serial_search(client, search, missing):
    from distributed import get_task_stream

    X = _with_missing(_data()) if missing else _data()
    search.set_params(cv=2, refit=False, error_score="raise")
    serial = clone(search).fit(X)
    with joblib.parallel_config(backend="dask"), get_task_stream(client=client) as tasks:
        on_cluster = clone(search).fit(X)
    assert {task["worker"] for task in tasks.data} <= set(client.scheduler_info()["workers"])
    assert tasks.data, "the search ran no task on the cluster"
    assert on_cluster.best_params_ == serial.best_params_
    assert on_cluster.cv_results_["params"] == serial.cv_results_["params"]
    for key in ("mean_test_score", "std_test_score", "split0_test_score", "split1_test_score"):
        np.testing.assert_allclose(on_cluster.cv_results_[key], serial.cv_results_[key], rtol=RTOL, err_msg=key)
    np.testing.assert_array_equal(on_cluster.cv_results_["rank_test_score"], serial.cv_results_["rank_test_score"])


def test_a_failing_candidate_raises_on_the_cluster(client):
    search = GridSearchCV(small(PAE), {"n_components": [2, 0]}, cv=2, refit=False, error_score="raise")
    with joblib.parallel_config(backend="dask"), pytest.raises(ValueError, match="n_components"):
        search.fit(_data())
    # With the default error_score (nan) the failure is reported, and the candidate kept, not silently dropped.
    with joblib.parallel_config(backend="dask"), pytest.warns(FitFailedWarning), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "One or more of the test scores are non-finite")
        search.set_params(error_score=np.nan).fit(_data())
    assert [p["n_components"] for p in search.cv_results_["params"]] == [2, 0]
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores[0]) and np.isnan(scores[1])


# ----------------------------------------------------------------- threads
def _threads_in_fit(torch_threads: int | None = None) -> dict:
    """Fit a model large enough to ask for several threads; the torch threads seen by every module call in it."""
    previous = torch.get_num_threads()
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)  # as if the worker had been given every core
    seen = set()

    def record(module, args, output):
        # Passes over batches and blocks; not the cost probes (2 and 4 rows), which run before a call picks threads.
        if args and isinstance(args[0], torch.Tensor) and args[0].ndim and len(args[0]) > 4:
            seen.add(torch.get_num_threads())

    hook = nn.modules.module.register_module_forward_hook(record)
    try:
        model = ProbabilisticAutoencoder(
            n_components=2, hidden_layer_sizes=(512, 512), max_epochs=1, batch_size=128, random_state=0
        )
        model.fit(_data(256))
        return {"outside": torch.get_num_threads(), "inside": sorted(seen), "budget": thread_budget()}
    finally:
        hook.remove()
        torch.set_num_threads(previous)


@pytest.mark.skipif(cpu_count() < 2, reason="one core: every fit runs on one thread")
def test_the_probe_model_asks_for_more_than_one_thread(monkeypatch):
    # Outside a worker the budget is torch's setting: with every core allowed, the probe's fit takes several
    # (on a quiet machine: the policy leaves the cores other processes keep busy, as this module's cluster may).
    monkeypatch.setattr(_engine, "busy_other_threads", lambda: 0)
    assert max(_threads_in_fit(cpu_count())["inside"]) >= 2


@pytest.mark.parametrize("torch_setting", ["as the nanny left it", "every core"])
def test_torch_threads_in_a_worker_stay_within_its_share(client, torch_setting):
    cores = client.run(cpu_count)  # per worker address
    share = {address: max(1, n // (N_WORKERS * THREADS_PER_WORKER)) for address, n in cores.items()}
    every_core = torch_setting == "every core"
    for address in cores:
        report = client.submit(_threads_in_fit, cores[address] if every_core else None, workers=[address], pure=False)
        report = report.result()
        assert report["inside"] and max(report["inside"]) <= share[address], report
        assert report["budget"] <= share[address], report
    # The same through joblib's dask backend, the path of a search.
    n = max(cores.values()) if every_core else None
    with joblib.parallel_config(backend="dask"):
        reports = joblib.Parallel(n_jobs=2)(joblib.delayed(_threads_in_fit)(n) for _ in range(2))
    assert all(report["inside"] and max(report["inside"]) <= min(share.values()) for report in reports), reports


@pytest.mark.filterwarnings("ignore:Port .* is already in use")  # the module's cluster has it
def test_workers_in_one_process_divide_its_threads():
    distributed = pytest.importorskip("distributed")

    def budget() -> int:
        return thread_budget()

    previous = torch.get_num_threads()
    torch.set_num_threads(cpu_count())  # torch may use every core in this process; two workers share them
    try:
        with (
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c,
            distributed.Client(c) as client,
        ):
            tasks = [client.submit(budget, pure=False, workers=[w.address]) for w in c.workers.values()]
            budgets = client.gather(tasks)
    finally:
        torch.set_num_threads(previous)
    assert all(1 <= b <= max(1, cpu_count() // 2) for b in budgets), budgets


# ------------------------------------------------------------ dask arrays
METHODS = ["score_samples", "decision_function", "predict", "transform", "reconstruct", "inverse_transform"]


@pytest.fixture(scope="module")
def fitted():
    return {cls: small(cls).fit(_data(200)) for cls in AUTOENCODERS}


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    """Rows on disk, as a dask array over a memory map, in chunks that split the columns too."""
    da = pytest.importorskip("dask.array")
    X = _data(300, seed=2)
    path = tmp_path_factory.mktemp("parallel") / "rows.npy"
    np.save(path, X)
    return X, da.from_array(np.load(path, mmap_mode="r"), chunks=(70, 4))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("cls", AUTOENCODERS, ids=lambda cls: cls.__name__)
def test_map_blocks_equals_the_in_memory_call(cls, method, fitted, mapped):
    from skprobae.parallel import map_blocks

    da = pytest.importorskip("dask.array")
    model, (X, dX) = fitted[cls], mapped
    if method == "inverse_transform":
        X = model.transform(X)
        dX = da.from_array(X, chunks=(70, -1))
    expected = getattr(model, method)(X)
    result = map_blocks(model, dX, method)
    assert result.shape == expected.shape and result.dtype == expected.dtype
    assert result.chunks[0] == dX.chunks[0]
    got = result.compute(scheduler="synchronous")
    assert got.shape == expected.shape and got.dtype == expected.dtype
    if method == "predict":
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=1e-9)


def test_map_blocks_is_lazy_and_calls_once_per_chunk(fitted, mapped, monkeypatch):
    from skprobae.parallel import map_blocks

    model, (_, dX) = fitted[PAE], mapped
    calls = []
    score_samples = PAE.score_samples
    monkeypatch.setattr(PAE, "score_samples", lambda self, rows: calls.append(len(rows)) or score_samples(self, rows))
    result = map_blocks(model, dX, "score_samples")
    assert calls == []  # building the graph computes nothing
    first = result.blocks[0].compute(scheduler="synchronous")
    assert calls == [70] and len(first) == 70
    result.compute(scheduler="synchronous")
    assert sorted(calls[1:]) == sorted(dX.chunks[0])  # one call per chunk of rows, never the whole array


def test_map_blocks_for_an_imputer_and_a_pipeline(mapped):
    from skprobae.parallel import map_blocks

    da = pytest.importorskip("dask.array")
    X = _with_missing(mapped[0])
    imputer = small(PAEImputer).fit(X)
    filled = map_blocks(imputer, da.from_array(X, chunks=(70, 3)), "transform")
    np.testing.assert_allclose(filled.compute(), imputer.transform(X), rtol=RTOL, atol=1e-9)
    pipeline = make_pipeline(StandardScaler(), small(PAE)).fit(mapped[0])
    for method in ("score_samples", "transform"):
        got = map_blocks(pipeline, mapped[1], method).compute()
        np.testing.assert_allclose(got, getattr(pipeline, method)(mapped[0]), rtol=RTOL, atol=1e-9)


def test_map_blocks_on_the_cluster(client, fitted, mapped):
    from skprobae.parallel import map_blocks

    model, (X, dX) = fitted[PAE], mapped
    got = client.compute(map_blocks(model, dX.persist(), "score_samples")).result()
    np.testing.assert_allclose(got, model.score_samples(X), rtol=RTOL)


def test_map_blocks_refuses_what_it_cannot_map(fitted, mapped):
    from skprobae.parallel import map_blocks

    model, (_, dX) = fitted[PAE], mapped
    with pytest.raises(ValueError, match="method must be one of"):
        map_blocks(model, dX, "fit")
    with pytest.raises(ValueError, match="return_std"):
        map_blocks(model, dX, "reconstruct", return_std=True)
    with pytest.raises(ValueError, match="expects 6"):
        map_blocks(model, dX[:, :4], "score_samples")
    with pytest.raises(ValueError, match="2-D"):
        map_blocks(model, dX[:, 0], "score_samples")


def test_map_blocks_without_dask_names_the_extra(monkeypatch):
    from skprobae.parallel import map_blocks

    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "dask.array", None)
    with pytest.raises(ImportError, match=r"skprobae\[scale\]"):
        map_blocks(small(PAE), np.zeros((2, 2)))


# --------------------------------------------------------------------- ray
def test_grid_search_on_ray():
    ray = pytest.importorskip("ray")
    from ray.util.joblib import register_ray

    X = _data()
    search = GridSearchCV(small(PAE), {"n_components": [1, 3]}, cv=2, refit=False)
    serial = clone(search).fit(X)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        register_ray()
        with joblib.parallel_config(backend="ray"):
            on_ray = clone(search).fit(X)
    finally:
        if started:
            ray.shutdown()
    assert on_ray.best_params_ == serial.best_params_
    np.testing.assert_allclose(on_ray.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"], rtol=RTOL)


# ------------------------------------------------------------- lost worker
class ExitOnceInWorker(nn.Linear):
    """An encoder whose first construction in a dask worker kills that worker's process (``marker`` records it)."""

    def __init__(self, n_in: int, n_out: int, marker: str = ""):
        import distributed

        try:
            distributed.get_worker()
        except ValueError:  # not on a worker: an ordinary linear encoder
            pass
        else:
            if marker and not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)
        super().__init__(n_in, n_out)


def test_a_lost_worker_fails_the_search_or_is_recovered(client, tmp_path):
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker

    marker = str(tmp_path / "worker-died")
    model = small(PAE, encoder=ExitOnceInWorker, encoder_kwargs={"marker": marker})
    search = GridSearchCV(model, {"n_components": [1, 2]}, cv=2, refit=False, error_score="raise")
    serial = clone(search).fit(_data())
    outcome = {}

    def run() -> None:
        try:
            with joblib.parallel_config(backend="dask"):
                outcome["search"] = clone(search).fit(_data())
        except BaseException as error:  # dask's CancelledError is a BaseException
            outcome["error"] = error

    # In a thread, so that a search that never returns fails this test instead of hanging the suite.
    thread = threading.Thread(target=run, daemon=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the nanny's and the scheduler's reports of the death
        thread.start()
        thread.join(timeout=120)
    try:
        assert not thread.is_alive(), "the search neither failed nor finished after its worker died"
        assert os.path.exists(marker), "no worker died"
        if "error" in outcome:  # the worker held the scattered data: the search fails with dask's error
            assert isinstance(outcome["error"], FutureCancelledError | KilledWorker), repr(outcome["error"])
        else:  # the task was rerun on a live worker: every candidate is there, as in the serial search
            on_cluster = outcome["search"]
            assert on_cluster.cv_results_["params"] == serial.cv_results_["params"]
            np.testing.assert_allclose(
                on_cluster.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"], rtol=RTOL
            )
    finally:
        client.wait_for_workers(N_WORKERS, timeout=120)  # the nanny restarts it


def test_from_memmap_reads_each_chunk_in_its_own_task(tmp_path):
    dask = pytest.importorskip("dask")
    from skprobae.parallel import from_memmap

    rows = np.random.default_rng(0).normal(size=(1000, 5)).astype(np.float32)
    rows.tofile(tmp_path / "rows.f32")
    X = np.memmap(tmp_path / "rows.f32", dtype=np.float32, mode="r", shape=(1000, 5))
    view = X[130:]  # a view at an offset into the file
    chunked = from_memmap(view, 300)
    assert chunked.shape == (870, 5) and chunked.chunks[0] == (300, 300, 270)
    # The graph carries the file's name, never its rows (dask's from_array copies a whole memmap into it).
    graph = dict(chunked.__dask_graph__())
    assert sum(value.nbytes for value in graph.values() if isinstance(value, np.ndarray)) == 0
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(chunked.compute(), rows[130:])
    with pytest.raises(ValueError, match=r"2-D, C-ordered view of an np\.memmap"):
        from_memmap(rows, 100)
    with pytest.raises(ValueError, match="chunk_rows must be a positive integer"):
        from_memmap(view, 0)
