"""The plugin distribution in plugins/autotransfer-lpft, installed for real, taking part in a fit.

pip builds and installs it into a folder of this test (never the environment's
site-packages); with that folder on ``sys.path`` the entry point in its ``.dist-info``
is what autotransfer discovers, exactly as after ``pip install autotransfer-lpft``.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autotransfer import plugins

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "plugins" / "autotransfer-lpft"


def _take_plugin_modules() -> dict:
    """Remove (and return) the plugin's modules, so that the next import finds them anew."""
    names = [m for m in sys.modules if m.split(".")[0] == "autotransfer_lpft"]
    return {name: sys.modules.pop(name) for name in names}


@pytest.fixture
def lpft_installed(tmp_path, monkeypatch):
    """autotransfer-lpft pip-installed into ``tmp_path/site``, on ``sys.path`` for one test."""
    src, site = tmp_path / "src", tmp_path / "site"
    # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    shutil.copytree(
        PLUGIN, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--disable-pip-version-check", "--target", str(site), str(src)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    before = _take_plugin_modules()  # an environment-wide install, if any, steps aside
    monkeypatch.syspath_prepend(str(site))
    plugins.reset_plugin_manager()
    yield site
    _take_plugin_modules()
    sys.modules.update(before)
    monkeypatch.undo()  # off sys.path before the registries are rebuilt
    plugins.reset_plugin_manager()


def test_installed_plugin_registers_lp_ft(lpft_installed):
    reg = plugins.registered("strategies")["lp_ft"]
    assert reg.distribution == "autotransfer-lpft" and reg.plugin == "lpft"
    assert Path(sys.modules["autotransfer_lpft"].__file__).is_relative_to(lpft_installed)


def test_the_plugins_own_tests_pass_where_it_is_installed(lpft_installed):
    """Its contract, its probe and a real fit with its trials (plugins/autotransfer-lpft/
    tests), run as its author runs them, against this checkout and the installed plugin."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(lpft_installed), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PLUGIN / "tests")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout


def test_plugin_is_gone_after_the_fixture():
    assert "lp_ft" not in plugins.registered("strategies") or _installed_in_environment()


def _installed_in_environment() -> bool:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("autotransfer-lpft")
    except PackageNotFoundError:
        return False
    return True
