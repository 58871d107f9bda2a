"""The engine under every estimator: precision, the data path, one chunking policy and threads.

Precision
    Networks train in float32 (optionally under bf16/fp16 autocast) and
    infer in the estimator's ``inference_dtype`` (float32 by default);
    log-density reductions run in float64 and every public output is a
    float64 numpy array.

Data path
    The training set stays where it is: a float32 array (or a
    ``np.memmap``) is read batch by batch (:class:`RowBatches`), batches move
    to the device, and data is cached on a GPU only when it fits
    :data:`DEVICE_CACHE_FRACTION` of its free memory. Pages of a memory-mapped
    file are handed back to the OS as the reads go (:class:`PageReleaser`),
    so a fit on a file larger than memory keeps a small resident set.

Chunking
    One policy for every inference path (:func:`block_rows`): the rows of a
    block follow from the bytes a row needs, measured on the computation
    itself (:func:`measure_row_cost`), and scikit-learn's ``working_memory``.
    Every block has the same number of rows (the last one is padded), so a
    row takes the same kernel path whatever else is in the call and outputs
    do not depend on batch composition.

Threads
    torch's intra-op threads follow the work per call (:func:`torch_threads`):
    small models run on one thread, which keeps them fast on a shared
    machine; the setting is restored after every skprobae call.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from joblib import cpu_count
from sklearn.utils._chunking import get_chunk_n_rows
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

INFERENCE_DTYPES = {"float32": torch.float32, "float64": torch.float64}
"""Names accepted by ``inference_dtype``."""

MIXED_PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16}
"""Names accepted by ``mixed_precision`` (training under ``torch.autocast``)."""

CPU_BLOCK_MIB = 16
"""Upper bound of a block's working memory on the CPU (MiB), below ``working_memory``: a few L2 caches' worth.

Measured on one core (2 MiB L2): VAE scores on tables 10-13% faster than with 8 MiB (fewer blocks, so fewer
dispatched operations); the other models and conv nets within 3%. Smaller blocks fit the cache better but
multiply the fixed costs."""

MAX_BLOCK_ROWS = {"cpu": 4096, "cuda": 65536}
"""Rows per block at most."""

MIN_BLOCK_ROWS = 64
"""Rows per block at least (when memory allows): small blocks of costly rows still fill the kernels."""

OP_SECONDS = {"cpu": 3e-6, "cuda": 1e-5}
"""Fixed cost of one dispatched operation (Python, dispatcher, kernel launch), in seconds (CPU: measured here)."""

FLOP_RATE = {"cpu": 5e10, "cuda": 1e13}
"""Floating-point operations per second of matrix products and convolutions, roughly (CPU: measured here)."""

BYTE_RATE = {"cpu": 6e9, "cuda": 1e12}
"""Bytes per second the other (memory-bound) operations write, roughly (CPU: measured here)."""

BLOCK_SECONDS = {"cpu": 0.02, "cuda": 0.002}
"""Arithmetic a block takes at least, so that per-block costs (transfers, Python) stay small."""

OVERHEAD_FACTOR = 2
"""A block's arithmetic takes at least this many times the fixed cost of its operations."""

DEVICE_CACHE_FRACTION = 0.25
"""Training data is copied to a GPU only when it takes at most this share of its free memory."""

RELEASE_EVERY_BYTES = 64 * 2**20
"""Growth of the file-backed resident memory (or bytes read, where it cannot be measured) between two hand-backs of
a memory-mapped file's pages."""

FAULT_AROUND_BYTES = 64 * 2**10
"""Bytes a read of one scattered row maps at least: Linux maps up to 64 KiB of cached pages around a page fault."""

HEAP_PRIME_BYTES = 16 * 2**20
"""Size of the buffer :func:`prime_heap` frees once: above any one temporary of a CPU block, and below glibc's cap
on its dynamic mmap threshold (32 MiB on 64-bit systems; freeing a larger mapping leaves the threshold as it is)."""

FLOPS_PER_THREAD = 50e6
"""Work per call (FLOPs) that earns one more intra-op thread: below it, threads cost more than they give."""


# ------------------------------------------------------------------- cost
@dataclass(frozen=True)
class RowCost:
    """What a computation costs: per row, peak bytes of temporaries and FLOPs; per call, dispatched operations."""

    bytes: float
    flops: float
    ops: float = 0.0
    moved: float = 0.0  # bytes the operations write per row (all of them, not the peak)


class _CostCounter(TorchDispatchMode):
    """Count dispatched operations and their FLOPs (torch's formulas); track the live and peak bytes they allocate."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps a mode's __torch_dispatch__ in dynamo's disable unless this says no; that wrapper imports
        # torch._dynamo (~1 s) on the first fit. Nothing here is ever compiled.
        return False

    def __init__(self):
        super().__init__()
        self.live = self.peak = self.ops = self.flops = self.moved = 0

    def _free(self, n_bytes: int) -> None:
        self.live -= n_bytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.ops += 1
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, Tensor) and not tensor._is_view():
                n_bytes = tensor.untyped_storage().nbytes()
                self.moved += n_bytes
                self.live += n_bytes
                self.peak = max(self.peak, self.live)
                weakref.finalize(tensor, self._free, n_bytes)
        return out


def _count(fn: Callable[[Tensor], object], x: Tensor) -> _CostCounter:
    counter = _CostCounter()
    with torch.no_grad(), counter:
        fn(x)
    return counter


def measure_row_cost(
    fn: Callable[[Tensor], object], example: Tensor, steps: tuple[Callable[[int], Callable], int] | None = None
) -> RowCost:
    """Bytes and FLOPs per row of ``fn`` and its count of dispatched operations, from two runs on 2 and 4 rows.

    The difference between the runs removes what does not grow with the rows
    (weights, constants); the input's own bytes are added. ``fn`` runs
    without gradients (it may enable them inside, as a MAP search does).
    ``steps = (make, n)`` describes an iterative computation, ``make(k)``
    being ``fn`` with ``k`` steps: the runs are ``make(1)`` on 2 rows and
    ``make(2)`` on 4, and the costs of a step (FLOPs per row, operations) are
    extrapolated to ``n`` steps; memory does not grow with the steps.
    """
    if steps is None or steps[1] <= 1:
        small, large = _count(fn, example[:2]), _count(fn, example[:4])
        flops, moved, ops = (large.flops - small.flops) / 2, (large.moved - small.moved) / 2, small.ops
    else:
        make, n_steps = steps
        small, large = _count(make(1), example[:2]), _count(make(2), example[:4])

        def extrapolate(one: float, two: float) -> float:  # per row, one = 2 (base + step), two = 4 (base + 2 step)
            return one / 2 + (two / 4 - one / 2) * (n_steps - 1)

        flops, moved = extrapolate(small.flops, large.flops), extrapolate(small.moved, large.moved)
        ops = small.ops + (large.ops - small.ops) * (n_steps - 1)
    row_bytes = max((large.peak - small.peak) / 2, 0.0) + example[0].nelement() * example.element_size()
    return RowCost(bytes=max(row_bytes, 1.0), flops=max(flops, 0.0), ops=float(ops), moved=max(moved, 0.0))


def block_rows(cost: RowCost, device: torch.device | str) -> int:
    """Rows per block: few enough that padding a short call costs little, enough to amortize fixed costs.

    Every call is evaluated in blocks of exactly this many rows (a shorter
    call is padded). The arithmetic of a block (FLOPs at :data:`FLOP_RATE`,
    bytes written at :data:`BYTE_RATE`) takes the larger of
    :data:`BLOCK_SECONDS` and :data:`OVERHEAD_FACTOR` times the fixed cost of
    its operations (:data:`OP_SECONDS` each; an iterative search has many);
    so a one-row call costs at most about three times
    its unavoidable fixed cost, and a long call runs at two thirds of the
    arithmetic speed or better. Bounds: at least :data:`MIN_BLOCK_ROWS`; at
    most :data:`MAX_BLOCK_ROWS` and scikit-learn's ``working_memory`` over
    the bytes a row needs. On a CPU, blocks are also kept within
    :data:`CPU_BLOCK_MIB` (cache-sized), except where so few rows would
    leave the fixed costs larger than the arithmetic: an iterative search
    whose row needs megabytes (a posterior over a large latent space) would
    otherwise run one row at a time, paying its thousands of operations per
    row.
    """
    kind = "cpu" if torch.device(device).type == "cpu" else "cuda"
    by_memory = get_chunk_n_rows(cost.bytes, max_n_rows=MAX_BLOCK_ROWS[kind])  # scikit-learn's working_memory
    fixed_seconds = OVERHEAD_FACTOR * cost.ops * OP_SECONDS[kind]
    row_seconds = max(cost.flops / FLOP_RATE[kind] + cost.moved / BYTE_RATE[kind], 1e-12)
    block = min(by_memory, max(MIN_BLOCK_ROWS, math.ceil(max(BLOCK_SECONDS[kind], fixed_seconds) / row_seconds)))
    if kind == "cpu":
        by_cache = int(CPU_BLOCK_MIB * 2**20 // cost.bytes)
        block = min(block, max(by_cache, math.ceil(fixed_seconds / row_seconds), 1))
    return int(block)


# ---------------------------------------------------------------- threads
_thread_state = threading.local()


def _dask_worker_share() -> int | None:
    """Threads one task of a dask worker may use; None outside a task of a ``distributed`` worker.

    A worker process's share of the cores is its ``OMP_NUM_THREADS`` (which the nanny sets from
    ``distributed.nanny.pre-spawn-environ``, 1 by default), else every usable core; the tasks that run at once in
    the process (the threads of every worker in it: ``LocalCluster(processes=False)`` runs several) divide it.
    """
    import os
    import sys

    distributed = sys.modules.get("distributed")
    if distributed is None:  # never imported: not a dask worker
        return None
    try:
        worker = distributed.get_worker()
    except ValueError:  # not inside a task
        return None
    try:
        workers = list(distributed.Worker._instances)
    except RuntimeError:  # a worker was created in another thread meanwhile
        workers = []
    threads = sum(w.state.nthreads for w in workers if w.status.name in ("running", "paused"))
    try:
        share = int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0])
    except ValueError:
        share = cpu_count()
    return max(1, min(share, cpu_count()) // max(threads, worker.state.nthreads, 1))


def thread_budget() -> int:
    """Threads this process may use: torch's setting outside skprobae's calls, at most the usable cores.

    In a task of a dask worker, at most the task's share of the worker's cores (:func:`_dask_worker_share`),
    so that the worker processes and threads of a host do not oversubscribe it whatever torch's setting is.
    """
    outer = getattr(_thread_state, "outer", None)
    budget = min(outer if outer is not None else torch.get_num_threads(), cpu_count())
    share = _dask_worker_share()
    return budget if share is None else min(budget, share)


def busy_other_threads() -> int:
    """Threads of other processes running right now: Linux's count of runnable threads, less the one reading it.

    0 where ``/proc/loadavg`` cannot be read. A snapshot, not an average: a
    process that keeps a core busy is always counted.
    """
    try:
        with open("/proc/loadavg") as file:
            running = int(file.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return 0
    return max(0, running - 1)


def choose_threads(n_threads: int | None, flops_per_call: float) -> int:
    """``n_threads`` if given (-1: every usable core), else one per :data:`FLOPS_PER_THREAD` of work, within budget.

    The automatic choice also leaves the cores that other processes keep busy
    (:func:`busy_other_threads`): an intra-op thread that shares a core with
    another process waits a scheduler time slice at every parallel operation,
    which made a 7.6 s demo take 87 s beside one busy process.
    """
    if n_threads is None:
        free = max(1, cpu_count() - busy_other_threads())
        return int(min(thread_budget(), free, max(1, flops_per_call // FLOPS_PER_THREAD)))
    if n_threads < 0:
        return cpu_count()
    return int(n_threads)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the body with ``n`` intra-op threads; restore the caller's setting afterwards."""
    previous = torch.get_num_threads()
    outermost = getattr(_thread_state, "outer", None) is None
    if outermost:
        _thread_state.outer = previous
    try:
        if n != previous:
            torch.set_num_threads(n)
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
        if outermost:
            _thread_state.outer = None


# ------------------------------------------------------------- host data
def _file_mapping(array: np.ndarray) -> mmap.mmap | None:
    """The ``mmap`` behind a read-only or shared memory-mapped array (whose pages may be dropped), else None."""
    node = array
    while isinstance(node, np.ndarray):
        if isinstance(node, np.memmap) and getattr(node, "mode", None) in ("r", "r+"):
            mapping = getattr(node, "_mmap", None)
            if isinstance(mapping, mmap.mmap):
                return mapping
        node = node.base
    return None


def is_memory_mapped(array) -> bool:
    """Whether ``array`` reads a file through a memory map."""
    node = array
    while isinstance(node, np.ndarray):
        if isinstance(node, np.memmap):
            return True
        node = node.base
    return isinstance(node, mmap.mmap)


def _shared_resident_bytes() -> int | None:
    """File-backed and shared resident bytes of this process (Linux ``/proc/self/statm``), or None."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[2]) * mmap.PAGESIZE
    except (OSError, IndexError, ValueError):
        return None


class PageReleaser:
    """Hand the resident pages of a memory-mapped array back to the OS as reads map them.

    A file mapping's pages count in the process's resident memory once read;
    ``madvise(MADV_DONTNEED)`` drops them from the mapping (the page cache
    keeps them, so a later read is cheap). The pages are released whenever
    the process's file-backed resident memory has grown by
    :data:`RELEASE_EVERY_BYTES` since the last release (measured on Linux,
    where one scattered row can map a whole large folio around it); where it
    cannot be measured, whenever that many bytes were read, scattered rows
    counted at :data:`FAULT_AROUND_BYTES` at least. A no-op for ordinary
    arrays and for copy-on-write mappings (whose private changes it would
    discard).
    """

    def __init__(self, array: np.ndarray):
        self._mapping = _file_mapping(array) if hasattr(mmap, "MADV_DONTNEED") else None
        self._read = 0
        self._shared_at_release = _shared_resident_bytes() if self._mapping is not None else None

    def note(self, n_bytes: int) -> None:
        """Count ``n_bytes`` read in one contiguous run."""
        if self._mapping is None:
            return
        self._read += n_bytes
        if self._shared_at_release is not None:
            due = (_shared_resident_bytes() or 0) - self._shared_at_release >= RELEASE_EVERY_BYTES
        else:
            due = self._read >= RELEASE_EVERY_BYTES
        if due:
            self.release()

    def note_rows(self, n_rows: int, row_bytes: int) -> None:
        """Count ``n_rows`` scattered rows: each maps at least :data:`FAULT_AROUND_BYTES`."""
        self.note(n_rows * max(row_bytes, FAULT_AROUND_BYTES))

    def release(self) -> None:
        if self._mapping is not None and not self._mapping.closed:
            self._mapping.madvise(mmap.MADV_DONTNEED)
            if self._shared_at_release is not None:
                self._shared_at_release = _shared_resident_bytes() or 0
        self._read = 0


def training_source(X: np.ndarray, device: torch.device | str) -> np.ndarray | Tensor:
    """Where training batches are read from.

    On a GPU, a float32 copy of ``X`` when it fits
    :data:`DEVICE_CACHE_FRACTION` of the free memory (filled block by block:
    no second host copy); on the CPU, ``X`` itself as a tensor when it is an
    in-memory, C-contiguous float32 array (no copy). Anything else stays a
    host array, read and converted one batch at a time.
    """
    device = torch.device(device)
    if device.type == "cpu":
        if X.dtype == np.float32 and X.flags.c_contiguous and not is_memory_mapped(X):
            return torch.from_numpy(X)
        return X
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else 0
    if X.shape[0] * X.shape[1] * 4 > DEVICE_CACHE_FRACTION * free:
        return X
    cached = torch.empty(X.shape, dtype=torch.float32, device=device)
    step = max(1, RELEASE_EVERY_BYTES // max(1, X.shape[1] * X.itemsize))
    pages = PageReleaser(X)
    for start in range(0, len(X), step):
        block = np.ascontiguousarray(X[start : start + step], dtype=np.float32)
        cached[start : start + step].copy_(torch.from_numpy(block))
        pages.note(block.nbytes)
    pages.release()
    return cached


class RowData(torch.utils.data.Dataset):
    """Rows ``rows`` of ``source`` (a host array or a tensor) as a dataset, without copying them.

    ``weight`` (optional, one float per row of ``source``) are the rows'
    ``sample_weight``: :class:`RowBatches` yields each batch's weights in
    skorch's ``y`` slot (None without them).
    """

    def __init__(self, source: np.ndarray | Tensor, rows: np.ndarray, weight: np.ndarray | None = None):
        self.source = source
        self.rows = np.asarray(rows, dtype=np.int64)
        self.weight = None if weight is None else torch.as_tensor(np.asarray(weight, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        return self.source[self.rows[i]]


class RowBatches:
    """Mini-batches of a :class:`RowData`, as skorch's ``iterator_train`` / ``iterator_valid``.

    Each batch holds the rows of one slice of a permutation (drawn from
    ``generator`` at every pass when ``shuffle``), read in increasing order
    (sequential reads on a memory-mapped file), converted to float32 and moved
    to ``device`` (from pinned memory, asynchronously, on a GPU). A batch is
    ``(rows, weights)``: the rows' ``sample_weight`` or None.
    """

    def __init__(
        self,
        dataset: RowData,
        batch_size: int,
        shuffle: bool = False,
        generator=None,
        device="cpu",
        rank: int = 0,
        world: int = 1,
        **_,
    ):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.device = torch.device(device)
        self.rank, self.world = rank, world
        self._pages = PageReleaser(dataset.source) if isinstance(dataset.source, np.ndarray) else None

    def __len__(self) -> int:
        n = len(self.dataset)
        full, rest = divmod(n, self.batch_size)
        return full + (rest >= self.world)

    def __iter__(self):
        """Batches of ``batch_size`` rows; with ``world`` processes, this process's ``rank``-th share of each.

        Every process draws the same permutation (the same seeded
        ``generator``), so the shares of a batch partition it; a last batch
        with fewer rows than processes is left out on all of them (each
        process must take the same number of steps).
        """
        rows, n = self.dataset.rows, len(self.dataset)
        order = torch.randperm(n, generator=self.generator).numpy() if self.shuffle else None
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            if stop - start < self.world:
                break
            index = rows[start:stop] if order is None else rows[order[start:stop]]
            if self.world > 1:
                index = np.array_split(index, self.world)[self.rank]
            index = np.sort(index) if order is not None else index
            yield self._read(index), self._weights(index)

    def _weights(self, index: np.ndarray) -> Tensor | None:
        weight = self.dataset.weight
        return None if weight is None else weight[torch.from_numpy(index)].to(self.device)

    def _read(self, index: np.ndarray) -> Tensor:
        source = self.dataset.source
        if isinstance(source, Tensor):
            return source[torch.from_numpy(index).to(source.device)]
        batch = torch.from_numpy(np.ascontiguousarray(source[index], dtype=np.float32))
        self._pages.note_rows(len(index), source.shape[1] * source.itemsize)
        if self.device.type == "cuda":
            return batch.pin_memory().to(self.device, non_blocking=True)
        return batch.to(self.device)


# --------------------------------------------------------------- inference
def iter_blocks(X: np.ndarray, block: int, rows: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Consecutive blocks of ``X`` (or of its rows ``rows``) as host arrays, handing file pages back as it goes."""
    pages = PageReleaser(X)
    n = len(X) if rows is None else len(rows)
    for start in range(0, n, block):
        chunk = X[start : start + block] if rows is None else X[rows[start : start + block]]
        yield chunk
        if rows is None:
            pages.note(chunk.nbytes)
        else:
            pages.note_rows(len(chunk), X.shape[1] * X.itemsize)
    pages.release()


def _to_float64(out) -> tuple[np.ndarray, ...]:
    parts = out if isinstance(out, tuple) else (out,)
    return tuple(part.detach().to("cpu", torch.float64).numpy() for part in parts)


_heap_primed = False


def prime_heap() -> None:
    """Allocate and free one buffer of :data:`HEAP_PRIME_BYTES`, once per process, so blocks reuse warm pages.

    glibc's malloc serves requests above its mmap threshold (128 KiB at
    start) with fresh mappings, and gives back the top of its heap beyond
    twice that threshold whenever it is freed: every block's temporaries
    (megabytes) were then new pages, faulted in one by one (measured: 16k
    minor faults and 15% of a VAE ``score_samples`` call on 1000 rows).
    Freeing one mapped buffer larger than the threshold raises both limits
    to its size (glibc's own dynamic threshold, capped at 32 MiB), after
    which blocks reuse the heap's pages. The buffer is never touched, so it
    costs one map and unmap; other allocators are unaffected.
    """
    global _heap_primed
    if not _heap_primed:
        torch.empty(HEAP_PRIME_BYTES, dtype=torch.uint8)  # freed at once
        _heap_primed = True


def map_rows(
    fn: Callable[[Tensor], Tensor | tuple[Tensor, ...]],
    X: np.ndarray,
    *,
    block: int,
    device: torch.device | str,
    rows: np.ndarray | None = None,
) -> np.ndarray | tuple[np.ndarray, ...]:
    """``fn`` over blocks of exactly ``block`` rows of ``X`` (the last one padded with copies of its first row).

    ``fn`` receives a tensor on ``device`` in ``X``'s dtype and returns a
    tensor (or a tuple) whose leading dimension is the rows; results are
    float64 numpy arrays, written into arrays allocated once. It runs
    without gradients. ``rows`` restricts the pass to those rows of ``X``.
    """
    device = torch.device(device)
    if device.type == "cpu":
        prime_heap()
    n = len(X) if rows is None else len(rows)
    results: tuple[np.ndarray, ...] | None = None
    start = 0
    with torch.no_grad():
        for chunk in iter_blocks(X, block, rows):
            m = len(chunk)
            if m < block:
                chunk = np.concatenate([chunk, np.broadcast_to(chunk[:1], (block - m, *chunk.shape[1:]))])
            # A read-only chunk (a memmap opened with mode="r") is copied: a custom network that writes into
            # its input in place must not reach the user's file (or crash on a read-only page).
            x = torch.from_numpy(np.ascontiguousarray(chunk) if chunk.flags.writeable else np.array(chunk))
            x = x.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else x.to(device)
            parts = _to_float64(fn(x))
            if results is None:
                results = tuple(np.empty((n, *part.shape[1:])) for part in parts)
            for result, part in zip(results, parts, strict=True):
                result[start : start + m] = part[:m]
            start += m
    if results is None:  # no rows
        return np.empty((0,))
    return results if len(results) > 1 else results[0]


def network_dtype(module: torch.nn.Module) -> torch.dtype:
    """The floating-point dtype of a module's parameters (float32 for a module without any)."""
    for parameter in module.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32
