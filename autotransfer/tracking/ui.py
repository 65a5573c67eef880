"""Where a run folder's MLflow store is, and the command that opens MLflow's UI on it.

The tracker (:mod:`autotransfer.tracking.mlflow_tracker`) and ``autotransfer ui`` both
find the store with :func:`tracking_uri_of`, so they always agree: by default a SQLite
database ``<run_dir>/mlflow.db`` with artifacts under ``<run_dir>/mlartifacts``; when
the fit was given ``tracking_uri``, the URI recorded in ``<run_dir>/tracking/mlflow.json``.

>>> ui_command("runs/flowers")[3:7]                          # doctest: +SKIP
['--backend-store-uri', 'sqlite:////home/me/runs/flowers/mlflow.db', '--default-artifact-root', 'file:///home/me/runs/flowers/mlartifacts']
>>> serve_ui("runs/flowers")                                  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autotransfer.errors import AutoTransferError, ConfigError

logger = logging.getLogger(__name__)

DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
RECORD_FILE = Path("tracking") / "mlflow.json"
LOCK_FILE = Path("tracking") / "mlflow.lock"


class NoTrackingStoreError(AutoTransferError, FileNotFoundError):
    """The run folder has no MLflow store to show."""


# -- the store of a run folder ---------------------------------------------------------


def default_tracking_uri(run_dir: str | os.PathLike[str]) -> str:
    """The run folder's own store: a SQLite database that needs no server.

    >>> default_tracking_uri("/runs/a b")
    'sqlite:////runs/a b/mlflow.db'
    >>> default_tracking_uri("/runs/50%?")
    'sqlite:////runs/50%25%3F/mlflow.db'
    """
    # Only the characters that would end or garble the URL's path are quoted: MLflow
    # creates the database's folder from the URI text as it is (a quoted space would
    # leave a stray "a%20b" folder beside the run folder).
    path = (Path(run_dir).resolve() / DB_FILE).as_posix()
    return "sqlite:///" + path.replace("%", "%25").replace("?", "%3F").replace("#", "%23")


def default_artifact_uri(run_dir: str | os.PathLike[str]) -> str:
    """Where the run folder's own store keeps artifacts (a ``file://`` URI).

    >>> default_artifact_uri("/runs/a")
    'file:///runs/a/mlartifacts'
    """
    return (Path(run_dir).resolve() / ARTIFACTS_DIR).as_uri()


def read_record(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """What the tracker recorded in ``<run_dir>/tracking/mlflow.json`` ({} if nothing)."""
    path = Path(run_dir) / RECORD_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("Ignoring unreadable %s (%s); a new MLflow run will be started", path, exc)
        return {}
    return record if isinstance(record, dict) else {}


def write_record(
    run_dir: str | os.PathLike[str], record: dict[str, Any], *, exclusive: bool = False
) -> bool:
    """Write ``<run_dir>/tracking/mlflow.json`` atomically. With ``exclusive``, only if
    no record exists yet; returns False when another process wrote one first."""
    path = Path(run_dir) / RECORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".mlflow-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=2)
        if exclusive:
            try:
                os.link(tmp, path)  # fails if the record exists: first writer wins
            except FileExistsError:
                return False
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return True


@contextmanager
def store_lock(run_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the run folder's tracking lock: processes starting together (a fit and its
    workers) take turns creating the store (MLflow's migrations race) and the parent run.
    The operating system drops the lock when its process dies.

    >>> with store_lock(tmp_path):      # doctest: +SKIP
    ...     ...
    """
    path = Path(run_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        if sys.platform == "win32":  # pragma: no cover
            import msvcrt

            while True:
                try:
                    msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)  # retries for 10 s
                    break
                except OSError:
                    continue
            try:
                yield
            finally:
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def tracking_uri_of(run_dir: str | os.PathLike[str], tracking_uri: str | None = None) -> str:
    """The MLflow tracking URI of a run folder: ``tracking_uri`` if given, else the one
    recorded by the fit, else the folder's own SQLite store.

    >>> tracking_uri_of("/no/such/run")
    'sqlite:////no/such/run/mlflow.db'
    """
    if tracking_uri:
        return str(tracking_uri)
    return read_record(run_dir).get("tracking_uri") or default_tracking_uri(run_dir)


# -- the UI ----------------------------------------------------------------------------


def ui_command(
    run_dir: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 5000,
    tracking_uri: str | None = None,
) -> list[str]:
    """The argument list that starts MLflow's UI on a run folder's store.

    Bound to ``127.0.0.1`` (this machine only) unless ``host`` says otherwise. Raises
    :class:`NoTrackingStoreError` when the folder has no store yet, and when its store
    is a tracking server (open that server's address instead).

    >>> ui_command("runs/flowers", port=5001)                    # doctest: +SKIP
    ['/usr/bin/python3', '-m', 'mlflow', 'server', '--backend-store-uri', ...]
    """
    uri = tracking_uri_of(run_dir, tracking_uri)
    if uri.split(":", 1)[0].lower() in ("http", "https", "databricks"):
        raise NoTrackingStoreError(
            f"The run folder {str(run_dir)!r} was tracked on the MLflow server {uri}; it has "
            "no store of its own to serve. Open that server's UI in a browser instead."
        )
    args = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri]
    if uri == default_tracking_uri(run_dir):
        db = Path(run_dir).resolve() / DB_FILE
        if not db.is_file():
            where = "does not exist" if not Path(run_dir).is_dir() else "has no MLflow store"
            raise NoTrackingStoreError(
                f"The run folder {str(run_dir)!r} {where} (looked for {db}). Run "
                "`autotransfer fit` with this run folder first (with the 'mlflow' tracker), "
                "or pass the tracking URI the fit used."
            )
        args += ["--default-artifact-root", default_artifact_uri(run_dir)]
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ConfigError(f"port must be an integer from 1 to 65535, got {port!r}.")
    return [*args, "--host", str(host), "--port", str(port), "--workers", "1"]


def ui_environment() -> dict[str, str]:
    """The environment for the UI process: this one, with MLflow's background job runner
    off unless set (it serves GenAI evaluation jobs, which a run folder never has, and
    triples the server's start-up time).

    >>> "MLFLOW_SERVER_ENABLE_JOB_EXECUTION" in ui_environment()
    True
    """
    env = dict(os.environ)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return env


def serve_ui(
    run_dir: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 5000,
    tracking_uri: str | None = None,
) -> int:
    """Run MLflow's UI on a run folder until it is stopped; returns its exit status.

    >>> serve_ui("runs/flowers")        # then open http://127.0.0.1:5000   # doctest: +SKIP
    """
    args = ui_command(run_dir, host=host, port=port, tracking_uri=tracking_uri)
    logger.info("MLflow UI for %s on http://%s:%d (Ctrl+C stops it)", run_dir, host, port)
    return subprocess.run(args, env=ui_environment(), check=False).returncode
