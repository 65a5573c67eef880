"""Every example in the package's docstrings runs and says what the docstring says (those
marked ``# doctest: +SKIP`` need data or a model and are left out)."""

import doctest
import importlib
import pkgutil

import pytest

import autotransfer

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(autotransfer.__path__, "autotransfer.")
    if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_hold(name):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name}"
