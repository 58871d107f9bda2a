"""Normalizing flows for latent spaces: builders (zuko) and one adapter for user flows.

Every flow the estimators use is seen through :class:`FlowAdapter`, which gives
the same four differentiable operations whatever library built the flow:

* ``log_prob(z)``: the flow's log-density of each row;
* ``to_base(z)``: the map ``u = b(z)`` into the standard-normal base space and
  ``log |det db/dz|``;
* ``from_base(u)``: the inverse ``z = b^{-1}(u)``;
* ``sample(n)``: ``from_base`` of standard-normal draws.

zuko flows (``zuko.flows.Flow``, any unconditional ``LazyDistribution`` whose
distribution is a ``NormalizingFlow``) and nflows flows (``nflows.flows.Flow``,
an optional dependency) are accepted; both must have a standard-normal base.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import math
from collections.abc import Iterator, Sequence

import torch
import zuko
from torch import Tensor, nn

__all__ = ["FLOW_NAMES", "FlowAdapter", "build_flow"]

FLOW_NAMES = ("auto", "realnvp", "maf", "nsf")

INPLACE_RELU = functools.partial(nn.ReLU, inplace=True)
"""The conditioners' activation: zuko's default ReLU, in place (its gradient reads its output only). zuko's
masked layers allocate one tensor per layer instead of two; fresh megabyte tensors are most of the cost of a
flow's hidden layers on a CPU."""


def build_flow(
    kind: str, n_features: int, transforms: int | None = None, hidden_layer_sizes: Sequence[int] = (128, 128)
) -> zuko.flows.Flow:
    """A zuko flow over ``n_features`` dimensions with a standard-normal base.

    Parameters
    ----------
    kind : {"auto", "realnvp", "maf", "nsf"}
        ``"auto"`` is RealNVP up to 32 dimensions and a neural spline flow
        above, as in the PAE paper. RealNVP uses random coupling masks; MAF and
        NSF are autoregressive with random feature orders.
    n_features : int
        Dimension of the flow's space. A one-dimensional RealNVP (which a
        coupling layer cannot split) is built as a MAF instead.
    transforms : int or None, default=None
        Number of transforms; None (or 0) picks 8 for RealNVP and 4 otherwise.
    hidden_layer_sizes : sequence of int, default=(128, 128)
        Hidden widths of each transform's conditioner network.

    Returns
    -------
    zuko.flows.Flow
        An unconditional ``zuko.flows.RealNVP``, ``MAF`` or ``NSF``, in torch's default dtype.

    Raises
    ------
    ValueError
        If ``kind`` is not one of :data:`FLOW_NAMES`.

    See Also
    --------
    FlowAdapter : The interface the estimators use over such a flow.

    Examples
    --------
    >>> import torch
    >>> from skprobae.flows import build_flow
    >>> _ = torch.manual_seed(0)
    >>> flow = build_flow("auto", 3, transforms=2, hidden_layer_sizes=(8,))
    >>> type(flow).__name__
    'RealNVP'
    >>> flow().log_prob(torch.zeros(4, 3)).shape
    torch.Size([4])
    """
    if kind not in FLOW_NAMES:
        raise ValueError(f"Unknown flow {kind!r}. Valid names: {', '.join(FLOW_NAMES)}, or a zuko / nflows flow.")
    if kind == "auto":
        kind = "realnvp" if n_features <= 32 else "nsf"
    hidden = tuple(hidden_layer_sizes)
    if kind == "realnvp" and n_features == 1:
        kind = "maf"  # a coupling layer needs at least two features
    layers = {"hidden_features": hidden, "activation": INPLACE_RELU}
    if kind == "realnvp":
        return zuko.flows.RealNVP(n_features, transforms=transforms or 8, randmask=True, **layers)
    if kind == "maf":
        return zuko.flows.MAF(n_features, transforms=transforms or 4, randperm=True, **layers)
    return zuko.flows.NSF(n_features, transforms=transforms or 4, randperm=True, **layers)


@contextlib.contextmanager
def prompt_cycle_collection(threshold: int = 20) -> Iterator[None]:
    """Collect young reference cycles often while inside the block.

    zuko's autoregressive inverse makes one transform per pass, and each
    holds its shift and scale tensors in a reference cycle with its inverse,
    so the tensors of every pass outlive it until Python's cyclic collector
    runs: about 1 GB for 500 rows of 784 features. Frequent generation-0
    collections free them as the loop goes (and cost less than the memory).
    """
    previous = gc.get_threshold()
    gc.set_threshold(threshold, *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)


def _is_nflows(flow) -> bool:
    return type(flow).__module__.startswith("nflows.") and hasattr(flow, "_transform")


class FlowAdapter(nn.Module):
    """One interface over zuko and nflows flows (see the module docstring).

    Parameters
    ----------
    flow : zuko.flows.Flow or nflows.flows.Flow
        Unconditional, with a standard-normal base distribution.
    n_features : int
        Dimension the flow must act on.

    Attributes
    ----------
    library : {"zuko", "nflows"}
        The library that built ``flow``.

    Raises
    ------
    TypeError
        If ``flow`` is neither kind.
    ValueError
        If its dimension is not ``n_features`` or its base is not a standard normal.

    Examples
    --------
    >>> import torch
    >>> from skprobae.flows import FlowAdapter, build_flow
    >>> _ = torch.manual_seed(0)
    >>> flow = FlowAdapter(build_flow("realnvp", 3, transforms=2, hidden_layer_sizes=(8,)), 3)
    >>> flow.library, flow.dtype
    ('zuko', torch.float32)
    >>> u, log_det = flow.to_base(torch.zeros(5, 3))
    >>> u.shape, log_det.shape
    (torch.Size([5, 3]), torch.Size([5]))
    >>> torch.allclose(flow.from_base(u), torch.zeros(5, 3), atol=1e-5)
    True
    >>> flow.log_prob(torch.zeros(5, 3)).dtype
    torch.float64
    >>> flow.sample(4, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4, 3])
    """

    def __init__(self, flow: nn.Module, n_features: int):
        super().__init__()
        self.flow = flow
        self.n_features = n_features
        if _is_nflows(flow):
            self.library = "nflows"
        elif isinstance(flow, zuko.lazy.LazyDistribution):
            self.library = "zuko"
        else:
            raise TypeError(
                f"flow must be a name ({', '.join(FLOW_NAMES)}), a zuko flow or an nflows Flow; "
                f"got {type(flow).__name__}."
            )
        self._check(n_features)

    def _check(self, n_features: int) -> None:
        try:
            with torch.no_grad():
                probe = torch.zeros(2, n_features, dtype=self.dtype, device=self._device)
                u, _ = self.to_base(probe)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ValueError(f"The flow does not accept {n_features}-dimensional inputs (n_components): {exc}") from exc
        if u.shape != probe.shape:
            raise ValueError(f"The flow maps {n_features}-dimensional inputs to shape {tuple(u.shape[1:])}.")
        if self.library == "zuko":
            base = self.flow().base
            inner = getattr(base, "base_dist", base)
            loc, scale = getattr(inner, "loc", None), getattr(inner, "scale", None)
            if loc is None or scale is None or torch.any(loc != 0) or torch.any(scale != 1):
                raise ValueError("The zuko flow's base distribution must be a standard normal (DiagNormal(0, 1)).")

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the flow computes in (its parameters').

        Returns
        -------
        torch.dtype
            The dtype of the flow's first parameter (or buffer; float32 for a
            flow that holds neither).
        """
        tensor = self._first_tensor()
        return tensor.dtype if tensor is not None else torch.float32

    @property
    def _device(self) -> torch.device:
        tensor = self._first_tensor()
        return tensor.device if tensor is not None else torch.device("cpu")

    def _first_tensor(self) -> Tensor | None:
        """The flow's first floating-point parameter or buffer: where and in what dtype it computes."""
        for tensor in itertools.chain(self.parameters(), self.buffers()):
            if tensor.is_floating_point():
                return tensor
        return None

    def to_base(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """The map ``u = b(z)`` into the base space and ``log |det db/dz|`` per row.

        Parameters
        ----------
        z : Tensor of shape (..., n_features)
            Points with any leading dimensions; cast to the flow's dtype.

        Returns
        -------
        u : Tensor of shape (..., n_features)
            The base-space points, in the flow's dtype.
        log_det : Tensor of shape (...)
            ``log |det db/dz|`` per row, in the flow's dtype.
        """
        leading, z = z.shape[:-1], z.to(self.dtype).reshape(-1, z.shape[-1])
        if self.library == "zuko":
            u, log_det = self.flow().transform.call_and_ladj(z)
        else:
            u, log_det = self.flow._transform(z)
        return u.reshape(*leading, -1), log_det.reshape(leading)

    def from_base(self, u: Tensor) -> Tensor:
        """The inverse map ``z = b^{-1}(u)``, differentiable in ``u``.

        Parameters
        ----------
        u : Tensor of shape (..., n_features)
            Base-space points with any leading dimensions; cast to the flow's dtype.

        Returns
        -------
        Tensor of shape (..., n_features)
            The points ``z``, in the flow's dtype.
        """
        leading, u = u.shape[:-1], u.to(self.dtype).reshape(-1, u.shape[-1])
        if self.library == "zuko":
            with prompt_cycle_collection():
                z = self.flow().transform.inv(u)
        else:
            z = self.flow._transform.inverse(u)[0]
        return z.reshape(*leading, -1)

    def log_prob(self, z: Tensor) -> Tensor:
        """Log-density of each row of ``z``, reduced in float64.

        Parameters
        ----------
        z : Tensor of shape (..., n_features)
            Points with any leading dimensions.

        Returns
        -------
        Tensor of shape (...)
            ``log N(b(z); 0, I) + log |det db/dz|``, float64.
        """
        u, log_det = self.to_base(z)
        u = u.double()
        return -0.5 * (u * u).sum(-1) - 0.5 * self.n_features * math.log(2 * math.pi) + log_det.double()

    def sample(self, n_samples: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """Draws ``b^{-1}(temperature * u)`` with ``u ~ N(0, I)``.

        Parameters
        ----------
        n_samples : int
            Number of draws.
        temperature : float, default=1.0
            Scale of the base-space noise (below 1 concentrates the draws).
        generator : torch.Generator or None, default=None
            Source of the base noise (a CPU generator: the noise is drawn on
            the CPU, then moved to the flow's device); None uses torch's global RNG.

        Returns
        -------
        Tensor of shape (n_samples, n_features)
            The draws, in the flow's dtype, on the flow's device.
        """
        device = self._device
        u = torch.randn(n_samples, self.n_features, generator=generator, dtype=torch.float64)
        return self.from_base(temperature * u.to(device))
