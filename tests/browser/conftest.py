"""Fixtures for the browser tests: headless Chromium driven by Selenium (``browser``), one
real tiny fit tracked in MLflow, the CLI, and a folder that keeps the screenshots
(``$AUTOTRANSFER_TEST_ARTIFACTS``, else a temporary folder; the end of the test session
prints where)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# MLflow reports usage unless told not to; tests never touch the network.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from selenium.webdriver.chrome.webdriver import WebDriver  # noqa: E402

from autotransfer.testing.images import make_image_folder  # noqa: E402

from ..support import free_port, serving  # noqa: E402
from .driver import Binaries, chromium_or_skip, start  # noqa: E402

EXPERIMENT = "browser check"  # not the run folder's name, so that the two can be told apart
RUN_FOLDER = "tiny-fit"  # the parent run's name
STRATEGIES = ("feature_extraction", "partial_freeze")
N_TRIALS = 3

_saved: list[Path] = []


@pytest.fixture(scope="session")
def chromium() -> Binaries:
    """Chromium and chromedriver; the test skips without them, and fails under CI=true."""
    return chromium_or_skip()


@pytest.fixture
def browser(chromium: Binaries) -> Iterator[Callable[..., WebDriver]]:
    """``browser(width=, height=) -> WebDriver``: a headless Chromium with that viewport,
    quit at the end of the test."""
    started: list[WebDriver] = []

    def open_browser(*, width: int = 1600, height: int = 1000) -> WebDriver:
        started.append(start(chromium, width=width, height=height))
        return started[-1]

    yield open_browser
    for driver in started:
        driver.quit()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``$AUTOTRANSFER_TEST_ARTIFACTS`` (CI keeps it) or a temporary
    folder."""
    given = os.environ.get("AUTOTRANSFER_TEST_ARTIFACTS")
    folder = Path(given) if given else tmp_path_factory.mktemp("browser-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def keep(artifacts: Path):
    """``keep(name) -> path``: a path in the artifacts folder, listed at the session's end."""

    def path(name: str) -> Path:
        p = artifacts / name
        _saved.append(p)
        return p

    return path


def pytest_terminal_summary(terminalreporter) -> None:
    shown = [p for p in _saved if p.exists()]
    if shown:
        terminalreporter.write_sep("-", "browser screenshots")
        for p in shown:
            terminalreporter.write_line(f"{p} ({p.stat().st_size // 1024} KB)")


@pytest.fixture(scope="session")
def fitted(tmp_path_factory: pytest.TempPathFactory):
    """A finished fit with the MLflow tracker: three trials of two strategies on timm's
    tiny ``test_*`` backbones, the run folder ``.../tiny-fit``."""
    import autotransfer

    root = tmp_path_factory.mktemp("browser-fit")
    folder = make_image_folder(root / "data", classes=("cat", "dog", "owl"), per_class=10)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTOTRANSFER_CACHE", str(root / "cache"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        return autotransfer.fit(
            folder,
            run_dir=str(root / RUN_FOLDER),
            experiment=EXPERIMENT,
            backbones=("random:test_resnet", "random:test_efficientnet"),
            strategies=STRATEGIES,
            n_trials=N_TRIALS,
            time_budget=None,
            trial_time_limit="5s",  # the partial_freeze trial's schedule is shortened
            resolution=32,
            progress=False,
        )


def cli(*args: str) -> list[str]:
    """The argument list that runs the installed ``autotransfer`` command."""
    script = Path(sys.executable).with_name("autotransfer")
    if script.is_file():
        return [str(script), *args]
    return [sys.executable, "-m", "autotransfer", *args]


@pytest.fixture(scope="module")
def ui_url(fitted, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``autotransfer ui RUN_DIR --port PORT`` running on the fit (the real command); its
    address once it answers. Stopped after the module (it holds half a GB)."""
    port = free_port()
    log = tmp_path_factory.mktemp("ui-log") / "ui.log"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    base = f"http://127.0.0.1:{port}"
    with serving(
        cli("ui", str(fitted.run_dir), "--port", str(port)), url=base, log=log, env=env, timeout=90
    ):
        # the command names the page of the fit's trials
        assert f"{base}/#/experiments/{fitted.tracking['experiment_id']}/runs" in log.read_text()
        yield base
