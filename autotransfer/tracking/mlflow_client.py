"""How the tracker talks to MLflow: a quiet client, and params, tags and metrics sent in
batches of MLflow's size, with keys and values MLflow accepts.

>>> flatten({"search": {"epochs": 3}, "seed": 0})
{'search.epochs': '3', 'seed': '0'}
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

# MLflow's limits (mlflow.utils.validation); kept here so that importing this module
# does not import MLflow.
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_KEY = 250
MAX_PER_BATCH = 100

# The tags that find a trial's child runs and say how the trial ended.
TAG_TRIAL = "autotransfer.trial"
TAG_STATE = "autotransfer.state"


def open_client(uri: str) -> MlflowClient:
    """An MLflow client on ``uri``; MLflow's own INFO chatter is off unless the user set
    ``MLFLOW_LOGGING_LEVEL``, and so are the links it prints to stdout for each run that
    ends on a tracking server (a trial a line, in the middle of a command's output) unless
    ``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT`` says otherwise."""
    import mlflow

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    if "MLFLOW_LOGGING_LEVEL" not in os.environ:
        mlflow_logger = logging.getLogger("mlflow")
        if mlflow_logger.level < logging.WARNING:
            mlflow_logger.setLevel(logging.WARNING)
    return mlflow.MlflowClient(tracking_uri=uri)


def log_batch(
    client: MlflowClient,
    run_id: str,
    *,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    metrics: Mapping[str, Any] | None = None,
    step: int = 0,
    time_ms: int | None = None,
    model_id: str | None = None,
) -> None:
    """Params, tags and numeric metrics in batches of MLflow's size, keys made valid."""
    from mlflow.entities import Metric, Param, RunTag

    now = time_ms or int(time.time() * 1000)
    ps = [Param(valid_key(k), truncate(str(v), MAX_PARAM_VALUE)) for k, v in (params or {}).items()]
    ts = [RunTag(k, truncate(str(v), MAX_TAG_VALUE)) for k, v in (tags or {}).items()]
    ms = [
        Metric(valid_key(k), float(v), now, step, model_id=model_id)
        for k, v in (metrics or {}).items()
        if is_number(v)
    ]
    for i in range(0, max(len(ps), len(ts), len(ms)), MAX_PER_BATCH):
        sl = slice(i, i + MAX_PER_BATCH)
        client.log_batch(run_id, metrics=ms[sl], params=ps[sl], tags=ts[sl])


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings as dotted keys; other values as strings (lists as JSON).

    >>> flatten({"search": {"epochs": 3, "strategies": ["a", "b"]}, "seed": 0})
    {'search.epochs': '3', 'search.strategies': '["a", "b"]', 'seed': '0'}
    """
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, prefix=f"{key}."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(list(v), default=str)
        else:
            out[key] = str(v)
    return out


def valid_key(key: str) -> str:
    """A key MLflow accepts on every OS: letters, digits, ``_ - . /`` and spaces.

    >>> valid_key("backbone id: timm/x..y")
    'backbone id_ timm/x..y'
    """
    k = re.sub(r"[^\w.\- /]", "_", str(key))[:MAX_KEY]
    k = re.sub(r"/+", "/", k).strip("/")
    if not k or k.startswith("..") or "/../" in f"/{k}/" or "/./" in f"/{k}/" or k == ".":
        k = "_" + k.replace("/", "_")
    return k


def is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 15] + "... [truncated]"


def user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


def dist_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"
