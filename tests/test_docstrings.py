"""Docstrings: the Examples sections run as written, and numpydoc validation of every public object.

The public objects are those the API reference lists (``docs/api.rst``); a test checks
that it lists every name of every public module's ``__all__``.
"""

import doctest
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import skprobae
from skprobae._testing import PUBLIC_ESTIMATORS

MODULES = sorted(info.name for info in pkgutil.walk_packages(skprobae.__path__, prefix="skprobae."))
PUBLIC_MODULES = ["skprobae", *(name for name in MODULES if not any(part.startswith("_") for part in name.split(".")))]
API_PAGE = Path(__file__).resolve().parents[1] / "docs" / "api.rst"

# numpydoc's codes that fail the test: no docstring, a parameter missing, unknown or
# without a description, no Returns section for a function that returns something, and
# (for classes and functions, not methods) no Examples section.
REQUIRED = {"GL08", "PR01", "PR02", "PR07", "RT01"}
REQUIRED_OF_OBJECTS = REQUIRED | {"EX01"}


def _api_names() -> list[str]:
    """The objects ``docs/api.rst`` lists in its autosummary tables, as import paths."""
    text = API_PAGE.read_text()
    return ["skprobae." + name for name in re.findall(r"^   ((?:[a-z]+\.)*[A-Za-z_]+)$", text, re.M)]


def _resolve(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _member_doc(member) -> str | None:
    function = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
    return getattr(function, "__doc__", None)


def _own_methods(cls) -> list[str]:
    """Public methods and properties that skprobae itself defines on ``cls`` or its skprobae bases.

    A method without a docstring of its own that overrides a documented skprobae method
    takes that docstring (autodoc shows it inherited), so the documented one is checked.
    """
    names = []
    for name in dir(cls):
        if name.startswith("_"):
            continue
        owners = [base for base in cls.__mro__ if name in vars(base)]
        if not owners or not owners[0].__module__.startswith("skprobae"):
            continue
        member = vars(owners[0])[name]
        if not (inspect.isfunction(member) or isinstance(member, (property, classmethod, staticmethod))):
            continue
        documented = [
            base for base in owners if base.__module__.startswith("skprobae") and _member_doc(vars(base)[name])
        ]
        owner = documented[0] if documented else owners[0]
        names.append(f"{owner.__module__}.{owner.__qualname__}.{name}")
    return names


def _validation_targets() -> list[tuple[str, set]]:
    targets = []
    for path in _api_names():
        obj = _resolve(path)
        qualified = f"{obj.__module__}.{obj.__qualname__}"
        targets.append((qualified, REQUIRED_OF_OBJECTS))
        if inspect.isclass(obj):
            targets.extend((method, REQUIRED) for method in _own_methods(obj))
    return sorted(set((name, frozenset(codes)) for name, codes in targets))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


@pytest.mark.parametrize("estimator", PUBLIC_ESTIMATORS, ids=lambda cls: cls.__name__)
def test_every_public_estimator_has_a_runnable_example(estimator):
    finder = doctest.DocTestFinder(recurse=False)
    examples = [test for test in finder.find(estimator) if test.examples]
    assert examples, f"{estimator.__name__} has no Examples section"


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_api_reference_lists_every_public_name(module):
    listed = set(_api_names()) | set(re.findall(r"``(skprobae\.[\w.]+)``", API_PAGE.read_text()))
    exported = getattr(importlib.import_module(module), "__all__", None)
    assert exported is not None, f"{module} has no __all__"
    missing = []
    for name in exported:
        obj = getattr(importlib.import_module(module), name)
        home = getattr(obj, "__module__", module)
        paths = {f"{module}.{name}", f"{home}.{name}".replace("skprobae._net", "skprobae.exceptions")}
        if not paths & listed and not any(path.endswith(f".{name}") for path in listed if _same_object(path, obj)):
            missing.append(name)
    assert not missing, f"docs/api.rst does not list {missing} of {module}.__all__"


def _same_object(path: str, obj) -> bool:
    try:
        return _resolve(path) is obj
    except (ImportError, AttributeError):
        return False


def _target_id(value) -> str:
    return value if isinstance(value, str) else ""


@pytest.mark.parametrize(("name", "codes"), _validation_targets(), ids=_target_id)
def test_numpydoc_validation(name, codes):
    numpydoc_validate = pytest.importorskip("numpydoc.validate")
    errors = [f"{code}: {message}" for code, message in numpydoc_validate.validate(name)["errors"] if code in codes]
    assert not errors, f"{name}:\n" + "\n".join(errors)
