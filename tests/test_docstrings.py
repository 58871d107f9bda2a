"""The Examples sections of docstrings run as written, in every module of the package."""

import doctest
import importlib
import pkgutil

import pytest

import skprobae
from skprobae._testing import PUBLIC_ESTIMATORS

MODULES = sorted(info.name for info in pkgutil.walk_packages(skprobae.__path__, prefix="skprobae."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


@pytest.mark.parametrize("estimator", PUBLIC_ESTIMATORS, ids=lambda cls: cls.__name__)
def test_every_public_estimator_has_a_runnable_example(estimator):
    finder = doctest.DocTestFinder(recurse=False)
    examples = [test for test in finder.find(estimator) if test.examples]
    assert examples, f"{estimator.__name__} has no Examples section"
