"""Headless Chromium for tests: open a page, wait until a script says it has rendered, read
its text or DOM, click, and save a screenshot.

Chromium is driven over the Chrome DevTools Protocol on a pair of pipes
(``--remote-debugging-pipe``: commands on the browser's file descriptor 3, replies on 4,
each a JSON message ending in a NUL byte), so nothing beyond the standard library and a
``chromium`` binary is needed: no WebDriver, no websocket client. Waiting is explicit —
:meth:`Page.wait_for` polls a JavaScript expression until it is truthy — which is what a
React app such as MLflow's UI needs (``chromium --dump-dom`` returns whatever is there
when the virtual-time budget runs out, rendered or not).

>>> with Browser() as browser:                                    # doctest: +SKIP
...     page = browser.open("http://127.0.0.1:5000/#/experiments/1")
...     page.wait_for("document.body.innerText.includes('trial-0')")
...     page.text()
...     page.screenshot("runs.png")

:func:`chromium_or_skip` finds the binary for a test, skips with the reason when there is
none, and fails instead under ``CI=true`` (a browser test that skips in CI tests nothing).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = (
    "install it (Debian/Ubuntu: `apt-get install chromium`) or set AUTOTRANSFER_CHROMIUM "
    "to a Chromium or Chrome binary"
)


class BrowserError(RuntimeError):
    """Chromium did not start, answered with an error, or a page did not render in time."""


def find_chromium() -> str | None:
    """The Chromium (or Chrome) binary to use: ``$AUTOTRANSFER_CHROMIUM``, else the first
    of :data:`CHROMIUM_NAMES` on ``PATH``; None when there is none.

    >>> find_chromium()                                           # doctest: +SKIP
    '/usr/bin/chromium'
    """
    given = os.environ.get("AUTOTRANSFER_CHROMIUM")
    if given:
        return shutil.which(given)
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def in_ci() -> bool:
    """Whether this runs in CI (``CI`` set to true, as CI services do)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def chromium_or_skip() -> str:
    """The Chromium binary for a test; skips the test when there is none, and fails it
    under ``CI=true``, where the browser tests must run (``.ci/run`` installs Chromium)."""
    import pytest

    path = find_chromium()
    if path is not None:
        return path
    reason = f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)}): {INSTALL_HINT}"
    if in_ci():
        pytest.fail(f"{reason}. CI=true: the browser tests must run here, not skip.", False)
    pytest.skip(reason)
    raise AssertionError("unreachable")  # pragma: no cover


def shows_text(*texts: str) -> str:
    """A JavaScript expression, for :meth:`Page.wait_for`, that is true once the page's
    text contains every one of ``texts``.

    >>> shows_text("trial-0", "val_accuracy")
    'document.body && ["trial-0", "val_accuracy"].every(t => document.body.innerText.includes(t))'
    """
    every = f"{json.dumps(list(texts))}.every(t => document.body.innerText.includes(t))"
    return f"document.body && {every}"


def _high_fd(fd: int) -> int:
    """A close-on-exec copy of ``fd`` numbered 10 or above (so that placing the copies on
    3 and 4 in the child cannot overwrite one with the other); closes ``fd``."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    """A headless Chromium process driven over DevTools pipes; a context manager.

    ``width`` × ``height`` is the viewport of every page it opens. Chromium's own output
    goes to a log file in its temporary profile, quoted when something fails.
    """

    def __init__(
        self,
        *,
        binary: str | None = None,
        width: int = 1600,
        height: int = 1000,
        timeout: float = 30.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.binary = binary
        self.width = width
        self.height = height
        self.timeout = timeout
        self.extra_args = tuple(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._profile: tempfile.TemporaryDirectory[str] | None = None
        self._to_browser = self._from_browser = -1
        self._buffer = b""
        self._next_id = 0

    # -- process ---------------------------------------------------------------------------

    def start(self) -> Browser:
        binary = self.binary or find_chromium()
        if binary is None:
            raise BrowserError(f"No Chromium found: {INSTALL_HINT}.")
        self._profile = tempfile.TemporaryDirectory(prefix="autotransfer-chromium-")
        profile = Path(self._profile.name)
        args = [
            binary,
            "--headless",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile / 'profile'}",
            f"--window-size={self.width},{self.height}",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--mute-audio",
            "--force-device-scale-factor=1",
        ]
        # Chromium refuses to run as root with its sandbox, and the sandbox needs user
        # namespaces that containers (CI) often deny; the pages opened here are the tests'
        # own (a local MLflow server, a report file)
        args.append("--no-sandbox")
        args += [*self.extra_args, "about:blank"]
        cmd_read, cmd_write = os.pipe()  # we write commands, Chromium reads them on fd 3
        res_read, res_write = os.pipe()  # Chromium writes replies on fd 4, we read them
        cmd_read, res_write = _high_fd(cmd_read), _high_fd(res_write)
        # a trampoline places the pipe ends on 3 and 4, where Chromium expects them, and
        # execs it (preexec_fn would run Python in a forked copy of a threaded process)
        place = (
            f"import os, sys; os.dup2({cmd_read}, 3); os.dup2({res_write}, 4); "
            f"os.close({cmd_read}); os.close({res_write}); os.execv(sys.argv[1], sys.argv[1:])"
        )
        self._log = open(profile / "chromium.log", "wb")  # noqa: SIM115 (closed in close())
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", place, *args],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                pass_fds=(cmd_read, res_write),
                start_new_session=True,  # its helper processes go with it in close()
            )
        finally:
            os.close(cmd_read)
            os.close(res_write)
        self._to_browser, self._from_browser = cmd_write, res_read
        try:
            self.call("Browser.getVersion")
        except BrowserError:
            self.close()
            raise
        return self

    def __enter__(self) -> Browser:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_tail(self, chars: int = 2000) -> str:
        """The end of Chromium's own output (for error messages)."""
        if self._profile is None:
            return ""
        path = Path(self._profile.name) / "chromium.log"
        try:
            return path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def close(self) -> None:
        """Ask Chromium to quit; kill its process group if it does not within 10 s."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                self._send({"id": -1, "method": "Browser.close"})
            except OSError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        for fd in (self._to_browser, self._from_browser):
            if fd >= 0:
                os.close(fd)
        self._to_browser = self._from_browser = -1
        self._proc = None
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None
        if self._profile is not None:
            self._profile.cleanup()
            self._profile = None

    # -- protocol --------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\0"
        while data:
            written = os.write(self._to_browser, data)
            data = data[written:]

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not answer in time.\n" + self.log_tail())
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise BrowserError("Chromium closed its DevTools pipe.\n" + self.log_tail())
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send one DevTools command and return its result (events in between are
        dropped; nothing here listens to events: waiting is done by polling)."""
        if self._proc is None:
            raise BrowserError("The browser is not running: use `with Browser() as b:`.")
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self._send(message)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            reply = self._receive(deadline)
            if reply.get("id") != self._next_id:
                continue
            if "error" in reply:
                raise BrowserError(f"DevTools {method} failed: {reply['error']}")
            return reply.get("result", {})

    def open(self, url: str) -> Page:
        """A new tab, the browser's viewport size, at ``url`` (not yet rendered: see
        :meth:`Page.wait_for`)."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self, session["sessionId"])
        page.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
        )
        page.goto(url)
        return page


class Page:
    """One tab of a :class:`Browser`."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def call(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> dict:
        return self.browser.call(method, params, session=self.session, **kw)

    def goto(self, url: str) -> None:
        """Navigate to ``url`` (a hash change on the same page counts too)."""
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"Could not open {url}: {result['errorText']}")

    def evaluate(self, expression: str, *, timeout: float | None = None) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript failed: {text}\nin: {expression}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, *, timeout: float = 60.0, interval: float = 0.25) -> Any:
        """Poll ``expression`` until it is truthy and return its value; raises
        :class:`BrowserError`, with what the page shows, after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except BrowserError:  # the page may be between documents
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                shown = ""
                try:
                    shown = self.text()[:3000]
                except BrowserError:
                    pass
                raise BrowserError(
                    f"The page did not render within {timeout:.0f}s: {expression} stayed "
                    f"false.\nThe page shows:\n{shown}"
                )
            time.sleep(interval)

    def click(self, css: str, *, count: int = 1) -> None:
        """Click the middle of the first element matching ``css`` with the mouse, as a
        user would (``count=2``: a double click); raises :class:`BrowserError` when there
        is none."""
        box = self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(css)}); if (!el) return null;"
            " el.scrollIntoView({block: 'center', inline: 'center'});"
            " const r = el.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        if box is None:
            raise BrowserError(f"Nothing on the page matches {css!r}.")
        x, y = box
        self.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        for n in range(1, count + 1):
            for kind in ("mousePressed", "mouseReleased"):
                event = {"type": kind, "x": x, "y": y, "button": "left", "clickCount": n}
                self.call("Input.dispatchMouseEvent", event)

    def text(self) -> str:
        """What the page shows as text (``document.body.innerText``)."""
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def html(self) -> str:
        """The rendered DOM, serialised (what ``chromium --dump-dom`` prints)."""
        return self.evaluate("document.documentElement.outerHTML") or ""

    def screenshot(
        self, path: str | os.PathLike[str], *, full_page: bool = False, between: str = ""
    ) -> Path:
        """Save a PNG of the viewport to ``path`` and return the path; ``full_page``: the
        whole page; ``between="#a, #b"``: the full width from the top of the first element
        matching the CSS selector to the bottom of the last."""
        params: dict[str, Any] = {"format": "png"}
        if between:
            box = self.evaluate(
                f"(() => {{ const els = [...document.querySelectorAll({json.dumps(between)})];"
                " if (!els.length) return null; const y = window.scrollY;"
                " const top = Math.min(...els.map(e => e.getBoundingClientRect().top)) + y;"
                " const bottom = Math.max(...els.map(e => e.getBoundingClientRect().bottom)) + y;"
                " return [top, bottom, document.documentElement.scrollWidth]; })()"
            )
            if box is None:
                raise BrowserError(f"Nothing on the page matches {between!r}.")
            top, bottom, width = box
            params["clip"] = {"x": 0, "y": top, "width": width, "height": bottom - top, "scale": 1}
            params["captureBeyondViewport"] = True
        elif full_page:
            size = self.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
            )
            params["clip"] = {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", params)["data"]
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(data))
        return out


def screenshot(
    url: str,
    path: str | os.PathLike[str],
    *,
    wait_for: str = "document.readyState === 'complete'",
    width: int = 1600,
    height: int = 1000,
    timeout: float = 60.0,
    full_page: bool = False,
) -> Path:
    """Open ``url``, wait until ``wait_for`` is truthy, save a PNG to ``path``.

    >>> screenshot("file:///tmp/report.html", "report.png")       # doctest: +SKIP
    PosixPath('report.png')
    """
    with Browser(width=width, height=height) as browser:
        page = browser.open(url)
        page.wait_for(wait_for, timeout=timeout)
        return page.screenshot(path, full_page=full_page)


def dump_dom(
    url: str,
    *,
    wait_for: str = "document.readyState === 'complete'",
    width: int = 1600,
    height: int = 1000,
    timeout: float = 60.0,
) -> str:
    """The rendered DOM of ``url`` once ``wait_for`` is truthy.

    >>> "<title>" in dump_dom("file:///tmp/report.html")           # doctest: +SKIP
    True
    """
    with Browser(width=width, height=height) as browser:
        page = browser.open(url)
        page.wait_for(wait_for, timeout=timeout)
        return page.html()
