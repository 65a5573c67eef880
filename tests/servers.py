"""The servers of the multi-machine tests: PostgreSQL on 127.0.0.1 with a throwaway data
folder, and an MLflow tracking server backed by it, serving its artifacts.

``.ci/run`` runs the test command through this file, so that the servers start first and
end with it, however it ends::

    python tests/servers.py -- make test

The command sees ``AUTOTRANSFER_TEST_POSTGRES`` (a server URL; each test makes a database
of its own) and ``AUTOTRANSFER_TEST_MLFLOW`` (the tracking server's address). Without
them the fixtures in tests/conftest.py start the same servers themselves, where PostgreSQL
is installed (``apt-get install postgresql``), and skip otherwise (fail under ``CI=true``).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from autotransfer.tracking.server_process import ServerProcess

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.support import free_port, serving
else:
    from .support import free_port, serving

POSTGRES_ENV = "AUTOTRANSFER_TEST_POSTGRES"
MLFLOW_ENV = "AUTOTRANSFER_TEST_MLFLOW"
PG_USER = "autotransfer"


class ServersMissing(RuntimeError):
    """PostgreSQL's programs are not installed."""


def postgres_bin() -> Path:
    """The folder of PostgreSQL's server programs (Debian keeps them off the PATH)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if not versions:
        raise ServersMissing(
            "PostgreSQL is not installed (no initdb on the PATH or in /usr/lib/postgresql); "
            "apt-get install postgresql"
        )
    return Path(versions[-1]).parent


def _version(path: str) -> tuple[int, ...]:
    return tuple(int(p) for p in Path(path).parts[-3].split(".") if p.isdigit())


def _as_postgres_user() -> list[str]:
    """PostgreSQL refuses to run as root: under root, its programs run as ``postgres``."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL server for this block: its URL (user ``autotransfer``, trusted, the
    ``postgres`` database), its data in a temporary folder removed afterwards."""
    bin_dir = postgres_bin()
    work = Path(tempfile.mkdtemp(prefix="autotransfer-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(work, "postgres")
        run_as = _as_postgres_user()
        subprocess.run(
            [*run_as, str(bin_dir / "initdb"), "-D", str(work / "data"), "-A", "trust",
             "-U", PG_USER, "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        port = free_port()
        args = [*run_as, str(bin_dir / "postgres"), "-D", str(work / "data"), "-h", "127.0.0.1",
                "-p", str(port), "-k", str(work), "-F"]  # fmt: skip
        with open(work / "log", "wb") as log, ServerProcess(args, name="postgres", output=log):
            url = f"postgresql://{PG_USER}@127.0.0.1:{port}/postgres"
            _wait_for_postgres(url, work / "log")
            yield url
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _wait_for_postgres(url: str, log: Path, timeout: float = 60) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                said = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"PostgreSQL did not start: {exc}\n{said}") from exc
            time.sleep(0.2)


def create_database(server_url: str, name: str) -> str:
    """A new, empty database ``name`` on the server; its URL."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def mlflow_server(postgres_url: str) -> Iterator[str]:
    """An MLflow tracking server for this block, its runs in a new database of the
    PostgreSQL server, its artifacts served from a temporary folder; its address."""
    from autotransfer.databases import database_url
    from autotransfer.tracking.ui import ui_environment

    store = database_url(create_database(postgres_url, f"mlflow_{os.getpid()}"), "store")
    work = Path(tempfile.mkdtemp(prefix="autotransfer-mlflow-"))
    port = free_port()
    args = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
            "--artifacts-destination", (work / "artifacts").as_uri(), "--serve-artifacts",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        with serving(args, url=url, log=work / "log", env=ui_environment()):
            yield url
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str]) -> int:
    """Run the command after ``--`` with both servers up; its exit status."""
    command = argv[argv.index("--") + 1 :] if "--" in argv else argv
    if not command:
        print("usage: python tests/servers.py -- COMMAND...", file=sys.stderr)
        return 2
    # SIGTERM ends the servers too: the with-blocks unwind (SIGKILL: their death signal)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with postgres() as pg, mlflow_server(pg) as tracking:
        env = {**os.environ, POSTGRES_ENV: pg, MLFLOW_ENV: tracking}
        print(f"PostgreSQL {pg}, MLflow {tracking}", file=sys.stderr, flush=True)
        return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
