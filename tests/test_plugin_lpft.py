"""The plugin distribution in plugins/autotransfer-lpft, installed for real, taking part in a fit.

pip builds and installs it into a folder of this test (never the environment's
site-packages); with that folder on ``sys.path`` the entry point in its ``.dist-info``
is what autotransfer discovers, exactly as after ``pip install autotransfer-lpft``.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import autotransfer
from autotransfer import plugins

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "autotransfer-lpft"


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


def test_installed_plugin_takes_part_in_a_fit(
    lpft_installed, image_folder, tiny_backbones, tmp_path
):
    result = autotransfer.fit(
        image_folder,
        backbones=tiny_backbones,
        strategies=("lp_ft", "feature_extraction"),
        n_trials=4,
        time_budget=None,
        trial_time_limit=5,  # seconds: lp_ft's deadline shortens its schedule
        trackers=(),
        run_dir=str(tmp_path / "run"),
        resolution=32,
        progress=False,
    )
    lpft = [r for r in result.leaderboard if r.strategy == "lp_ft"]
    assert lpft and all(r.state == "complete" for r in lpft)
    assert all(r.history and 0.0 <= r.val_accuracy <= 1.0 for r in lpft)
    assert set(lpft[0].params) == {"C", "lr", "epochs", "weight_decay"}
    assert "probe_val_accuracy" in lpft[0].info
    assert "lp_ft" in result.leaderboard_table()


def test_plugin_is_gone_after_the_fixture():
    assert "lp_ft" not in plugins.registered("strategies") or _installed_in_environment()


def _installed_in_environment() -> bool:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("autotransfer-lpft")
    except PackageNotFoundError:
        return False
    return True
