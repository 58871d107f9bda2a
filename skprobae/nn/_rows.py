"""Apply a network to the rows of a tensor with any leading dimensions."""

from __future__ import annotations

from torch import Tensor, nn


def apply_rows(module: nn.Module, x: Tensor) -> Tensor:
    """``module`` on the rows of ``x`` with any leading dims (user networks may take 2-D input only)."""
    return module(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)
