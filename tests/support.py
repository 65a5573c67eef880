"""Helpers shared by tests in several folders (and by docs/screenshots.py): a server command
started, waited for and stopped.

Tests import it relatively (``from ..support import serving``: pytest's importlib mode
names the test modules ``tests.<folder>.<module>``); docs/screenshots.py puts the
repository root on ``sys.path`` and imports ``tests.support``.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


class ServerDidNotStart(RuntimeError):
    """The server command exited, or did not answer in time; the message ends with the end
    of its output."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(
    args: list[str],
    *,
    url: str,
    log: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> Iterator[subprocess.Popen]:
    """Run the server command ``args``, its output (stdout and stderr) to the file ``log``,
    until ``{url}/health`` answers; yield the process, then stop it.

    It runs in a process group of its own (``mlflow server`` starts workers of its own),
    which is stopped as one: SIGTERM, then SIGKILL after 30 s. Raises
    :class:`ServerDidNotStart` when the command exits or ``timeout`` seconds pass first."""
    with open(log, "wb") as out:
        server = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if server.poll() is not None or time.monotonic() > deadline:
                    why = (
                        f"exit code {server.returncode}"
                        if server.poll() is not None
                        else f"no answer from {url}/health within {timeout} s"
                    )
                    tail = Path(log).read_text(errors="replace")[-3000:]
                    raise ServerDidNotStart(
                        f"{shlex.join(args)} did not start ({why}); its output:\n{tail}"
                    ) from None
                time.sleep(0.5)
        yield server
    finally:
        _stop_group(server)


def _stop_group(process: subprocess.Popen, timeout: float = 30) -> None:
    """Stop ``process`` and its process group (it was started with ``start_new_session``):
    SIGTERM, then SIGKILL after ``timeout`` seconds."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
