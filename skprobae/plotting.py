"""Image grids for autoencoder outputs (needs matplotlib: ``pip install skprobae[plot]``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np


def _pyplot():
    try:
        import matplotlib

        if os.environ.get("MPLBACKEND") is None and not os.environ.get("DISPLAY"):
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError("skprobae.plotting needs matplotlib: pip install 'skprobae[plot]'.") from exc
    return plt


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

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    shape = tuple(image_shape)[-2:]
    n_columns = n_columns or max(len(images) for images in rows.values())
    figure, axes = plt.subplots(len(rows), n_columns, figsize=(1.1 * n_columns + 1.4, 1.2 * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        images = np.asarray(images, dtype=float)
        limits = (scale or {}).get(label)
        finite = images[np.isfinite(images)]
        if limits is not None:
            vmin, vmax = limits
        else:
            vmin, vmax = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        for c in range(n_columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(images):
                ax.imshow(images[c].reshape(shape), cmap=(cmaps or {}).get(label, "gray"), vmin=vmin, vmax=vmax)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=100)
    return figure
