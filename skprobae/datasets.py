"""Loaders for the benchmark data sets (MNIST, Fashion-MNIST, ODDS tables).

The library never assumes where these files live: pass ``data_dir`` or set the
``SKPROBAE_DATA`` environment variable to the folder holding ``mnist.npz``,
``fashion_mnist.npz`` and ``odds/``. Each ``.npz`` holds ``X``, ``y`` and, for
the image sets, ``split`` (0 = train, 1 = test).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["DATA_ENV", "data_home", "load_images", "load_odds", "load_penguins"]

DATA_ENV = "SKPROBAE_DATA"

_IMAGE_SETS = {"mnist": "mnist.npz", "fashion_mnist": "fashion_mnist.npz"}


def data_home(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: ``data_dir``, else ``$SKPROBAE_DATA``.

    Parameters
    ----------
    data_dir : str, path-like or None, default=None
        The folder; None reads the ``SKPROBAE_DATA`` environment variable.

    Returns
    -------
    path : pathlib.Path
        The existing folder.

    Raises
    ------
    FileNotFoundError
        If neither is given or the folder does not exist.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from skprobae.datasets import data_home
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     data_home(folder) == Path(folder)
    True
    >>> data_home("/no/such/folder")
    Traceback (most recent call last):
        ...
    FileNotFoundError: Data folder '/no/such/folder' does not exist.
    """
    path = data_dir if data_dir is not None else os.environ.get(DATA_ENV)
    if path is None:
        raise FileNotFoundError(f"No data folder: pass data_dir or set the {DATA_ENV} environment variable.")
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"Data folder {str(path)!r} does not exist.")
    return path


def load_images(
    name: str, split: str = "train", data_dir: str | os.PathLike | None = None, scale: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST or Fashion-MNIST rows (28 x 28 images flattened to 784 columns).

    Parameters
    ----------
    name : {"mnist", "fashion_mnist"}
        Which data set: read from ``mnist.npz`` or ``fashion_mnist.npz``.
    split : {"train", "test", "all"}, default="train"
        The rows whose ``split`` entry is 0 (train) or 1 (test), or all rows.
    data_dir : path-like, optional
        Folder with the ``.npz`` files; default ``$SKPROBAE_DATA``.
    scale : bool, default=True
        Return float32 pixels / 255 instead of raw uint8.

    Returns
    -------
    X : ndarray of shape (n_samples, 784)
        The pixels, float32 in [0, 1] if ``scale`` else as stored.
    y : ndarray of shape (n_samples,)
        The class labels.

    Raises
    ------
    ValueError
        If ``name`` or ``split`` is not one of the above.
    FileNotFoundError
        If the data folder (see :func:`data_home`) or the file is missing.

    Examples
    --------
    A tiny stand-in file, written to a temporary folder:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from skprobae.datasets import load_images
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     np.savez(
    ...         Path(folder) / "mnist.npz",
    ...         X=np.full((3, 784), 255, dtype=np.uint8),
    ...         y=np.array([7, 2, 1]),
    ...         split=np.array([0, 0, 1]),
    ...     )
    ...     X, y = load_images("mnist", split="train", data_dir=folder)
    >>> X.shape, X.dtype, float(X.max()), y.tolist()
    ((2, 784), dtype('float32'), 1.0, [7, 2])
    """
    if name not in _IMAGE_SETS:
        raise ValueError(f"Unknown image set {name!r}; choose from {sorted(_IMAGE_SETS)}.")
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}.")
    with np.load(data_home(data_dir) / _IMAGE_SETS[name]) as data:
        X, y, which = data["X"], data["y"], data["split"]
    if split != "all":
        keep = which == (0 if split == "train" else 1)
        X, y = X[keep], y[keep]
    return (X.astype(np.float32) / 255.0 if scale else X), y


def load_odds(name: str, data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load one ODDS outlier-detection table: features and labels (1 = anomaly).

    Parameters
    ----------
    name : str
        The table's name: the file ``odds/<name>.npz`` of the data folder (e.g. ``"thyroid"``).
    data_dir : str, path-like or None, default=None
        The data folder (holding ``odds/``); None reads ``$SKPROBAE_DATA``.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        The features, as stored.
    y : ndarray of shape (n_samples,)
        The labels: 1 for an anomaly, 0 for a normal row.

    Raises
    ------
    FileNotFoundError
        If the data folder or the table is missing; the message lists the tables found.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from skprobae.datasets import load_odds
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     (Path(folder) / "odds").mkdir()
    ...     np.savez(Path(folder) / "odds" / "toy.npz", X=np.zeros((4, 2)), y=np.array([0, 0, 0, 1]))
    ...     X, y = load_odds("toy", data_dir=folder)
    ...     try:
    ...         load_odds("thyroid", data_dir=folder)
    ...     except FileNotFoundError as error:
    ...         print("available:", str(error).split("available: ")[1])
    available: ['toy'].
    >>> X.shape, y.tolist()
    ((4, 2), [0, 0, 0, 1])
    """
    path = data_home(data_dir) / "odds" / f"{name}.npz"
    if not path.exists():
        available = sorted(p.stem for p in path.parent.glob("*.npz"))
        raise FileNotFoundError(f"No ODDS set {name!r} in {str(path.parent)!r}; available: {available}.")
    with np.load(path) as data:
        return data["X"], data["y"]


def load_penguins():
    """The Palmer penguins table: three categorical columns, four measurements, real missing entries.

    Read from the CSV that the ``palmerpenguins`` package ships (``pip install
    -c constraints.txt palmerpenguins``), without importing the package, whose
    loader needs ``pkg_resources`` (gone from setuptools 81). The ``year``
    column is dropped; ``species``, ``island`` and ``sex`` are ``category``
    columns.

    Returns
    -------
    table : pandas.DataFrame of shape (344, 7)

    Raises
    ------
    ImportError
        If palmerpenguins is not installed.

    Examples
    --------
    >>> from skprobae.datasets import load_penguins
    >>> table = load_penguins()  # doctest: +SKIP
    >>> table.shape, int(table["sex"].isna().sum())  # doctest: +SKIP
    ((344, 7), 11)
    """
    import importlib.util

    import pandas as pd

    spec = importlib.util.find_spec("palmerpenguins")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "load_penguins needs the palmerpenguins package: pip install -c constraints.txt palmerpenguins"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "penguins.csv"
    table = pd.read_csv(path).drop(columns="year")
    return table.astype({"species": "category", "island": "category", "sex": "category"})
