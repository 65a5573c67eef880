"""A server command (``mlflow server``, say) run as a child that never outlives its parent.

A plain :func:`subprocess.run` leaves the server, and the workers it forks, running when
its parent is ended by anything but a Ctrl-C at the terminal (which signals the whole
foreground process group): ``kill <pid>``, a closed terminal, a SIGKILL. Here the server
runs in a process group of its own, which is stopped as one when the parent stops it,
when the parent receives SIGTERM, SIGINT or SIGHUP while it waits, when anything raises,
and (on Linux, through the kernel's parent-death signal) when the parent dies outright.
POSIX only: it relies on sessions and process groups.

>>> with ServerProcess(["python", "-m", "http.server", "8000"]) as server:  # doctest: +SKIP
...     use_the_server()
>>> ServerProcess(ui_command("runs/flowers")).start().wait()                 # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)  # kill, Ctrl-C, terminal closed


def _death_signal_request() -> Callable[[], None] | None:
    """On Linux, the function the child runs between fork and exec to be sent SIGTERM when
    its parent dies (the kernel's parent-death signal; no other platform has one).

    ``prctl`` is looked up here, in the parent: the child of a threaded parent may only call
    it, not load libraries. The signal comes when the *thread* that started the child ends,
    so start a server from a thread that outlives it (the main thread, typically)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def request() -> None:
        if prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0 and os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)  # the parent died before the request

    return request


class ServerProcess:
    """A server command run as a child process that ends when its parent ends."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        name: str = "server",
        output: IO[bytes] | None = None,
    ) -> None:
        self.args = [str(a) for a in args]
        self.env = dict(env) if env is not None else None
        self.name = name
        self.output = output  # a file for its stdout and stderr (None: ours)
        self._process: subprocess.Popen | None = None
        self._stopped = False

    def start(self) -> ServerProcess:
        """Start the command in a new session: it and every process it forks form one
        process group, led by it, that :meth:`stop` signals as a whole."""
        if self._process is not None:
            raise RuntimeError(f"{self.name} was started already (pid {self._process.pid}).")
        args, death_signal = self.args, _death_signal_request()  # an argument list, no shell
        out = {} if self.output is None else {"stdout": self.output, "stderr": subprocess.STDOUT}
        self._process = subprocess.Popen(
            args, env=self.env, start_new_session=True, preexec_fn=death_signal, **out
        )
        logger.debug("started %s (pid %d): %s", self.name, self._process.pid, self.args)
        return self

    @property
    def process(self) -> subprocess.Popen | None:
        """The server's :class:`subprocess.Popen`, or None before :meth:`start`."""
        return self._process

    @property
    def pid(self) -> int | None:
        """The server's process id (and its group's), or None before :meth:`start`."""
        return self._process.pid if self._process is not None else None

    def wait(self) -> int:
        """Block until the server exits; returns its exit status (negative: the signal that
        ended it). SIGTERM, SIGINT or SIGHUP received meanwhile stop the server (a second
        one kills it at once); leaving by any other way (an exception) stops it too. The
        signal handlers are installed, and restored afterwards, in the main thread only."""
        process = self._started()
        received: list[int] = []

        def on_signal(signum: int, frame: Any) -> None:
            received.append(signum)
            logger.info(
                "%s: stopping %s (pid %d)", signal.Signals(signum).name, self.name, process.pid
            )
            self._signal_group(signal.SIGTERM if len(received) == 1 else signal.SIGKILL)

        previous = {}
        if threading.current_thread() is threading.main_thread():
            previous = {s: signal.signal(s, on_signal) for s in _STOP_SIGNALS}
        try:
            return process.wait()
        finally:
            self.stop()
            for s, handler in previous.items():
                signal.signal(s, handler if handler is not None else signal.SIG_DFL)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the server's whole process group: SIGTERM, then SIGKILL to what is left
        after ``timeout`` seconds. Returns the server's exit status (None if it was never
        started); calling it again only returns that."""
        if self._process is None or self._stopped:
            return None if self._process is None else self._process.returncode
        deadline = time.monotonic() + timeout
        self._signal_group(signal.SIGTERM)
        try:
            self._process.wait(timeout=timeout)
            while self._signal_group(0) and time.monotonic() < deadline:
                time.sleep(0.05)  # the leader is gone; its workers are still ending
        except subprocess.TimeoutExpired:
            pass
        if self._signal_group(0):
            logger.warning("%s (pid %d) ignored SIGTERM; killing it", self.name, self._process.pid)
            self._signal_group(signal.SIGKILL)
        self._stopped = True
        return self._process.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _started(self) -> subprocess.Popen:
        if self._process is None:
            raise RuntimeError(f"{self.name} was not started; call start() first.")
        return self._process

    def _signal_group(self, signum: int) -> bool:
        """Send ``signum`` to the server's process group (0: only ask whether any of it is
        left); False when none of it is."""
        try:
            os.killpg(self._started().pid, signum)
        except (ProcessLookupError, PermissionError):  # PermissionError: only zombies (macOS)
            return False
        return True
