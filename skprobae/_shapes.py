"""Image-shape validation shared by networks and output distributions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def parse_image_shape(image_shape: Sequence[int] | None, n_features: int) -> tuple[int, int, int]:
    """Normalise ``(H, W)`` or ``(C, H, W)`` to ``(C, H, W)`` and check it against ``n_features``.

    Raises
    ------
    ValueError
        If the shape is missing, malformed, or does not multiply to ``n_features``.
    """
    if image_shape is None:
        raise ValueError("image_shape is required here: pass image_shape=(H, W) or (C, H, W).")
    shape = tuple(image_shape)
    if len(shape) not in (2, 3) or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in shape):
        raise ValueError(f"image_shape must be (H, W) or (C, H, W) of positive integers, got {image_shape!r}.")
    if int(np.prod(shape)) != n_features:
        raise ValueError(
            f"image_shape {shape} holds {int(np.prod(shape))} values but X has {n_features} features per row."
        )
    return (1, *shape) if len(shape) == 2 else shape  # type: ignore[return-value]
