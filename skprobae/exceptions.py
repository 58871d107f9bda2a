"""Warnings and errors of skprobae."""

from __future__ import annotations

from ._net import TrainingDivergedError

__all__ = ["InconsistentVersionWarning", "TrainingDivergedError"]


class InconsistentVersionWarning(UserWarning):
    """A model written by one skprobae version is loaded with another.

    Raised (as a warning) when a pickle, or a file of :func:`skprobae.save`,
    comes from a different skprobae version: the model may behave
    differently or fail. The counterpart of scikit-learn's
    :class:`sklearn.exceptions.InconsistentVersionWarning`, for skprobae's
    own version.

    Parameters
    ----------
    estimator_name : str
        Class name of the loaded estimator.
    current_version : str
        The running skprobae version.
    original_version : str
        The version that wrote the model.
    source : {"pickle", "file"}, default="pickle"
        How the model was stored.

    Examples
    --------
    >>> import warnings
    >>> from skprobae.exceptions import InconsistentVersionWarning
    >>> warning = InconsistentVersionWarning(
    ...     estimator_name="PAE", current_version="0.2.0", original_version="0.1.0", source="file"
    ... )
    >>> print(warning)
    Trying to load estimator PAE written by skprobae 0.1.0 with skprobae 0.2.0. This might lead to breaking code or
    invalid results; refit the model with this version, or install the version that wrote it.
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", InconsistentVersionWarning)
    ...     warnings.warn(warning)
    """

    def __init__(self, *, estimator_name: str, current_version: str, original_version: str, source: str = "pickle"):
        super().__init__(estimator_name, current_version, original_version, source)
        self.estimator_name = estimator_name
        self.current_version = current_version
        self.original_version = original_version
        self.source = source

    def __str__(self) -> str:
        how = "unpickle" if self.source == "pickle" else "load"
        return (
            f"Trying to {how} estimator {self.estimator_name} written by skprobae {self.original_version} with "
            f"skprobae {self.current_version}. This might lead to breaking code or invalid results; refit the "
            "model with this version, or install the version that wrote it."
        )
