"""A study that workers on other machines join through its storage alone.

The fit publishes in the study (as Optuna user attributes) what a worker needs: the plan,
the settings, and the MLflow record of the parent run, when that run is on a server that
other machines reach. A worker given only the storage URL (``autotransfer worker
--storage URL``) writes them into a run folder of its own and joins like a local worker;
the data folder must be at the same path on its machine. Its kept models reach the fit
through the shared checkpoints (:mod:`autotransfer.search.checkpoints`).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import optuna

from autotransfer.databases import database_url
from autotransfer.errors import ConfigError
from autotransfer.search.study import save_plan
from autotransfer.tracking.store import read_record, write_record

log = logging.getLogger(__name__)

PLAN = "autotransfer.plan"
SETTINGS = "autotransfer.fit_settings"
TRACKING = "autotransfer.tracking"


def publish_plan(study: optuna.Study, plan: dict[str, Any], settings: dict[str, Any]) -> None:
    """Put the plan and the fit's settings in the study, for workers elsewhere."""
    study.set_user_attr(PLAN, json.loads(json.dumps(plan, default=str)))
    study.set_user_attr(SETTINGS, settings)


def publish_tracking(study: optuna.Study, run_dir: Path) -> None:
    """Put the fit's MLflow record in the study when its store is not the run folder's own
    (a tracking server): workers elsewhere then log under the same parent run."""
    record = read_record(run_dir)
    if record.get("tracking_uri"):
        study.set_user_attr(TRACKING, record)


def join(storage: str, study_name: str, run_dir: Path) -> None:
    """Write what the fit published in the study into ``run_dir``: ``plan.json``,
    ``fit_settings.json`` (with this worker's storage URL and run folder) and the MLflow
    record. A :class:`ConfigError` names what is missing."""
    url = database_url(storage, "storage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            attrs = optuna.load_study(study_name=study_name, storage=url).user_attrs
        except KeyError:
            raise ConfigError(
                f"There is no study {study_name!r} in the storage {storage!r} yet. Start it "
                f"with `autotransfer fit DATA --storage {storage!r}` (and --study-name), then "
                "start the workers."
            ) from None
    if PLAN not in attrs or SETTINGS not in attrs:
        raise ConfigError(
            f"The study {study_name!r} in {storage!r} has no plan to join yet: its fit is still "
            "ranking the backbones, or an older autotransfer started it. Start the worker "
            "again in a moment (with a version that publishes its plan)."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    save_plan(run_dir, attrs[PLAN])
    settings = {**attrs[SETTINGS], "storage": storage, "run_dir": str(run_dir)}
    (run_dir / "fit_settings.json").write_text(json.dumps(settings, indent=2))
    record = attrs.get(TRACKING)
    if record and not read_record(run_dir):
        write_record(run_dir, record)
    elif not record and "mlflow" in (settings.get("trackers") or ()):
        log.warning(
            "The fit tracks its trials in an MLflow store inside its own run folder, which "
            "this machine cannot reach; this worker's trials are tracked in %s. Give the "
            "fit a tracking server (--tracking-uri) for one view of every worker.",
            run_dir,
        )
    log.info("Joined the study %r of %s in %s.", study_name, attrs[PLAN].get("root"), run_dir)
