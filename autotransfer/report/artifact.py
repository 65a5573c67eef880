"""The report as an artifact of the fit's MLflow parent run (``report/report.html``).

The parent run is the one the tracker recorded in ``<run_dir>/tracking/mlflow.json``, in
the store :func:`~autotransfer.tracking.store.tracking_uri_of` finds, as ``autotransfer
ui`` does. A fit run without the MLflow tracker recorded none: nothing is logged.

>>> log_report("autotransfer-runs/flowers", page)       # doctest: +SKIP
'file:///.../mlartifacts/1/3f2c.../artifacts/report/report.html'
"""

from __future__ import annotations

import logging
import os

from autotransfer.tracking.mlflow_client import open_client
from autotransfer.tracking.store import RECORD_FILE, read_record, tracking_uri_of

log = logging.getLogger(__name__)

ARTIFACT = "report/report.html"


def log_report(run_dir: str | os.PathLike[str], page: str) -> str | None:
    """Log ``page`` to the fit's parent run; its artifact URI, or None when the fit was
    not tracked in MLflow or the run cannot be reached (both logged)."""
    parent = read_record(run_dir).get("parent_run_id")
    if not parent:
        log.info(
            "The fit in %s was not tracked in MLflow (no parent run in %s); the report is "
            "not logged there.",
            run_dir,
            RECORD_FILE,
        )
        return None
    from mlflow.exceptions import MlflowException

    uri = tracking_uri_of(run_dir)
    client = open_client(uri)
    try:
        client.log_text(parent, page, ARTIFACT)
        artifact_root = client.get_run(parent).info.artifact_uri
    except MlflowException as exc:
        log.warning(
            "The report was not logged to MLflow run %s in %s: %s", parent, uri, exc.message
        )
        return None
    uri_out = f"{artifact_root.rstrip('/')}/{ARTIFACT}"
    log.info("Logged the report to MLflow run %s: %s", parent, uri_out)
    return uri_out
