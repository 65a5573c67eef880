"""Servers end with their command, however it ends: a signal to the command's process only
(``kill <pid>``, ``kill -INT <pid>``), the end of a with-block (raising or not), a SIGKILL
of the parent. Real processes throughout; the process tree is read from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from autotransfer.tracking.server_process import ServerProcess

from ..support import free_port, serving

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")


def _stat(pid: int) -> tuple[str, int] | None:
    """The state letter and parent pid of ``pid``, from /proc (None: no such process)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (command) "
    return fields[0], int(fields[1])


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` in the process tree, now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            children.setdefault(stat[1], []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _eventually(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _kill_all(pids: set[int]) -> None:
    """Clean up after a failed test: SIGKILL what is left of ``pids``."""
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _http_server(port: int, directory: Path) -> list[str]:
    bind = ["--bind", "127.0.0.1", "--directory", str(directory)]
    return [sys.executable, "-m", "http.server", str(port), *bind]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, dataset, make_run) -> Path:
    """A run folder with an (empty) MLflow store."""
    return make_run(tmp_path_factory.mktemp("server") / "run", dataset).run_dir


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_ui_command_ends_its_server(run_dir, tmp_path, sig):
    port = free_port()
    cmd = [sys.executable, "-m", "autotransfer", "ui", str(run_dir), "--port", str(port)]
    tree: set[int] = set()
    try:
        with serving(cmd, url=f"http://127.0.0.1:{port}", log=tmp_path / "ui.log") as ui:
            tree = _descendants(ui.pid)
            assert tree, "mlflow server runs as a child of the command"
            os.kill(ui.pid, sig)  # the command only, as `kill` does: not its group
            assert _eventually(lambda: ui.poll() is not None, 20), "the command still runs"
            assert ui.returncode >= 0, "the command handled the signal, and stopped the server"
            assert _eventually(lambda: not _accepts(port), 5), "the port still answers"
            assert _eventually(lambda: not any(map(_alive, tree)), 5), sorted(
                p for p in tree if _alive(p)
            )
    finally:
        _kill_all(tree)


class _Boom(Exception):
    pass


def test_a_with_block_leaves_nothing_running(tmp_path):
    # A launcher that does not pass signals on: only stopping the group ends the server.
    port = free_port()
    launcher = [sys.executable, "-c", "import subprocess, sys; subprocess.run(sys.argv[1:])"]
    for raises in (False, True):
        tree: set[int] = set()
        try:
            with pytest.raises(_Boom) if raises else contextlib.nullcontext():
                with ServerProcess([*launcher, *_http_server(port, tmp_path)]) as server:
                    assert _eventually(lambda: _accepts(port), 20), "the server did not start"
                    tree = {server.pid, *_descendants(server.pid)}
                    assert len(tree) == 2
                    if raises:
                        raise _Boom
            assert not _accepts(port)
            assert not any(map(_alive, tree))
            assert server.stop() == server.stop() is not None  # stopped already: the status
        finally:
            _kill_all(tree)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux parent-death signal")
def test_a_sigkill_of_the_parent_ends_the_server(tmp_path):
    port = free_port()
    script = (
        "import sys, time\n"
        "from autotransfer.tracking.server_process import ServerProcess\n"
        "ServerProcess(sys.argv[1:]).start()\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script, *_http_server(port, tmp_path)])
    tree: set[int] = set()
    try:
        assert _eventually(lambda: _accepts(port), 20), "the server did not start"
        tree = _descendants(parent.pid)
        parent.kill()
        parent.wait()
        assert _eventually(lambda: not _accepts(port), 10), "the port still answers"
        assert _eventually(lambda: not any(map(_alive, tree)), 5)
    finally:
        parent.kill()
        _kill_all(tree)
