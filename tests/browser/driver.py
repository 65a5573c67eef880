"""Headless Chromium for the browser tests (and ``docs/screenshots.py``), driven by Selenium
through the system's ``chromedriver`` (Debian: ``apt-get install chromium chromium-driver``).

Both binaries are given to Selenium by path, so Selenium Manager never looks for (or
downloads) a driver. Waiting is explicit (:func:`wait_until`, :func:`wait_for`), which is
what a React app such as MLflow's UI needs.

>>> with chrome(width=1600, height=900) as driver:                   # doctest: +SKIP
...     driver.get("http://127.0.0.1:5000/#/experiments/1")
...     wait_for(driver, shows_text("trial-0"))
...     screenshot(driver, "runs.png")

:func:`chromium_or_skip` finds the binaries for a test, skips with the reason when one is
missing, and fails instead under ``CI=true`` (a browser test that skips in CI tests nothing).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMEDRIVER_NAMES = ("chromedriver",)
INSTALL_HINT = (
    "install them (Debian/Ubuntu: `apt-get install chromium chromium-driver`) or set "
    "AUTOTRANSFER_CHROMIUM and AUTOTRANSFER_CHROMEDRIVER to a Chromium (or Chrome) binary and "
    "its matching chromedriver"
)
T = TypeVar("T")


class Binaries(NamedTuple):
    chromium: str
    chromedriver: str


def _find(variable: str, names: tuple[str, ...]) -> str | None:
    given = os.environ.get(variable)
    if given:
        return shutil.which(given)
    return next((path for path in map(shutil.which, names) if path), None)


def find_chromium() -> str | None:
    """``$AUTOTRANSFER_CHROMIUM``, else the first of :data:`CHROMIUM_NAMES` on ``PATH``;
    None when there is none."""
    return _find("AUTOTRANSFER_CHROMIUM", CHROMIUM_NAMES)


def find_chromedriver() -> str | None:
    """``$AUTOTRANSFER_CHROMEDRIVER``, else ``chromedriver`` on ``PATH``; None when there is
    none."""
    return _find("AUTOTRANSFER_CHROMEDRIVER", CHROMEDRIVER_NAMES)


def find_binaries() -> tuple[Binaries | None, str]:
    """Both binaries, or None and what is missing."""
    chromium, chromedriver = find_chromium(), find_chromedriver()
    if chromium and chromedriver:
        return Binaries(chromium, chromedriver), ""
    missing = []
    if not chromium:
        missing.append(f"no Chromium (looked for {', '.join(CHROMIUM_NAMES)})")
    if not chromedriver:
        missing.append("no chromedriver")
    return None, f"{' and '.join(missing)}: {INSTALL_HINT}"


def in_ci() -> bool:
    """Whether this runs in CI (``CI`` set to true, as CI services do)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def chromium_or_skip() -> Binaries:
    """The binaries for a test; skips the test when one is missing, and fails it under
    ``CI=true``, where the browser tests must run (``.ci/run`` installs both)."""
    import pytest

    found, reason = find_binaries()
    if found is not None:
        return found
    if in_ci():
        pytest.fail(f"{reason}. CI=true: the browser tests must run here, not skip.", False)
    pytest.skip(reason)


def start(binaries: Binaries | None = None, *, width: int = 1600, height: int = 1000) -> WebDriver:
    """A headless Chromium whose viewport (what a screenshot shows) is ``width`` × ``height``.

    ``--no-sandbox``: Chromium refuses to run as root with its sandbox, and the sandbox needs
    user namespaces that containers (CI) often deny; the pages opened are the tests' own.
    """
    if binaries is None:
        binaries, reason = find_binaries()
        if binaries is None:
            raise RuntimeError(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = binaries.chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--force-device-scale-factor=1",  # screenshots of width x height pixels
        "--hide-scrollbars",  # a viewport screenshot is the page's full width
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(binaries.chromedriver))
    try:
        # the window size includes the (invisible) browser frame: grow it by the difference
        frame_w, frame_h = driver.execute_script(
            "return [outerWidth - innerWidth, outerHeight - innerHeight]"
        )
        if frame_w or frame_h:
            driver.set_window_size(width + frame_w, height + frame_h)
    except BaseException:
        driver.quit()
        raise
    return driver


@contextmanager
def chrome(
    binaries: Binaries | None = None, *, width: int = 1600, height: int = 1000
) -> Iterator[WebDriver]:
    """:func:`start` as a context manager: the browser quits at its end."""
    driver = start(binaries, width=width, height=height)
    try:
        yield driver
    finally:
        driver.quit()


def text(driver: WebDriver) -> str:
    """What the page shows as text (``document.body.innerText``: the text of a table scrolled
    out of view too, unlike Selenium's visible ``.text``)."""
    return driver.execute_script("return document.body ? document.body.innerText : ''") or ""


def wait_until(
    driver: WebDriver, condition: Callable[[WebDriver], T], *, timeout: float = 60.0, what: str
) -> T:
    """``WebDriverWait(driver, timeout).until(condition)``, polling every 0.25 s; on a
    timeout the error says ``what`` was awaited and quotes what the page shows."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.25).until(condition)
    except TimeoutException:
        try:
            shown = text(driver)[:3000]
        except WebDriverException:
            shown = "(unreadable)"
        raise TimeoutException(
            f"The page did not render within {timeout:g}s: {what}.\nThe page shows:\n{shown}"
        ) from None


def wait_for(driver: WebDriver, expression: str, *, timeout: float = 60.0) -> Any:
    """Wait until the JavaScript ``expression`` is truthy in the page; return its value."""
    return wait_until(
        driver,
        lambda d: d.execute_script(f"return ({expression})"),
        timeout=timeout,
        what=f"{expression} stayed false",
    )


def shows_text(*texts: str) -> str:
    """A JavaScript expression, for :func:`wait_for`, that is true once the page's text
    contains every one of ``texts``.

    >>> shows_text("trial-0", "val_accuracy")
    'document.body && ["trial-0", "val_accuracy"].every(t => document.body.innerText.includes(t))'
    """
    every = f"{json.dumps(list(texts))}.every(t => document.body.innerText.includes(t))"
    return f"document.body && {every}"


def screenshot(
    driver: WebDriver, path: str | os.PathLike[str], *, full_page: bool = False, between: str = ""
) -> Path:
    """Save a PNG of the viewport to ``path`` and return the path; ``full_page``: the whole
    page; ``between="#a, #b"``: the full width from the top of the first element matching
    the CSS selector to the bottom of the last (those two through Chromium's DevTools
    ``Page.captureScreenshot``, which Selenium has no call of its own for)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not (full_page or between):
        out.write_bytes(driver.get_screenshot_as_png())
        return out
    box = driver.execute_script(
        "const css = arguments[0], root = document.documentElement;"
        " if (!css) return [0, root.scrollHeight, root.scrollWidth];"
        " const els = [...document.querySelectorAll(css)]; if (!els.length) return null;"
        " const y = window.scrollY;"
        " return [Math.min(...els.map(e => e.getBoundingClientRect().top)) + y,"
        "         Math.max(...els.map(e => e.getBoundingClientRect().bottom)) + y,"
        "         root.scrollWidth];",
        between,
    )
    if box is None:
        raise ValueError(f"Nothing on the page matches {between!r}.")
    top, bottom, width = box
    clip = {"x": 0, "y": top, "width": width, "height": bottom - top, "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True}
    )
    out.write_bytes(base64.b64decode(shot["data"]))
    return out
