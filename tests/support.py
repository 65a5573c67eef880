"""Helpers shared by tests in several folders (and by docs/screenshots.py): a server command
started, waited for and stopped.

Tests import it relatively (``from ..support import serving``: pytest's importlib mode
names the test modules ``tests.<folder>.<module>``); docs/screenshots.py puts the
repository root on ``sys.path`` and imports ``tests.support``.
"""

from __future__ import annotations

import shlex
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from autotransfer.tracking.server_process import ServerProcess


class ServerDidNotStart(RuntimeError):
    """The server command exited, or did not answer in time; the message ends with the end
    of its output."""


def autotransfer_cli(*args: str, cwd: Path | None = None, timeout: float = 400):
    """``python -m autotransfer -q ARGS`` run to its end (in ``cwd``): the completed process,
    its output captured."""
    import sys

    return subprocess.run(
        [sys.executable, "-m", "autotransfer", "-q", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


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

    It runs as a :class:`~autotransfer.tracking.server_process.ServerProcess` (``mlflow
    server`` starts workers of its own): its process group is stopped as one, SIGTERM, then
    SIGKILL after 30 s, and it ends if this process dies. Raises
    :class:`ServerDidNotStart` when the command exits or ``timeout`` seconds pass first."""
    with open(log, "wb") as out:
        server = ServerProcess(args, env=env, name=args[0], output=out).start()
    process = server.process
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if process.poll() is not None or time.monotonic() > deadline:
                    why = (
                        f"exit code {process.returncode}"
                        if process.poll() is not None
                        else f"no answer from {url}/health within {timeout} s"
                    )
                    tail = Path(log).read_text(errors="replace")[-3000:]
                    raise ServerDidNotStart(
                        f"{shlex.join(args)} did not start ({why}); its output:\n{tail}"
                    ) from None
                time.sleep(0.5)
        yield process
    finally:
        server.stop(timeout=30)
