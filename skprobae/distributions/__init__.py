"""Output distributions of probabilistic autoencoders, looked up by name.

Every family maps a decoder's raw output to a ``torch.distributions``
distribution over the input features (see :class:`OutputDistribution`). The
registry lets estimators accept a name (``distribution="t_diag"``) and lets
new families plug in without touching any estimator::

    from skprobae.distributions import register_distribution
    register_distribution("my_family", MyFamily)
"""

from __future__ import annotations

from collections.abc import Callable

from ._base import OutputDistribution, lower_cholesky, positive
from ._mixture import Mixture
from ._normal import DiagonalNormal, FullNormal, SquaredError, UnitNormal
from ._student_t import DiagonalStudentT, FullStudentT, MultivariateStudentT, StudentT

__all__ = [
    "DiagonalNormal",
    "DiagonalStudentT",
    "FullNormal",
    "FullStudentT",
    "Mixture",
    "MultivariateStudentT",
    "OutputDistribution",
    "SquaredError",
    "StudentT",
    "UnitNormal",
    "available_distributions",
    "lower_cholesky",
    "make_distribution",
    "positive",
    "register_distribution",
]

_REGISTRY: dict[str, Callable[..., OutputDistribution]] = {}

DISTRIBUTION_NAMES = _REGISTRY.keys()
"""Live view of the registered names (estimators validate against it)."""


def register_distribution(name: str, factory: Callable[..., OutputDistribution]) -> None:
    """Make an output family available to every estimator under ``name``.

    Parameters
    ----------
    name : str
        The value users pass as ``distribution=``.
    factory : callable
        Called as ``factory(n_features, **options)`` (options such as
        ``image_shape``; ignore those you do not need); returns an
        :class:`OutputDistribution`.
    """
    _REGISTRY[name] = factory


def available_distributions() -> tuple[str, ...]:
    """Names accepted by the ``distribution`` parameter, sorted."""
    return tuple(sorted(_REGISTRY))


def make_distribution(name: str, n_features: int, n_mixtures: int = 1, **options) -> OutputDistribution:
    """Build the output family ``name`` over ``n_features``, as a mixture if ``n_mixtures > 1``.

    Raises
    ------
    ValueError
        If ``name`` is not registered; the message lists the valid names.
    """
    if name not in _REGISTRY:
        raise ValueError(f"Unknown distribution {name!r}. Valid names: {', '.join(available_distributions())}.")
    if n_mixtures < 1:
        raise ValueError(f"n_mixtures must be >= 1, got {n_mixtures}.")
    family = _REGISTRY[name](n_features, **options)
    return family if n_mixtures == 1 else Mixture(family, n_mixtures)


def _vector_family(cls: type[OutputDistribution]) -> Callable[..., OutputDistribution]:
    def factory(n_features: int, **options) -> OutputDistribution:
        return cls(n_features)

    return factory


for _name, _cls in {
    "mse": SquaredError,
    "normal": UnitNormal,
    "normal_diag": DiagonalNormal,
    "normal_full": FullNormal,
    "t": StudentT,
    "t_diag": DiagonalStudentT,
    "t_full": FullStudentT,
}.items():
    register_distribution(_name, _vector_family(_cls))
