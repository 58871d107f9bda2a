"""Apply a network to the rows of a tensor with any leading dimensions."""

from __future__ import annotations

from torch import Tensor, nn


def apply_rows(module: nn.Module, x: Tensor) -> Tensor:
    """Apply ``module`` to the rows of ``x`` whatever its leading dimensions.

    User networks may accept 2-D input only: ``x`` is flattened to
    ``(-1, x.shape[-1])``, passed through ``module``, and the leading
    dimensions are restored.

    Parameters
    ----------
    module : nn.Module
        A network taking a 2-D batch ``(n_rows, n_in)`` to ``(n_rows, n_out)``.
    x : Tensor of shape (..., n_in)
        Rows with any leading dimensions.

    Returns
    -------
    Tensor of shape (..., n_out)
        ``module`` of every row, with the leading dimensions of ``x``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skprobae.nn import apply_rows
    >>> apply_rows(nn.Linear(3, 2), torch.zeros(4, 5, 3)).shape
    torch.Size([4, 5, 2])
    """
    return module(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)
