"""Where the modules' training noise comes from: a generator private to the fit that runs in this thread."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

_state = threading.local()


@contextlib.contextmanager
def training_noise(seed: int) -> Iterator[None]:
    """Draw the modules' training noise from generators seeded with ``seed``, in this thread only.

    The noise is a VAE's posterior draws, a flow prior's latent noise and the
    entries a table encoder masks. Inside the body :func:`noise_generator`
    returns one generator per device, seeded with ``seed`` when first asked
    for; outside it returns None (torch's global generator). Being
    thread-local, two fits running in two threads (joblib's threading
    backend, dask's threaded scheduler) each draw their own stream, so each
    is reproducible, and neither reads nor moves torch's global generator.

    Parameters
    ----------
    seed : int
        Seed of the generators.

    Examples
    --------
    >>> import torch
    >>> from skprobae.nn._noise import noise_generator, training_noise
    >>> with training_noise(0):
    ...     a = torch.randn(3, generator=noise_generator(torch.device("cpu")))
    >>> with training_noise(0):
    ...     b = torch.randn(3, generator=noise_generator(torch.device("cpu")))
    >>> torch.equal(a, b), noise_generator(torch.device("cpu")) is None
    (True, True)
    """
    previous = getattr(_state, "noise", None)
    _state.noise = (seed, {})
    try:
        yield
    finally:
        _state.noise = previous


def noise_generator(device: torch.device) -> torch.Generator | None:
    """The generator for training noise on ``device`` inside :func:`training_noise`, else None."""
    noise = getattr(_state, "noise", None)
    if noise is None:
        return None
    seed, generators = noise
    key = (device.type, device.index)
    if key not in generators:
        generators[key] = torch.Generator(device=device).manual_seed(seed)
    return generators[key]
