"""Where a run folder's MLflow store is, and the record that ties the folder to its runs.

The tracker (:mod:`autotransfer.tracking.mlflow_tracker`) and ``autotransfer ui``
(:mod:`autotransfer.tracking.ui`) both find the store with :func:`tracking_uri_of`, so
they always agree: by default a SQLite database ``<run_dir>/mlflow.db`` with artifacts
under ``<run_dir>/mlartifacts``; when the fit was given ``tracking_uri``, the URI recorded
in ``<run_dir>/tracking/mlflow.json``. Processes starting together on one run folder take
turns through :func:`store_lock`.

>>> tracking_uri_of("runs/flowers")                          # doctest: +SKIP
'sqlite:////home/me/runs/flowers/mlflow.db'
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
RECORD_FILE = Path("tracking") / "mlflow.json"
LOCK_FILE = Path("tracking") / "mlflow.lock"


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


def tracking_record(state: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """What ``<run_dir>/tracking/mlflow.json`` keeps of the tracker's ``state``;
    ``tracking_uri`` is None for the folder's own store, so that a moved run folder
    still finds it."""
    keys = ("experiment_id", "experiment_name", "parent_run_id", "model_uri")
    uri = state["tracking_uri"]
    own = uri == default_tracking_uri(run_dir)
    return {"tracking_uri": None if own else uri, **{k: state.get(k) for k in keys}}
