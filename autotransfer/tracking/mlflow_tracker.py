"""The built-in tracker: every fit, trial and epoch in MLflow, browsable in its UI.

One run folder is one MLflow *parent run* (settings, data facts, the ranking, the
leaderboard, the best model); each trial is a *child run* nested under it (its
hyperparameters, one metric point per epoch, its final scores and state). By default
the store lives in the run folder and needs no server: ``<run_dir>/mlflow.db`` (SQLite,
MLflow's default backend since the file store was retired) with artifacts in
``<run_dir>/mlartifacts``. ``FitSettings.tracking_uri`` points elsewhere (a server, a
database) and ``FitSettings.experiment`` names the experiment (default: the run
folder's name).

The parent's id is kept in ``<run_dir>/tracking/mlflow.json`` so that resuming a fit
and ``autotransfer worker`` processes log under the same parent. Everything goes
through an explicit :class:`mlflow.MlflowClient`, never MLflow's global "active run",
so concurrent trials and processes cannot interfere.

This module handles the events and the trials' child runs; the parent run is
:mod:`~autotransfer.tracking.parent_run`, the logged model
:mod:`~autotransfer.tracking.logged_model`, where the store is and the record
:mod:`~autotransfer.tracking.store`, batched logging :mod:`~autotransfer.tracking.mlflow_client`.

>>> result = autotransfer.fit("data/")                  # doctest: +SKIP
>>> result.tracking["parent_run_id"], result.tracking["model_uri"]   # doctest: +SKIP
('3f2c...', 'models:/m-8e1d...')
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotransfer.tracking.base import RunContext, TrialInfo
from autotransfer.tracking.mlflow_client import (
    MAX_TAG_VALUE,
    TAG_STATE,
    TAG_TRIAL,
    flatten,
    log_batch,
    open_client,
    to_json,
    truncate,
    user_name,
)
from autotransfer.tracking.parent_run import (
    find_trial_runs,
    get_experiment,
    log_fit_facts,
    log_result,
    new_parent,
    reopen,
    reusable_parent,
    run_name,
)
from autotransfer.tracking.store import (
    read_record,
    store_lock,
    tracking_record,
    tracking_uri_of,
    write_record,
)

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

    from autotransfer.results import FitResult
    from autotransfer.search.records import TrialRecord

logger = logging.getLogger(__name__)

NAME = "mlflow"
TAG_RETRY_OF = "autotransfer.retry_of"  # on a retry's run: the trial it runs again
_STATUS_OF_STATE = {"complete": "FINISHED", "pruned": "FINISHED", "failed": "FAILED"}


class MLflowTracker:
    """Logs a fit to MLflow: a parent run per run folder, a nested run per trial.

    Registered as ``"mlflow"`` by :mod:`autotransfer.builtin.trackers`. What it records,
    and where, is in ``run.state["mlflow"]`` (copied into ``FitResult.tracking``):
    ``tracking_uri``, ``experiment_id``, ``parent_run_id``, ``trial_runs`` (trial number
    to child run id) and, after a successful fit, ``model_uri`` (``models:/<id>``) and
    ``model_artifact_uri`` (the model's files; loads without a tracking URI).

    >>> tracker = MLflowTracker()
    >>> tracker.name
    'mlflow'
    """

    name = NAME

    def fit_start(self, run: RunContext) -> None:
        """Open (or reopen) the parent run; log settings, data, ranking; close stale trials."""
        Path(run.run_dir).mkdir(parents=True, exist_ok=True)  # SQLite makes no folders
        with store_lock(run.run_dir):
            recorded_uri = tracking_uri_of(run.run_dir)
            uri = str(run.settings.get("tracking_uri") or recorded_uri)
            client = open_client(uri)
            experiment_name = str(run.settings.get("experiment") or run_name(run))
            experiment_id = get_experiment(client, experiment_name, run.run_dir, uri)
            record = read_record(run.run_dir) if uri == recorded_uri else {}
            parent_id = reusable_parent(client, record, experiment_id)
            state = run.state[NAME] = {
                "tracking_uri": uri,
                "experiment_id": experiment_id,
                "experiment_name": experiment_name,
                "parent_run_id": parent_id,
                "trial_runs": {},
            }
            created = parent_id is None
            if created:
                parent_id, created = new_parent(client, run, state)
                logger.info("MLflow: run %s in experiment %r (%s)", parent_id, experiment_name, uri)
            else:
                logger.info("MLflow: continuing run %s (%s)", parent_id, uri)
            reopened = reopen(client, parent_id)
            # A worker joins the fit's parent run; it owns (and ends) it only if it opened it.
            state["_owns_parent"] = not run.is_worker or created or reopened
            if not run.is_worker or created:
                log_fit_facts(client, parent_id, run)
        for number in run.stale_trials:
            _close_stale_trial(client, state, number)
        for trial in run.recovered_trials:
            self._close_recovered_trial(run, client, trial)

    def _close_recovered_trial(
        self, run: RunContext, client: MlflowClient, record: TrialRecord
    ) -> None:
        """End with its scores the child run of a trial whose process died after the trial
        finished but before its run was ended (its epochs were logged then)."""
        state = run.state[NAME]
        for run_id in find_trial_runs(client, state, record.number, status="RUNNING"):
            state["trial_runs"][str(record.number)] = run_id
            steps = state.setdefault("_steps", {}).setdefault(str(record.number), {})
            steps["step"] = max(len(record.history) - 1, 0)
            self.trial_end(run, record)
            logger.info(
                "MLflow: trial %d (run %s) closed as %s", record.number, run_id, record.state
            )

    def fit_end(self, run: RunContext, result: FitResult | None) -> None:
        """Log the best trial, leaderboard and model on the parent run, then end it."""
        state = run.state.get(NAME)
        if not state:
            logger.debug("MLflow: fit_end without fit_start; nothing to close")
            return
        client = open_client(state["tracking_uri"])
        parent_id = state["parent_run_id"]
        status = "FINISHED"
        try:
            if result is not None:  # runs a dead worker left open end as KILLED
                for record in result.leaderboard:
                    if record.state == "failed":
                        _close_stale_trial(client, state, record.number)
                log_result(client, run, state, result)
            elif not run.is_worker:
                status = "FAILED"
        finally:
            if state.get("_owns_parent", True):
                client.set_terminated(parent_id, status=status)
            write_record(run.run_dir, tracking_record(state, run.run_dir))
            for key in [k for k in state if k.startswith("_")]:  # bookkeeping, not results
                del state[key]

    def trial_start(self, run: RunContext, trial: TrialInfo) -> None:
        """Open the trial's child run, nested under the parent, with its hyperparameters.
        A retry of a dead worker's trial ends that trial's run as KILLED, if still open,
        and links to it by the tags ``autotransfer.retry_of`` (trial) and
        ``autotransfer.retry_of_run`` (run)."""
        run_id = _trial_run(run, trial.number, trial.backbone, trial.strategy, trial.params)
        if trial.retry_of is not None:
            state = run.state[NAME]
            client = open_client(state["tracking_uri"])
            _close_stale_trial(client, state, trial.retry_of)
            tags = {TAG_RETRY_OF: str(trial.retry_of)}
            first = find_trial_runs(client, state, trial.retry_of)
            if first:
                tags[f"{TAG_RETRY_OF}_run"] = first[0]
            log_batch(client, run_id, tags=tags)

    def epoch_end(
        self, run: RunContext, trial: TrialInfo, epoch: int, metrics: Mapping[str, float]
    ) -> None:
        """One point per metric at ``step=epoch``."""
        run_id = _trial_run(run, trial.number, trial.backbone, trial.strategy, trial.params)
        _log_metrics(run, trial.number, run_id, metrics, step=int(epoch))

    def trial_end(self, run: RunContext, record: TrialRecord) -> None:
        """Final scores, the state as a tag (and the error, when failed), then end the run."""
        from mlflow.utils import mlflow_tags

        run_id = _trial_run(run, record.number, record.backbone, record.strategy, record.params)
        state = run.state[NAME]
        client = open_client(state["tracking_uri"])
        trial = state.setdefault("_steps", {}).setdefault(str(record.number), {})
        if "step" not in trial:  # no epoch_end seen (another process, or none reported)
            for step, epoch_metrics in enumerate(record.history):
                _log_metrics(run, record.number, run_id, epoch_metrics, step=step)
        final = {k if k.startswith("val_") else f"val_{k}": v for k, v in record.metrics.items()}
        if record.val_accuracy is not None:
            final["val_accuracy"] = record.val_accuracy
        if record.seconds is not None:
            final["seconds"] = record.seconds
        final["epochs"] = len(record.history)
        # At the last epoch's step and later in time, so the runs table shows the kept scores.
        _log_metrics(run, record.number, run_id, final, step=trial.get("step", 0))
        tags = {TAG_STATE: record.state}
        if record.error:
            tags["autotransfer.error"] = truncate(record.error, MAX_TAG_VALUE)
            tags[mlflow_tags.MLFLOW_RUN_NOTE] = truncate(
                f"**{record.state}**\n\n```\n{record.error}\n```", MAX_TAG_VALUE
            )
        if record.skipped:
            tags["autotransfer.skipped"] = truncate(record.skipped, MAX_TAG_VALUE)
            tags[mlflow_tags.MLFLOW_RUN_NOTE] = f"**skipped**: {record.skipped}"
        log_batch(client, run_id, tags=tags)
        client.log_text(run_id, to_json(record.to_dict()), "trial.json")
        client.set_terminated(run_id, status=_STATUS_OF_STATE.get(record.state, "KILLED"))


def _close_stale_trial(client: MlflowClient, state: Mapping[str, Any], number: int) -> None:
    """End as KILLED the child run a killed process left RUNNING for trial ``number``."""
    for run_id in find_trial_runs(client, state, number, status="RUNNING"):
        client.set_tag(run_id, TAG_STATE, "killed")
        client.set_terminated(run_id, status="KILLED")
        logger.info("MLflow: trial %d (run %s) marked killed", number, run_id)


def _trial_run(
    run: RunContext, number: int, backbone: str, strategy: str, params: Mapping[str, Any]
) -> str:
    """The child run of trial ``number``, created on first use."""
    from mlflow.utils import mlflow_tags

    state = _state(run)
    runs = state["trial_runs"]
    if str(number) in runs:
        return runs[str(number)]
    client = open_client(state["tracking_uri"])
    child = client.create_run(
        state["experiment_id"],
        run_name=f"trial-{number} {strategy} {backbone}",
        tags={
            mlflow_tags.MLFLOW_PARENT_RUN_ID: state["parent_run_id"],
            mlflow_tags.MLFLOW_USER: user_name(),
            mlflow_tags.MLFLOW_SOURCE_NAME: "autotransfer",
            mlflow_tags.MLFLOW_SOURCE_TYPE: "LOCAL",
            TAG_TRIAL: str(number),
            TAG_STATE: "running",
            "autotransfer.backbone": backbone,
            "autotransfer.strategy": strategy,
        },
    )
    runs[str(number)] = child.info.run_id
    flat = {**flatten(params), "backbone": backbone, "strategy": strategy}
    log_batch(client, child.info.run_id, params=flat)
    return child.info.run_id


def _log_metrics(
    run: RunContext, number: int, run_id: str, metrics: Mapping[str, Any], *, step: int
) -> None:
    """Log numbers at ``step``, each call strictly later than the previous one for the
    trial (MLflow shows the value with the highest step, then the latest time)."""
    state = _state(run)
    trial = state.setdefault("_steps", {}).setdefault(str(number), {})
    now = max(int(time.time() * 1000), trial.get("time", 0) + 1)
    trial["time"] = now
    trial["step"] = max(step, trial.get("step", step))
    log_batch(open_client(state["tracking_uri"]), run_id, metrics=metrics, step=step, time_ms=now)


def _state(run: RunContext) -> dict[str, Any]:
    state = run.state.get(NAME)
    if not state:
        raise RuntimeError(
            "MLflowTracker has no MLflow run for this fit: fit_start(run) was not called, or "
            "it failed (see the error logged then). Call fit_start(run) before trial events."
        )
    return state
