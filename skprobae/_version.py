"""The package version, said once, and the version stamp of pickles.

Pickles of skprobae estimators carry the version that wrote them
(``_skprobae_version`` in the pickled state, as scikit-learn stamps its own
estimators with ``_sklearn_version``); unpickling one written by another
version warns with :class:`~skprobae.exceptions.InconsistentVersionWarning`.
"""

from __future__ import annotations

import warnings

__version__ = "0.2.0.dev0"

_STATE_KEY = "_skprobae_version"
_UNKNOWN = "unknown (a pickle from before skprobae stamped its version)"


def stamp_state(state: dict) -> dict:
    """``state`` (an estimator's ``__getstate__``) with the running skprobae version added."""
    return {**state, _STATE_KEY: __version__}


def check_state(estimator_name: str, state: dict) -> dict:
    """``state`` without its version stamp; warns when the stamp is not the running version."""
    state = dict(state)
    original = state.pop(_STATE_KEY, _UNKNOWN)
    warn_if_inconsistent(estimator_name, original, "pickle")
    return state


def warn_if_inconsistent(estimator_name: str, original_version: str, source: str) -> None:
    """Warn with :class:`~skprobae.exceptions.InconsistentVersionWarning` if ``original_version`` is not this one."""
    if original_version != __version__:
        from .exceptions import InconsistentVersionWarning

        warnings.warn(
            InconsistentVersionWarning(
                estimator_name=estimator_name,
                current_version=__version__,
                original_version=original_version,
                source=source,
            ),
            stacklevel=3,
        )


class PersistenceMixin:
    """Version-stamped pickles and :meth:`save`, for skprobae's estimators (put it before ``BaseEstimator``)."""

    def __getstate__(self) -> dict:
        return stamp_state(super().__getstate__())

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(check_state(type(self).__name__, state))

    def save(self, path) -> None:
        """Save this estimator to one file without pickle; the same as :func:`skprobae.save`.

        Parameters
        ----------
        path : str or path-like
            The file to write; :func:`skprobae.load` reads it back.
        """
        from .persistence import save

        save(self, path)
