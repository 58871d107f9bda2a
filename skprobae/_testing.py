"""Test helpers: the public estimators, discovered from ``skprobae.__all__``, with small settings.

Adding an estimator to the package (and its export) adds it to every test that
iterates over these: the scikit-learn checks, the engine's contracts and the
GPU tests.
"""

from __future__ import annotations

import inspect

from sklearn.base import BaseEstimator
from torch import nn

import skprobae
from skprobae._base import BaseAutoencoder

SMALL = {
    "n_components": 2,
    "hidden_layer_sizes": (8,),
    "max_epochs": 3,
    "flow_max_epochs": 3,
    "flow_hidden_layer_sizes": (8,),
    "flow_transforms": 2,
    "n_importance_samples": 8,
    "n_posterior_samples": 10,
    "posterior_steps": 20,
    "random_state": 0,
}
"""Settings every estimator that has the parameter gets in tests: tiny networks, few epochs and samples."""

PUBLIC_ESTIMATORS = [
    obj
    for name in skprobae.__all__
    if inspect.isclass(obj := getattr(skprobae, name)) and issubclass(obj, BaseEstimator)
]
AUTOENCODERS = [cls for cls in PUBLIC_ESTIMATORS if issubclass(cls, BaseAutoencoder)]


def small(cls: type, **params) -> BaseEstimator:
    """``cls`` with the :data:`SMALL` settings it takes, and ``params``."""
    accepted = cls().get_params()
    return cls(**{**{k: v for k, v in SMALL.items() if k in accepted}, **params})


class TinyNetwork(nn.Module):
    """A custom encoder or decoder importable by path (``skprobae._testing:TinyNetwork``), for persistence tests."""

    def __init__(self, n_in: int, n_out: int, hidden: int = 8):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out))

    def forward(self, x):
        return self.layers(x)
