"""The Examples sections of public docstrings run as written."""

import doctest
import importlib

import pytest

MODULES = [
    "skprobae.models._vanilla",
    "skprobae.models._pae",
    "skprobae.models._vae",
    "skprobae.models._aef",
    "skprobae.metrics",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
