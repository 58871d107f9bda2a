"""Image grids for autoencoder outputs (needs matplotlib: ``pip install skprobae[plot]``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["plot_image_rows", "plot_mixture_components", "plot_reconstructions", "plot_samples"]


def _pyplot():
    try:
        import matplotlib

        if os.environ.get("MPLBACKEND") is None and not os.environ.get("DISPLAY"):
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError("skprobae.plotting needs matplotlib: pip install 'skprobae[plot]'.") from exc
    return plt


def _bare(ax) -> None:
    """An image axis without ticks or frame."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _limits(images: np.ndarray, limits: tuple[float, float] | None) -> tuple[float, float]:
    """``limits``, or the finite minimum and maximum of ``images`` ((0, 1) if none)."""
    if limits is not None:
        return limits
    finite = images[np.isfinite(images)]
    return (finite.min(), finite.max()) if finite.size else (0.0, 1.0)


def _finish(figure, title: str | None, path: str | os.PathLike | None):
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=100)
    return figure


def plot_image_rows(
    rows: Mapping[str, np.ndarray],
    image_shape: Sequence[int],
    *,
    n_columns: int | None = None,
    cmaps: Mapping[str, str] | None = None,
    scale: Mapping[str, tuple[float, float] | None] | None = None,
    path: str | os.PathLike | None = None,
    title: str | None = None,
):
    """Draw one labelled row of images per entry of ``rows``.

    Parameters
    ----------
    rows : mapping of str to ndarray of shape (n_images, prod(image_shape))
        Row label -> flattened images (e.g. originals, reconstructions,
        per-pixel std, samples). Rows may have different lengths.
    image_shape : (H, W) or (1, H, W)
        Shape of one image.
    n_columns : int, optional
        Images per row; default the longest row.
    cmaps : mapping of str to str, optional
        Colour map per row label (default ``"gray"``).
    scale : mapping of str to (vmin, vmax) or None, optional
        Fixed intensity range per row; rows not listed are scaled to their own
        minimum and maximum (NaN pixels are drawn blank).
    path : path-like, optional
        Save the figure there (PNG by extension).
    title : str, optional
        Title above the figure; None or empty draws none.

    Returns
    -------
    matplotlib.figure.Figure
        One row of axes per entry of ``rows``, labelled with its key.

    Examples
    --------
    >>> import numpy as np
    >>> from skprobae.plotting import plot_image_rows
    >>> images = np.linspace(0, 1, 3 * 16).reshape(3, 16)
    >>> figure = plot_image_rows({"first": images, "second": images[:2]}, (4, 4), title="Two rows")
    >>> len(figure.axes), figure.axes[0].get_ylabel(), figure.axes[3].get_ylabel()
    (6, 'first', 'second')
    """
    plt = _pyplot()
    shape = tuple(image_shape)[-2:]
    n_columns = n_columns or max(len(images) for images in rows.values())
    figure, axes = plt.subplots(len(rows), n_columns, figsize=(1.1 * n_columns + 1.4, 1.2 * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        images = np.asarray(images, dtype=float)
        vmin, vmax = _limits(images, (scale or {}).get(label))
        for c in range(n_columns):
            _bare(axes[r, c])
            if c < len(images):
                axes[r, c].imshow(images[c].reshape(shape), cmap=(cmaps or {}).get(label, "gray"), vmin=vmin, vmax=vmax)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    return _finish(figure, title, path)


def plot_reconstructions(
    model,
    X,
    image_shape: Sequence[int],
    n_images: int = 10,
    *,
    clip: tuple[float, float] | None = (0, 1),
    path: str | os.PathLike | None = None,
    title: str | None = None,
):
    """Originals, reconstructions and per-pixel standard deviations of the first images of ``X``.

    Parameters
    ----------
    model : fitted skprobae estimator
        Anything with ``reconstruct(X, return_std=True)``.
    X : array-like of shape (n_samples, prod(image_shape))
        Flattened images; the first ``n_images`` are drawn.
    image_shape : (H, W) or (1, H, W)
        Shape of one image.
    n_images : int, default=10
        Number of images of ``X`` to draw (the first ones).
    clip : (low, high) or None, default=(0, 1)
        Clip reconstructions to this range and draw originals and
        reconstructions on it; None scales each row to its own range.
    path : path-like, optional
        Save the figure there (PNG by extension).
    title : str, optional
        Title above the figure; None or empty draws none.

    Returns
    -------
    matplotlib.figure.Figure
        Rows "original", "reconstruction" and "pixel std" (own colour scale,
        ``"magma"``; NaN std, e.g. Student-t with ``df <= 2``, drawn blank).

    Examples
    --------
    Any object with ``reconstruct`` will do; a fitted estimator is the usual one.

    >>> import numpy as np
    >>> from skprobae.plotting import plot_reconstructions
    >>> class Blur:
    ...     def reconstruct(self, X, return_std=False):
    ...         return X.mean(axis=1, keepdims=True).repeat(X.shape[1], axis=1), np.full(X.shape, 0.1)
    >>> X = np.random.default_rng(0).random((5, 16))
    >>> figure = plot_reconstructions(Blur(), X, (4, 4), n_images=3)
    >>> len(figure.axes), [ax.get_ylabel() for ax in figure.axes[::3]]
    (9, ['original', 'reconstruction', 'pixel std'])
    """
    X = np.asarray(X, dtype=float)[:n_images]
    reconstruction, std = model.reconstruct(X, return_std=True)
    if clip is not None:
        reconstruction = np.clip(reconstruction, *clip)
    return plot_image_rows(
        {"original": X, "reconstruction": reconstruction, "pixel std": std},
        image_shape,
        cmaps={"pixel std": "magma"},
        scale={"original": clip, "reconstruction": clip},
        path=path,
        title=title,
    )


def plot_mixture_components(
    model,
    X,
    image_shape: Sequence[int],
    n_images: int = 5,
    *,
    min_log_weight: float | None = None,
    clip: tuple[float, float] | None = (0, 1),
    path: str | os.PathLike | None = None,
    title: str | None = None,
):
    """Each input image followed by its mixture components, highest weight first.

    Parameters
    ----------
    model : fitted skprobae estimator
        Anything with ``predict_components(X)`` returning points of shape
        ``(n, K, d)`` and log-weights of shape ``(n, K)``, e.g. a
        :class:`~skprobae.ProbabilisticAutoencoder` with ``n_mixtures > 1``.
    X : array-like of shape (n_samples, prod(image_shape))
        Flattened images; the first ``n_images`` are drawn, one per row.
    image_shape : (H, W) or (1, H, W)
        Shape of one image.
    n_images : int, default=5
        Number of images of ``X`` to draw (the first ones), one per row.
    min_log_weight : float, optional
        Components with a smaller log-weight are drawn faded, with a grey title.
    clip : (low, high) or None, default=(0, 1)
        Intensity range of all images (components are clipped to it); None
        uses the range of each row.
    path : path-like, optional
        Save the figure there (PNG by extension).
    title : str, optional
        Title above the figure; None or empty draws none.

    Returns
    -------
    matplotlib.figure.Figure
        ``n_images`` rows of ``K + 1`` axes; component titles read
        ``"log w=<log-weight>"``.

    Examples
    --------
    Any object with ``predict_components`` will do; a fitted estimator is the usual one.

    >>> import numpy as np
    >>> from skprobae.plotting import plot_mixture_components
    >>> class TwoModes:
    ...     def predict_components(self, X):
    ...         points = np.stack([X, 1 - X], axis=1)
    ...         return points, np.log(np.tile([0.25, 0.75], (len(X), 1)))
    >>> X = np.random.default_rng(0).random((4, 16))
    >>> figure = plot_mixture_components(TwoModes(), X, (4, 4), n_images=2)
    >>> [ax.get_title() for ax in figure.axes[:3]]
    ['input', 'log w=-0.29', 'log w=-1.39']
    """
    plt = _pyplot()
    shape = tuple(image_shape)[-2:]
    X = np.asarray(X, dtype=float)[:n_images]
    points, log_weights = model.predict_components(X)
    if clip is not None:
        points = np.clip(points, *clip)
    n, K = log_weights.shape
    figure, axes = plt.subplots(n, K + 1, figsize=(1.1 * (K + 1) + 0.4, 1.3 * n), squeeze=False)
    for i in range(n):
        vmin, vmax = _limits(np.concatenate([X[i], points[i].ravel()]), clip)
        _bare(axes[i, 0])
        axes[i, 0].imshow(X[i].reshape(shape), cmap="gray", vmin=vmin, vmax=vmax)
        axes[i, 0].set_title("input", fontsize=7)
        for j, k in enumerate(np.argsort(-log_weights[i], kind="stable")):
            ax, log_weight = axes[i, j + 1], log_weights[i, k]
            faded = min_log_weight is not None and log_weight < min_log_weight
            _bare(ax)
            ax.imshow(points[i, k].reshape(shape), cmap="gray", vmin=vmin, vmax=vmax, alpha=0.3 if faded else 1.0)
            ax.set_title(f"log w={log_weight:.2f}", fontsize=7, color="0.6" if faded else "black")
    return _finish(figure, title, path)


def plot_samples(
    model,
    image_shape: Sequence[int],
    n_samples: int = 20,
    *,
    random_state=0,
    n_columns: int = 10,
    clip: tuple[float, float] | None = (0, 1),
    path: str | os.PathLike | None = None,
    title: str | None = None,
):
    """A grid of ``model.sample(n_samples, random_state=random_state)``.

    Parameters
    ----------
    model : fitted skprobae estimator
        Anything with ``sample(n_samples, random_state=...)``.
    image_shape : (H, W) or (1, H, W)
        Shape of one image.
    n_samples : int, default=20
        Number of images to draw.
    random_state : int, RandomState instance or None, default=0
        Passed to ``model.sample``.
    n_columns : int, default=10
        Images per row.
    clip : (low, high) or None, default=(0, 1)
        Clip the samples to this range and draw them on it; None scales each
        row to its own range.
    path : path-like, optional
        Save the figure there (PNG by extension).
    title : str, optional
        Title above the figure; None or empty draws none.

    Returns
    -------
    matplotlib.figure.Figure
        ``ceil(n_samples / n_columns)`` rows of ``n_columns`` axes, labelled
        ``"samples <first>-<last>"``.

    Examples
    --------
    Any object with ``sample`` will do; a fitted estimator is the usual one.

    >>> import numpy as np
    >>> from skprobae.plotting import plot_samples
    >>> class Noise:
    ...     def sample(self, n_samples, random_state=None):
    ...         return np.random.default_rng(random_state).random((n_samples, 16))
    >>> figure = plot_samples(Noise(), (4, 4), n_samples=6, n_columns=3)
    >>> [ax.get_ylabel() for ax in figure.axes[::3]]
    ['samples 1-3', 'samples 4-6']
    """
    samples = np.asarray(model.sample(n_samples, random_state=random_state), dtype=float)
    if clip is not None:
        samples = np.clip(samples, *clip)
    starts = range(0, len(samples), n_columns)
    rows = {f"samples {s + 1}-{min(s + n_columns, len(samples))}": samples[s : s + n_columns] for s in starts}
    return plot_image_rows(
        rows, image_shape, n_columns=n_columns, scale=dict.fromkeys(rows, clip), path=path, title=title
    )
