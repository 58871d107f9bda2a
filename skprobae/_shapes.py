"""Image-shape validation shared by networks and output distributions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def parse_image_shape(image_shape: Sequence[int] | None, n_features: int) -> tuple[int, int, int]:
    """Normalise ``(H, W)`` or ``(C, H, W)`` to ``(C, H, W)`` and check it against ``n_features``.

    One entry may be -1, as in :func:`numpy.reshape`: it is inferred from
    ``n_features`` (e.g. ``(1, -1)`` makes every row a one-row matrix).

    Parameters
    ----------
    image_shape : sequence of int or None
        ``(H, W)`` or ``(C, H, W)`` of positive integers, at most one of them -1.
        None raises (the caller needs a shape).
    n_features : int
        Number of features per row, which the shape must hold exactly.

    Returns
    -------
    shape : tuple of (int, int, int)
        ``(C, H, W)``, with ``C = 1`` for a two-entry shape and -1 replaced by its inferred size.

    Raises
    ------
    ValueError
        If the shape is missing, malformed, or does not multiply to ``n_features``.

    Examples
    --------
    >>> from skprobae._shapes import parse_image_shape
    >>> parse_image_shape((28, 28), 784)
    (1, 28, 28)
    >>> parse_image_shape((3, -1, 4), 24)
    (3, 2, 4)
    >>> parse_image_shape((5, 5), 24)
    Traceback (most recent call last):
        ...
    ValueError: image_shape (5, 5) holds 25 values but X has 24 features per row.
    """
    if image_shape is None:
        raise ValueError("image_shape is required here: pass image_shape=(H, W) or (C, H, W).")
    shape = tuple(image_shape)
    valid = all(isinstance(s, (int, np.integer)) and (s >= 1 or s == -1) for s in shape)
    if len(shape) not in (2, 3) or not valid or shape.count(-1) > 1:
        raise ValueError(
            f"image_shape must be (H, W) or (C, H, W) of positive integers (one may be -1), got {image_shape!r}."
        )
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1]))
        if n_features % known:
            raise ValueError(f"image_shape {shape} cannot be filled by {n_features} features per row.")
        shape = tuple(n_features // known if s == -1 else int(s) for s in shape)
    if int(np.prod(shape)) != n_features:
        raise ValueError(
            f"image_shape {shape} holds {int(np.prod(shape))} values but X has {n_features} features per row."
        )
    return (1, *shape) if len(shape) == 2 else shape  # type: ignore[return-value]
