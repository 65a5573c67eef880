"""The package root: every public name resolves, and ``import autotransfer`` stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import autotransfer

HEAVY = ("torch", "timm", "optuna", "sklearn", "mlflow", "matplotlib")


def test_every_public_name_resolves_to_its_home():
    for name in autotransfer.__all__:
        value = getattr(autotransfer, name)
        assert value is not None
        if callable(value) and name != "hookimpl":  # hookimpl is pluggy's marker object
            assert value.__module__.startswith("autotransfer."), name
    assert set(autotransfer.__all__) <= set(dir(autotransfer))
    from autotransfer import FitResult, fit  # noqa: F401  (from-imports go through it too)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'fitt'"):
        autotransfer.fitt  # noqa: B018


@pytest.mark.parametrize("statement", ["import autotransfer", "import autotransfer.cli.main"])
def test_importing_the_package_or_its_command_line_loads_no_heavy_library(statement):
    code = f"import sys; {statement}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{statement} imported {out.stdout.strip()}"


def test_the_version_is_the_installed_distributions():
    from importlib.metadata import version

    assert autotransfer.__version__ == version("autotransfer")


def test_the_ast_walk_finds_no_import_cycle_and_no_long_module():
    """tools/import_graph.py (docs/architecture.md): function-local imports count too."""
    from pathlib import Path

    tool = Path(__file__).resolve().parents[1] / "tools" / "import_graph.py"
    if not tool.exists():
        pytest.skip("tools/ is not in this checkout")
    out = subprocess.run([sys.executable, str(tool)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
    assert "modules in an import cycle: 0 " in out.stdout
    assert "modules over 400 lines: 0" in out.stdout
