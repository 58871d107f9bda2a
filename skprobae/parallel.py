"""Scoring data larger than memory, chunk by chunk, with dask (the ``scale`` extra: ``pip install "skprobae[scale]"``).

:func:`map_blocks` evaluates a fitted estimator's ``score_samples``,
``decision_function``, ``predict``, ``transform``, ``reconstruct`` or
``inverse_transform`` over a dask array, one chunk of whole rows per task,
lazily: nothing is read or computed until the result is. Every skprobae call
runs its rows in fixed-size padded blocks, so a chunk's rows get the values
an in-memory call gives them (to float rounding) whatever the chunking.

dask-ml's ``ParallelPostFit`` does not cover these models: it wraps
``transform``, ``predict``, ``predict_proba`` and ``score`` but not
``score_samples`` or ``decision_function`` (the outlier scores), nor
``reconstruct`` or ``inverse_transform``; its dask ``transform`` keeps the
input's column chunks, so the declared shape of the codes is
``(n_samples, n_features)`` instead of ``(n_samples, n_components)``; its
``score`` of an unsupervised model passes the whole dask array to the
estimator's ``score``, which reads it into memory.

Grid and randomized searches need nothing from this module: an estimator (or a
``Pipeline`` around one) runs in ``GridSearchCV`` on a ``distributed`` cluster
through joblib's dask backend (see README.md, "Scaling out").
"""

from __future__ import annotations

import importlib.util
import re
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

__all__ = ["from_memmap", "map_blocks"]

if TYPE_CHECKING:
    import dask.array

ROW_METHODS = {"score_samples": np.float64, "decision_function": np.float64, "predict": np.int64}
"""Methods with one value per row: their output dtype."""

TABLE_METHODS = ("transform", "reconstruct", "inverse_transform")
"""Methods with one float64 row per row."""


def _import_dask(function: str):
    """``dask`` and ``dask.array``, or an ImportError naming the extra that installs them."""
    try:
        import dask
        import dask.array as da
    except ImportError as error:
        raise ImportError(
            f'skprobae.parallel.{function} needs dask: install the "scale" extra, pip install "skprobae[scale]".'
        ) from error
    return dask, da


def _block(block: np.ndarray, estimator: Any, method: str, out_dtype: type, width: int | None, kwargs: dict):
    """``estimator.method`` on one chunk of rows, checked against the declared shape, in the declared dtype."""
    shape = (len(block),) if width is None else (len(block), width)
    if len(block) == 0:  # an empty chunk (after a filter): estimators refuse zero rows
        return np.empty(shape, dtype=out_dtype)
    out = np.asarray(getattr(estimator, method)(block, **kwargs), dtype=out_dtype)
    if out.shape != shape:
        raise ValueError(f"{type(estimator).__name__}.{method} returned shape {out.shape} for a chunk of {shape}.")
    return out


def _output_width(estimator: Any, method: str) -> int | None:
    """Columns of ``method``'s output (None: one value per row)."""
    if method in ROW_METHODS:
        return None
    if method == "transform":
        return len(estimator.get_feature_names_out())
    return int(estimator.n_features_in_)


def _input_width(estimator: Any, method: str) -> int | None:
    """Columns ``method`` takes (None: unknown, left to the estimator)."""
    try:
        return _output_width(estimator, "transform") if method == "inverse_transform" else int(estimator.n_features_in_)
    except (AttributeError, TypeError, ValueError):
        return None


def map_blocks(estimator: Any, X: Any, method: str = "score_samples", **kwargs: Any) -> dask.array.Array:
    """``estimator.method(X)`` as a lazy dask array, computed one chunk of rows at a time.

    ``X`` is rechunked to whole rows (``X.rechunk({1: -1})``: a chunk holds
    every column of its rows), then each chunk is one call of the fitted
    estimator; the result has the row chunks of ``X``. With a
    ``distributed.Client`` open, ``.compute()`` runs the chunks on the
    cluster (the fitted estimator travels in the task graph).

    Parameters
    ----------
    estimator : fitted estimator
        A skprobae estimator, ``PAEImputer`` (``transform``), or a
        ``Pipeline`` ending in one.
    X : dask array of shape (n_samples, n_features)
        Any 2-D array-like is converted with ``dask.array.asarray``; a
        memory-mapped file is read chunk by chunk:
        ``dask.array.from_array(np.load(path, mmap_mode="r"), chunks=(100_000, -1))``.
        For ``inverse_transform``, codes of shape (n_samples, n_components).
    method : {"score_samples", "decision_function", "predict", "transform", \
"reconstruct", "inverse_transform"}, default="score_samples"
    **kwargs
        Passed to the method (one output array per call: ``return_std=True`` is refused).

    Returns
    -------
    dask.array.Array
        Of shape (n_samples,) for ``score_samples`` and ``decision_function``
        (float64) and ``predict`` (int64, +1 / -1); (n_samples, n_components)
        for ``transform``; (n_samples, n_features) for ``reconstruct`` and
        ``inverse_transform`` and ``PAEImputer.transform`` (float64).

    Raises
    ------
    ImportError
        Without dask (``pip install "skprobae[scale]"``).
    ValueError
        For an unknown method, ``return_std=True`` or an ``X`` that is not 2-D
        or has the wrong number of columns.

    Notes
    -----
    Equal to the in-memory call to float rounding (rtol 1e-6 in the tests): a
    row is evaluated in a block of the same size, padded, in both. Each chunk's
    call picks its torch threads as any call does; in a ``distributed``
    worker they come from the worker's share of the cores. dask's default
    local scheduler runs several chunks at once, each call within this
    process's budget (torch's setting): for models that take several threads
    per call, ``dask.config.set(scheduler="synchronous")`` runs one chunk at a
    time. On a cluster, read the rows from files the workers open
    (``dask.array.from_npy_stack(folder, mmap_mode="r")``): a memory map in
    the task graph is serialized whole.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from skprobae import ProbabilisticAutoencoder
    >>> from skprobae.parallel import map_blocks
    >>> X = np.random.default_rng(0).normal(size=(1000, 5))
    >>> model = ProbabilisticAutoencoder(n_components=2, max_epochs=5, random_state=0).fit(X)
    >>> scores = map_blocks(model, da.from_array(X, chunks=(250, 5)), "score_samples")  # lazy: nothing ran yet
    >>> scores.shape, scores.numblocks
    ((1000,), (4,))
    >>> bool(np.allclose(scores.compute(), model.score_samples(X), rtol=1e-6))
    True
    >>> map_blocks(model, da.from_array(X, chunks=(250, 5)), "transform").shape
    (1000, 2)
    """
    _, da = _import_dask("map_blocks")
    if method not in ROW_METHODS and method not in TABLE_METHODS:
        raise ValueError(f"method must be one of {sorted([*ROW_METHODS, *TABLE_METHODS])}, got {method!r}.")
    if not hasattr(estimator, method):
        raise ValueError(f"{type(estimator).__name__} has no method {method!r}.")
    if kwargs.get("return_std"):
        raise ValueError("return_std=True gives two arrays per call; map_blocks maps methods with one output.")
    check_is_fitted(estimator)
    X = da.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}.")
    expected = _input_width(estimator, method)
    if expected is not None and X.shape[1] != expected:
        raise ValueError(f"X has {X.shape[1]} columns; {type(estimator).__name__}.{method} expects {expected}.")
    X = X.rechunk({1: -1})
    dtype = ROW_METHODS.get(method, np.float64)
    width = _output_width(estimator, method)
    layout = {"drop_axis": 1, "chunks": (X.chunks[0],)} if width is None else {"chunks": (X.chunks[0], (width,))}
    return X.map_blocks(
        _block,
        estimator=estimator,
        method=method,
        out_dtype=dtype,
        width=width,
        kwargs=kwargs,
        dtype=dtype,
        meta=np.empty((0,) * (1 if width is None else 2), dtype=dtype),
        **layout,
    )


def _read_rows(path: str, dtype: str, shape: tuple[int, ...], offset: int, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of the memory-mapped file, as a view of the file (its pages are the OS's to drop)."""
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset)[start:stop]


def from_memmap(X: np.memmap, chunk_rows: int) -> dask.array.Array:
    """A dask array over a memory-mapped file, ``chunk_rows`` whole rows per chunk, each read by its own task.

    ``dask.array.from_array(memmap)`` reads and copies the whole file into
    memory when the graph is built (dask 2026.8: a 1 GB memmap added 1 GB of
    anonymous memory before any compute); here each task opens the file
    itself and reads only its rows, so peak memory stays at a few chunks and
    the graph is small enough to send to a cluster whose workers see the same
    file.

    Parameters
    ----------
    X : np.memmap
        A 2-D C-ordered memory map (``np.memmap`` or ``np.load(path, mmap_mode="r")``).
    chunk_rows : int
        Rows per chunk.

    Returns
    -------
    dask.array.Array of X's shape and dtype

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> path = tempfile.mkdtemp() + "/rows.f32"
    >>> np.arange(12, dtype=np.float32).reshape(6, 2).tofile(path)
    >>> from skprobae.parallel import from_memmap
    >>> rows = from_memmap(np.memmap(path, dtype=np.float32, mode="r", shape=(6, 2)), 4)
    >>> rows.chunks, float(rows.sum().compute())
    (((4, 2), (2,)), 66.0)
    """
    dask, da = _import_dask("from_memmap")
    mapping = X  # the memmap that holds the file's mapping: a view's own offset attribute is its parent's
    while isinstance(mapping, np.ndarray) and isinstance(mapping.base, np.ndarray):
        mapping = mapping.base
    if not isinstance(mapping, np.memmap) or mapping.filename is None or X.ndim != 2 or not X.flags.c_contiguous:
        raise ValueError("from_memmap needs a 2-D, C-ordered view of an np.memmap of a file.")
    if not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer; got {chunk_rows!r}.")
    offset = mapping.offset + (X.__array_interface__["data"][0] - mapping.__array_interface__["data"][0])
    read = dask.delayed(_read_rows, pure=True)
    blocks = [
        da.from_delayed(
            read(mapping.filename, X.dtype.str, X.shape, offset, start, min(start + chunk_rows, len(X))),
            shape=(min(chunk_rows, len(X) - start), X.shape[1]),
            dtype=X.dtype,
        )
        for start in range(0, len(X), chunk_rows)
    ]
    return da.concatenate(blocks, axis=0)


if importlib.util.find_spec("dask") is None:  # a core install: the Examples cannot run
    for _function in (map_blocks, from_memmap):
        _function.__doc__ = re.sub(r"^(\s*>>> .*)$", r"\1  # doctest: +SKIP", _function.__doc__, flags=re.MULTILINE)
