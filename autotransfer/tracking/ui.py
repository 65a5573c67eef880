"""The command that opens MLflow's UI on a run folder's store.

It finds the store as the tracker does (:func:`autotransfer.tracking.store.tracking_uri_of`),
so they always agree: by default a SQLite database ``<run_dir>/mlflow.db`` with artifacts
under ``<run_dir>/mlartifacts``; when the fit was given ``tracking_uri``, the URI recorded
in ``<run_dir>/tracking/mlflow.json``.

>>> ui_command("runs/flowers")[3:7]                          # doctest: +SKIP
['--backend-store-uri', 'sqlite:////home/me/runs/flowers/mlflow.db', '--default-artifact-root', 'file:///home/me/runs/flowers/mlartifacts']
>>> serve_ui("runs/flowers")                                  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from autotransfer.errors import AutoTransferError, ConfigError
from autotransfer.tracking.server_process import ServerProcess
from autotransfer.tracking.store import (
    DB_FILE,
    default_artifact_uri,
    default_tracking_uri,
    tracking_uri_of,
)

logger = logging.getLogger(__name__)


class NoTrackingStoreError(AutoTransferError, FileNotFoundError):
    """The run folder has no MLflow store to show."""


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

    The server and its workers end with this call, however it ends: Ctrl+C, SIGTERM or
    SIGHUP to this process, an exception, or (on Linux) this process's death
    (:class:`~autotransfer.tracking.server_process.ServerProcess`).

    >>> serve_ui("runs/flowers")        # then open http://127.0.0.1:5000   # doctest: +SKIP
    """
    args = ui_command(run_dir, host=host, port=port, tracking_uri=tracking_uri)
    logger.info("MLflow UI for %s on http://%s:%d (Ctrl+C stops it)", run_dir, host, port)
    return ServerProcess(args, env=ui_environment(), name="MLflow UI").start().wait()
