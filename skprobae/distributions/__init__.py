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
from ._flow import MaskedAutoregressiveFlow
from ._matrix import MatrixNormal, MatrixNormalFamily, MatrixStudentT, MatrixStudentTFamily
from ._mixture import Mixture
from ._normal import DiagonalNormal, FullNormal, SquaredError, UnitNormal
from ._student_t import DiagonalStudentT, FullStudentT, MultivariateStudentT, StudentT

__all__ = [
    "BUILTIN_DISTRIBUTIONS",
    "DiagonalNormal",
    "DiagonalStudentT",
    "FullNormal",
    "FullStudentT",
    "MaskedAutoregressiveFlow",
    "MatrixNormal",
    "MatrixNormalFamily",
    "MatrixStudentT",
    "MatrixStudentTFamily",
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

BUILTIN_DISTRIBUTIONS = (
    "mse",
    "normal",
    "normal_diag",
    "normal_full",
    "t",
    "t_diag",
    "t_full",
    "maf",
    "matrix_normal",
    "matrix_normal_diag",
    "matrix_normal_full",
    "matrix_t",
    "matrix_t_diag",
    "matrix_t_full",
)
"""The 14 families of the vanilla probabilistic autoencoder paper, in its Table 1 order."""

DISTRIBUTION_NAMES = _REGISTRY.keys()
"""Live view of the registered names (estimators validate against it)."""


def register_distribution(name: str, factory: Callable[..., OutputDistribution], *, overwrite: bool = False) -> None:
    """Make an output family available to every estimator under ``name``.

    Parameters
    ----------
    name : str
        The value users pass as ``distribution=``.
    factory : callable
        Called as ``factory(n_features, image_shape=..., **options)``
        (``image_shape`` may be None; ``options`` are the estimator's
        ``distribution_options``); returns an :class:`OutputDistribution`.
    overwrite : bool, default=False
        Replace a family already registered under ``name``. Without it, a
        name that is taken (a built-in family among them) raises, so that
        registering a family never silently changes what another
        ``distribution=`` means.

    Raises
    ------
    ValueError
        If ``name`` is taken and ``overwrite`` is False, or is not a non-empty string.
    TypeError
        If ``factory`` is not callable.

    Examples
    --------
    >>> from skprobae.distributions import available_distributions, make_distribution, register_distribution
    >>> def my_diag(n_features, image_shape=None):
    ...     return make_distribution("normal_diag", n_features)
    >>> register_distribution("my_diag", my_diag, overwrite=True)  # overwrite: safe to run twice
    >>> "my_diag" in available_distributions()
    True
    >>> register_distribution("normal_diag", lambda n_features, image_shape=None: None)
    Traceback (most recent call last):
    ...
    ValueError: distribution 'normal_diag' is already registered (a built-in family); pass overwrite=True to replace it.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_distribution: name must be a non-empty string; got {name!r}.")
    if not callable(factory):
        raise TypeError(f"register_distribution: factory must be callable; got {type(factory).__name__}.")
    if name in _REGISTRY and not overwrite:
        kind = "a built-in family" if name in BUILTIN_DISTRIBUTIONS else "by an earlier call"
        raise ValueError(f"distribution {name!r} is already registered ({kind}); pass overwrite=True to replace it.")
    _REGISTRY[name] = factory


def available_distributions() -> tuple[str, ...]:
    """Names accepted by the ``distribution`` parameter, sorted.

    Returns
    -------
    tuple of str
        The 14 built-in families and any added with :func:`register_distribution`.

    Examples
    --------
    >>> from skprobae.distributions import available_distributions
    >>> {"normal_diag", "t_full", "maf", "matrix_t_diag"} <= set(available_distributions())
    True
    """
    return tuple(sorted(_REGISTRY))


def make_distribution(
    name: str, n_features: int, n_mixtures: int = 1, image_shape=None, **options
) -> OutputDistribution:
    """Build the output family ``name`` over ``n_features``, as a mixture if ``n_mixtures > 1``.

    Parameters
    ----------
    name : str
        A registered name (:func:`available_distributions`).
    n_features : int
        Dimension of the data the distribution is over.
    n_mixtures : int, default=1
        Number of mixture components; 1 returns the family itself.
    image_shape : tuple of int or None
        ``(H, W)`` or ``(1, H, W)``; the matrix families need it.
    **options
        Family options, e.g. ``n_point_samples`` for ``"maf"``.

    Returns
    -------
    OutputDistribution
        The family, or a :class:`Mixture` of ``n_mixtures`` of its components.

    Raises
    ------
    ValueError
        If ``name`` is not registered (the message lists the valid names), or
        an option is not one the family takes.

    Examples
    --------
    >>> from skprobae.distributions import make_distribution
    >>> make_distribution("t_diag", 4)
    DiagonalStudentT(n_features=4)
    >>> mixture = make_distribution("normal_diag", 4, n_mixtures=3)
    >>> type(mixture).__name__, mixture.n_params  # 3 logits + 3 x (4 means + 4 scales)
    ('Mixture', 27)
    >>> make_distribution("gaussian", 4)
    Traceback (most recent call last):
    ...
    ValueError: Unknown distribution 'gaussian'. Valid names: ...
    """
    if name not in _REGISTRY:
        raise ValueError(f"Unknown distribution {name!r}. Valid names: {', '.join(available_distributions())}.")
    if n_mixtures < 1:
        raise ValueError(f"n_mixtures must be >= 1, got {n_mixtures}.")
    family = _REGISTRY[name](n_features, image_shape=image_shape, **options)
    return family if n_mixtures == 1 else Mixture(family, n_mixtures)


def _reject_options(name: str, options: dict, accepted: tuple[str, ...] = ()) -> None:
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = f"takes only {', '.join(accepted)}" if accepted else "takes no options"
        raise ValueError(f"distribution={name!r} {takes}; got distribution_options {unknown}.")


def _vector_family(cls: type[OutputDistribution], name: str) -> Callable[..., OutputDistribution]:
    def factory(n_features: int, image_shape=None, **options) -> OutputDistribution:
        _reject_options(name, options)
        return cls(n_features)

    return factory


_MAF_OPTIONS = ("n_point_samples", "transforms", "hidden_layer_sizes")


def _maf_factory(n_features: int, image_shape=None, **options) -> OutputDistribution:
    _reject_options("maf", options, _MAF_OPTIONS)
    return MaskedAutoregressiveFlow(n_features, **options)


for _name, _cls in {
    "mse": SquaredError,
    "normal": UnitNormal,
    "normal_diag": DiagonalNormal,
    "normal_full": FullNormal,
    "t": StudentT,
    "t_diag": DiagonalStudentT,
    "t_full": FullStudentT,
}.items():
    register_distribution(_name, _vector_family(_cls, _name))
register_distribution("maf", _maf_factory)


def _matrix_family(cls: type[MatrixNormalFamily], scale: str, name: str) -> Callable[..., OutputDistribution]:
    def factory(n_features: int, image_shape=None, **options) -> OutputDistribution:
        _reject_options(name, options)
        return cls(n_features, image_shape, scale=scale, name=name)

    return factory


for _suffix, _scale in {"": "identity", "_diag": "diag", "_full": "full"}.items():
    for _prefix, _cls in {"matrix_normal": MatrixNormalFamily, "matrix_t": MatrixStudentTFamily}.items():
        register_distribution(_prefix + _suffix, _matrix_family(_cls, _scale, _prefix + _suffix))
