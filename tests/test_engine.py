"""The engine: batches from host or device rows, fixed-size blocks, the cost probe, threads, memory maps."""

import itertools
import mmap
import os
import pickle
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn import config_context

import skprobae
from skprobae import PAE, _engine
from skprobae._engine import (
    PageReleaser,
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
from skprobae._testing import small


@pytest.fixture
def memmap_file(tmp_path):
    X = np.random.default_rng(0).normal(size=(500, 7)).astype(np.float32)
    path = tmp_path / "rows.f32"
    X.tofile(path)
    return X, np.memmap(path, dtype=np.float32, mode="r", shape=X.shape)


@pytest.mark.parametrize("source_kind", ["tensor", "float64 host", "memmap"])
def test_row_batches_cover_the_chosen_rows_once(source_kind, memmap_file):
    X, mapped = memmap_file
    source = {"tensor": torch.from_numpy(X), "float64 host": X.astype(np.float64), "memmap": mapped}[source_kind]
    rows = np.arange(3, 500, 2)
    generator = torch.Generator().manual_seed(0)
    batches = [b for b, _ in RowBatches(RowData(source, rows), batch_size=64, shuffle=True, generator=generator)]
    assert [len(b) for b in batches[:-1]] == [64] * (len(batches) - 1) and sum(map(len, batches)) == len(rows)
    assert all(b.dtype == torch.float32 for b in batches)
    seen = np.sort(torch.cat(batches).numpy(), axis=0)
    np.testing.assert_array_equal(seen, np.sort(X[rows], axis=0))
    in_order = torch.cat([b for b, _ in RowBatches(RowData(source, rows), batch_size=50)])
    np.testing.assert_array_equal(in_order.numpy(), X[rows])


def test_shuffled_batches_repeat_with_the_generator_and_differ_between_epochs():
    data = RowData(torch.arange(20.0)[:, None], np.arange(20))

    def epoch(batches):
        return torch.cat([b for b, _ in batches]).squeeze(1).tolist()

    first = RowBatches(data, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(3))
    again = RowBatches(data, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(3))
    assert epoch(first) == epoch(again)
    assert epoch(first) != epoch(again.__class__(data, 5, True, torch.Generator().manual_seed(3)))


def test_training_source_uses_float32_arrays_without_copying(memmap_file):
    X, mapped = memmap_file
    tensor = training_source(X, "cpu")
    assert isinstance(tensor, torch.Tensor) and tensor.data_ptr() == X.ctypes.data
    assert training_source(mapped, "cpu") is mapped  # a file stays a file: read batch by batch
    float64 = X.astype(np.float64)
    assert training_source(float64, "cpu") is float64  # converted one batch at a time, never copied whole


def test_page_releaser_drops_resident_pages_of_a_file(memmap_file, monkeypatch):
    _, mapped = memmap_file
    calls = []
    monkeypatch.setattr(_engine, "RELEASE_EVERY_BYTES", 1000)
    monkeypatch.setattr(_engine, "_shared_resident_bytes", lambda: None)  # where memory cannot be measured: bytes read
    releaser = PageReleaser(mapped)
    monkeypatch.setattr(releaser, "release", lambda: calls.append(True))
    releaser.note(600)
    assert not calls
    releaser.note(600)
    assert calls
    # copy-on-write maps and ordinary arrays are never advised (their pages may hold private data)
    assert PageReleaser(np.zeros(3))._mapping is None
    assert PageReleaser(np.memmap(mapped.filename, dtype=np.float32, mode="c", shape=mapped.shape))._mapping is None
    assert isinstance(PageReleaser(mapped[10:20])._mapping, mmap.mmap)


def _resident_file_bytes() -> int:
    """File-backed resident bytes of this process (``RssFile`` in /proc/self/status)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("RssFile:"))


def _growth_over_a_shuffled_pass(mapped) -> list[int]:
    generator = torch.Generator().manual_seed(0)
    batches = RowBatches(RowData(mapped, np.arange(len(mapped))), batch_size=16, shuffle=True, generator=generator)
    before, growth = _resident_file_bytes(), []
    for batch, _ in itertools.islice(batches, 400):
        assert batch.shape == (16, 256)
        growth.append(_resident_file_bytes() - before)
    return growth


@pytest.mark.skipif(not hasattr(mmap, "MADV_DONTNEED") or not os.path.exists("/proc/self/statm"), reason="Linux")
def test_shuffled_batches_keep_few_pages_of_a_file_resident(tmp_path, monkeypatch):
    # One scattered row can map far more than its own bytes (a fault-around window, a large folio):
    # the releaser must follow the resident memory, not the bytes read.
    path = tmp_path / "rows.f32"
    np.random.default_rng(0).random((16384, 256), dtype=np.float32).tofile(path)  # 16 MiB of 1 KiB rows
    monkeypatch.setattr(_engine, "RELEASE_EVERY_BYTES", 2**40)  # control: never released
    unreleased = _growth_over_a_shuffled_pass(np.memmap(path, dtype=np.float32, mode="r", shape=(16384, 256)))
    assert unreleased[-1] > 8 * 2**20  # 400 x 16 scattered rows map most of the file
    monkeypatch.setattr(_engine, "RELEASE_EVERY_BYTES", 2 * 2**20)
    released = _growth_over_a_shuffled_pass(np.memmap(path, dtype=np.float32, mode="r", shape=(16384, 256)))
    assert max(released) < 6 * 2**20


def test_map_rows_pads_to_fixed_blocks_and_returns_float64():
    X = np.arange(10.0).reshape(5, 2)
    shapes = []

    def fn(x):
        shapes.append(tuple(x.shape))
        return x.sum(-1), x * 2

    total, doubled = map_rows(fn, X, block=4, device="cpu")
    assert shapes == [(4, 2), (4, 2)]  # the last block padded to 4 rows
    np.testing.assert_array_equal(total, X.sum(1))
    np.testing.assert_array_equal(doubled, 2 * X)
    assert total.dtype == np.float64
    subset = map_rows(lambda x: x[:, 0], X, block=3, device="cpu", rows=np.array([4, 1]))
    np.testing.assert_array_equal(subset, [8.0, 2.0])


def test_fixed_blocks_keep_a_row_independent_of_the_others_up_to_float32_rounding():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
    X = np.random.default_rng(0).normal(size=(40, 16))

    def fn(x):
        return net(x.float())

    full = map_rows(fn, X, block=32, device="cpu")
    # Same block shape, so the same kernels; a row's position inside the block can still move a
    # float32 result by an ulp on some CPUs (MKL's edge tiles on AMD), hence a tolerance, not equality.
    np.testing.assert_allclose(map_rows(fn, X[7:8], block=32, device="cpu")[0], full[7], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(map_rows(fn, X[::-1], block=32, device="cpu")[::-1], full, rtol=1e-6, atol=1e-6)


def test_row_cost_grows_with_the_work_per_row():
    small, large = torch.nn.Linear(8, 16), torch.nn.Linear(8, 1024)
    example = torch.zeros(4, 8)
    cheap, costly = measure_row_cost(small, example), measure_row_cost(large, example)
    assert cheap.flops == pytest.approx(2 * 8 * 16) and costly.flops == pytest.approx(2 * 8 * 1024)
    assert costly.bytes > cheap.bytes >= 8 * 4


def test_block_rows_balance_padding_against_fixed_costs():
    def rows(**cost):
        return block_rows(RowCost(**{"bytes": 1e3, "flops": 1e6, "ops": 10, **cost}), "cpu")

    assert rows(flops=1.0) == _engine.MAX_BLOCK_ROWS["cpu"]  # trivial rows: as many as allowed
    assert rows(flops=1e12) == _engine.MIN_BLOCK_ROWS  # very costly rows: the smallest block
    assert rows(ops=1e5) > 4 * rows(ops=10)  # an iterative search has fixed costs to amortize
    with config_context(working_memory=4):
        assert block_rows(RowCost(bytes=2**20, flops=1.0), "cpu") == 4  # 1 MiB rows in 4 MiB
        assert block_rows(RowCost(bytes=2**20, flops=1.0), "cuda") == 4
    with config_context(working_memory=1024):  # CPU blocks stay cache-sized
        assert block_rows(RowCost(bytes=2**20, flops=1.0), "cpu") == _engine.CPU_BLOCK_MIB
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a row above the cache-sized cap but within working_memory: no warning
            assert block_rows(RowCost(bytes=20 * 2**20, flops=1.0), "cpu") == 1
    with config_context(working_memory=4), pytest.warns(UserWarning, match="working_memory"):
        block_rows(RowCost(bytes=20 * 2**20, flops=1.0), "cpu")  # the user's own budget is too small: say so
    # A posterior search over a large latent space: megabytes and thousands of operations per row. One-row
    # blocks would pay the operations per row; the cache-sized cap gives way, working_memory still bounds it.
    search = RowCost(bytes=12e6, flops=1.75e9, ops=1.4e5)
    fixed_seconds = _engine.OVERHEAD_FACTOR * search.ops * _engine.OP_SECONDS["cpu"]
    with config_context(working_memory=1024):
        block = block_rows(search, "cpu")
        assert block > 1 and block * search.flops / _engine.FLOP_RATE["cpu"] >= fixed_seconds
        assert block * search.bytes <= 1024 * 2**20
    with config_context(working_memory=48):
        assert block_rows(search, "cpu") == 4  # 48 MiB / 12 MB


def test_threads_follow_the_work_and_are_restored(monkeypatch):
    monkeypatch.setattr(_engine, "busy_other_threads", lambda: 0)  # a quiet machine, whatever runs beside the tests
    before = torch.get_num_threads()
    with torch_threads(choose_threads(None, 1e3)):
        assert torch.get_num_threads() == 1  # tiny work: one thread
        assert _engine.thread_budget() == min(before, _engine.cpu_count())  # the caller's budget, not ours
    assert torch.get_num_threads() == before
    assert choose_threads(None, 1e15) == min(before, _engine.cpu_count())
    assert choose_threads(3, 1.0) == 3
    assert choose_threads(-1, 1.0) == _engine.cpu_count()


def test_automatic_threads_leave_the_cores_other_processes_keep_busy(monkeypatch):
    monkeypatch.setattr(_engine, "cpu_count", lambda: 4)
    monkeypatch.setattr(_engine, "thread_budget", lambda: 4)
    for busy, expected in [(0, 4), (1, 3), (3, 1), (9, 1)]:
        monkeypatch.setattr(_engine, "busy_other_threads", lambda busy=busy: busy)
        assert choose_threads(None, 1e15) == expected
        assert choose_threads(2, 1e15) == 2  # an explicit setting is the user's


def test_busy_other_threads_counts_a_process_that_keeps_a_core_busy():
    if not os.path.exists("/proc/loadavg"):
        pytest.skip("needs Linux's /proc/loadavg")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # started and spinning
        assert max(_engine.busy_other_threads() for _ in range(20)) >= 1
    finally:
        spinner.kill()
        spinner.wait()


def test_scoring_a_pickled_model_in_a_fresh_process_never_imports_dynamo(tmp_path):
    # torch._dynamo takes about a second to import; only an optimizer needs it (torch's own decorators), so a
    # process that loads a fitted model and scores with it (a Dask worker, a service) must not pay for it.
    X = np.random.default_rng(0).normal(size=(60, 4))
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(small(PAE).fit(X)))
    child = (
        "import pickle, sys, numpy as np\n"
        f"model = pickle.loads(open({str(tmp_path / 'model.pkl')!r}, 'rb').read())\n"
        "X = np.random.default_rng(1).normal(size=(300, 4))\n"
        "model.score_samples(X); model.transform(X); model.reconstruct(X); model.sample(5, random_state=0)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    checkout = str(Path(skprobae.__file__).parents[1])  # the child imports this skprobae, not an installed one
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": checkout}
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"


@pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc" or any(k.startswith(("MALLOC_", "GLIBC_TUNABLES")) for k in os.environ),
    reason="the page reuse it checks is that of glibc malloc's default settings",
)
@pytest.mark.parametrize("malloc", ["default", "pinned threshold"])
def test_repeated_scoring_reuses_warm_pages(malloc):
    # The primed heap raises glibc's dynamic mmap threshold, so a second scoring call reuses the pages of the first:
    # 0-1100 minor faults here (glibc still trims the heap's top now and then). Pinning the threshold at its 128 KiB
    # start (what the priming lifts) maps every block's megabyte temporaries afresh, ~61k faults: the control shows
    # the count can fail. Unprimed with glibc's defaults the count varies from 0 to 23k from run to run (glibc raises
    # the threshold itself after the first large free), too widely for a control.
    child = (
        "import resource, numpy as np\n"
        "from skprobae import VAE\n"
        "X = np.random.default_rng(0).normal(size=(300, 36))\n"
        "model = VAE(hidden_layer_sizes=(128,), max_epochs=1, random_state=0).fit(X)\n"
        "model.score_samples(X)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "model.score_samples(X)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    checkout = str(Path(skprobae.__file__).parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": checkout}
    if malloc == "pinned threshold":
        env["GLIBC_TUNABLES"] = "glibc.malloc.mmap_threshold=131072"
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    faults = int(run.stdout.split()[-1])
    assert (faults < 3000) == (malloc == "default"), faults
