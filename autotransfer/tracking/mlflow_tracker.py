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

>>> result = autotransfer.fit("data/")                  # doctest: +SKIP
>>> result.tracking["parent_run_id"], result.tracking["model_uri"]   # doctest: +SKIP
('3f2c...', 'models:/m-8e1d...')
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotransfer.tracking.base import RunContext, TrialInfo
from autotransfer.tracking.ui import (
    default_artifact_uri,
    default_tracking_uri,
    read_record,
    store_lock,
    tracking_uri_of,
    write_record,
)

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

    from autotransfer.results import FitResult, TrialRecord

logger = logging.getLogger(__name__)

NAME = "mlflow"
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
MODEL_NAME = "best_model"
# MLflow's limits (mlflow.utils.validation); kept here so that importing this module
# does not import MLflow.
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_KEY = 250
MAX_PER_BATCH = 100
# What the logged pyfunc model needs at load time (its pip requirements).
MODEL_REQUIREMENTS = ("autotransfer", "mlflow", "torch", "timm", "safetensors", "pillow")

TAG_TRIAL = "autotransfer.trial"
TAG_STATE = "autotransfer.state"
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

    # -- fit -------------------------------------------------------------------------

    def fit_start(self, run: RunContext) -> None:
        """Open (or reopen) the parent run; log settings, data, ranking; close stale trials."""
        Path(run.run_dir).mkdir(parents=True, exist_ok=True)  # SQLite makes no folders
        with store_lock(run.run_dir):
            recorded_uri = tracking_uri_of(run.run_dir)
            uri = str(run.settings.get("tracking_uri") or recorded_uri)
            client = _client(uri)
            experiment_name = str(run.settings.get("experiment") or _run_name(run))
            experiment_id = _experiment(client, experiment_name, run.run_dir, uri)
            record = read_record(run.run_dir) if uri == recorded_uri else {}
            parent_id = _reusable_parent(client, record, experiment_id)
            state = run.state[NAME] = {
                "tracking_uri": uri,
                "experiment_id": experiment_id,
                "experiment_name": experiment_name,
                "parent_run_id": parent_id,
                "trial_runs": {},
            }
            created = parent_id is None
            if created:
                parent_id, created = _new_parent(client, run, state)
                logger.info("MLflow: run %s in experiment %r (%s)", parent_id, experiment_name, uri)
            else:
                logger.info("MLflow: continuing run %s (%s)", parent_id, uri)
            reopened = _reopen(client, parent_id)
            # A worker joins the fit's parent run; it owns (and ends) it only if it opened it.
            state["_owns_parent"] = not run.is_worker or created or reopened
            if not run.is_worker or created:
                _log_fit_facts(client, parent_id, run)
        for number in run.stale_trials:
            _close_stale_trial(client, state, number)

    def fit_end(self, run: RunContext, result: FitResult | None) -> None:
        """Log the best trial, leaderboard and model on the parent run, then end it."""
        state = run.state.get(NAME)
        if not state:
            logger.debug("MLflow: fit_end without fit_start; nothing to close")
            return
        client = _client(state["tracking_uri"])
        parent_id = state["parent_run_id"]
        status = "FINISHED"
        try:
            if result is not None:
                _log_result(client, run, state, result)
            elif not run.is_worker:
                status = "FAILED"
        finally:
            if state.get("_owns_parent", True):
                client.set_terminated(parent_id, status=status)
            write_record(run.run_dir, _record_of(state, run.run_dir))
            for key in [k for k in state if k.startswith("_")]:  # bookkeeping, not results
                del state[key]

    # -- trials ----------------------------------------------------------------------

    def trial_start(self, run: RunContext, trial: TrialInfo) -> None:
        """Open the trial's child run, nested under the parent, with its hyperparameters."""
        _trial_run(run, trial.number, trial.backbone, trial.strategy, trial.params)

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
        client = _client(state["tracking_uri"])
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
            tags["autotransfer.error"] = _truncate(record.error, MAX_TAG_VALUE)
            tags[mlflow_tags.MLFLOW_RUN_NOTE] = _truncate(
                f"**{record.state}**\n\n```\n{record.error}\n```", MAX_TAG_VALUE
            )
        _log_batch(client, run_id, tags=tags)
        client.log_text(run_id, _json(record.to_dict()), "trial.json")
        client.set_terminated(run_id, status=_STATUS_OF_STATE.get(record.state, "KILLED"))


# -- the parent run --------------------------------------------------------------------


def _run_name(run: RunContext) -> str:
    return Path(run.run_dir).resolve().name or "autotransfer"


def _experiment(client: MlflowClient, name: str, run_dir: Path, uri: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = default_artifact_uri(run_dir) if uri == default_tracking_uri(run_dir) else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # created meanwhile by another process
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _reusable_parent(
    client: MlflowClient, record: Mapping[str, Any], experiment_id: str
) -> str | None:
    """The recorded parent run if it is in this store and experiment and not deleted."""
    from mlflow.exceptions import MlflowException

    parent_id = record.get("parent_run_id")
    if not parent_id:
        return None
    try:
        parent = client.get_run(parent_id)
    except MlflowException:
        logger.warning("MLflow: the recorded run %s is gone; starting a new one", parent_id)
        return None
    if parent.info.lifecycle_stage == "deleted" or parent.info.experiment_id != experiment_id:
        return None
    return parent_id


def _new_parent(client: MlflowClient, run: RunContext, state: dict[str, Any]) -> tuple[str, bool]:
    """Create the parent run and record it, unless another process recorded its own
    first: then delete ours and use theirs. Returns the parent id and whether it is ours."""
    from mlflow.utils import mlflow_tags

    parent = client.create_run(
        state["experiment_id"],
        run_name=_run_name(run),
        tags={
            mlflow_tags.MLFLOW_USER: _user(),
            mlflow_tags.MLFLOW_SOURCE_NAME: "autotransfer",
            mlflow_tags.MLFLOW_SOURCE_TYPE: "LOCAL",
            "autotransfer.run_dir": str(Path(run.run_dir).resolve()),
            "autotransfer.study": run.study_name,
            "autotransfer.version": _version("autotransfer"),
        },
    )
    mine = state["parent_run_id"] = parent.info.run_id
    if write_record(run.run_dir, _record_of(state, run.run_dir), exclusive=True):
        return mine, True
    same_store = tracking_uri_of(run.run_dir) == state["tracking_uri"]
    record = read_record(run.run_dir) if same_store else {}
    theirs = _reusable_parent(client, record, state["experiment_id"])
    if theirs is None:  # the record is stale (another store, a deleted run): replace it
        write_record(run.run_dir, _record_of(state, run.run_dir))
        return mine, True
    client.delete_run(mine)
    state["parent_run_id"] = theirs
    return theirs, False


def _reopen(client: MlflowClient, run_id: str) -> bool:
    if client.get_run(run_id).info.status == "RUNNING":
        return False
    client.update_run(run_id, status="RUNNING")
    return True


def _log_fit_facts(client: MlflowClient, parent_id: str, run: RunContext) -> None:
    """Settings as params, data facts as params and tags, descriptor and ranking as files."""
    from mlflow.utils import mlflow_tags

    existing = client.get_run(parent_id).data.params
    params = {
        _key(k): _truncate(v, MAX_PARAM_VALUE)
        for k, v in {**_flatten(run.settings), **_data_params(run.dataset)}.items()
    }
    changed = sorted(k for k, v in params.items() if k in existing and existing[k] != v)
    if changed:
        logger.info(
            "MLflow: settings changed since this run folder was first fitted (%s); MLflow "
            "params cannot change, the new values are in settings.json",
            ", ".join(changed),
        )
    ds = run.dataset
    tags = {
        "autotransfer.dataset": str(ds.root),
        "autotransfer.classes": ", ".join(ds.classes),
        mlflow_tags.MLFLOW_RUN_NOTE: _note(run),
    }
    if run.ranking is not None:
        tags["autotransfer.shortlist"] = ", ".join(run.ranking.shortlist)
    _log_batch(
        client,
        parent_id,
        params={k: v for k, v in params.items() if k not in existing},
        tags=tags,
    )
    client.log_text(parent_id, _json(run.settings), "settings.json")
    if run.descriptor is not None:
        client.log_text(parent_id, run.descriptor.to_json(), "data/descriptor.json")
    if run.ranking is not None:
        client.log_text(parent_id, run.ranking.table(), "ranking/ranking.txt")
        client.log_text(parent_id, run.ranking.to_json(), "ranking/ranking.json")
    if not existing:
        _log_datasets(client, parent_id, ds)


def _data_params(ds: Any) -> dict[str, str]:
    out = {
        "data.layout": ds.layout,
        "data.num_classes": len(ds.classes),
        "data.num_images": len(ds.train) + len(ds.val) + len(ds.test),
        "data.train_size": len(ds.train),
        "data.val_size": len(ds.val),
        "data.test_size": len(ds.test),
        "data.seed": ds.seed,
    }
    return {k: _truncate(str(v), MAX_PARAM_VALUE) for k, v in out.items()}


def _log_datasets(client: MlflowClient, parent_id: str, ds: Any) -> None:
    """Each split as an MLflow dataset input (the UI's "Datasets used")."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils import mlflow_tags

    name = Path(str(ds.root)).name or "data"
    inputs = [
        DatasetInput(
            Dataset(
                name=f"{name}/{split}",
                digest=ds.fingerprint(split),
                source_type="local",
                source=json.dumps({"uri": str(ds.root), "split": split}),
                profile=json.dumps({"num_images": len(ds.split(split))}),
            ),
            tags=[InputTag(mlflow_tags.MLFLOW_DATASET_CONTEXT, split)],
        )
        for split in ("train", "val", "test")
        if ds.split(split)
    ]
    client.log_inputs(parent_id, datasets=inputs)


def _note(run: RunContext) -> str:
    """The parent run's description in the UI (Markdown)."""
    ds = run.dataset
    sizes = ", ".join(f"{s} {len(ds.split(s))}" for s in ("train", "val", "test") if ds.split(s))
    lines = [
        f"**autotransfer** fit of `{ds.root}`: {len(ds.classes)} classes ({sizes}).",
        "",
        f"Run folder: `{Path(run.run_dir).resolve()}`",
    ]
    if run.ranking is not None:
        lines += ["", "Backbone ranking:", "", "```", run.ranking.table(), "```"]
    return _truncate("\n".join(lines), MAX_TAG_VALUE)


def _close_stale_trial(client: MlflowClient, state: Mapping[str, Any], number: int) -> None:
    """End as KILLED the child run a killed process left RUNNING for trial ``number``."""
    for run_id in _trial_runs(client, state, number, status="RUNNING"):
        client.set_tag(run_id, TAG_STATE, "killed")
        client.set_terminated(run_id, status="KILLED")
        logger.info("MLflow: trial %d (run %s) marked killed", number, run_id)


def _trial_runs(
    client: MlflowClient, state: Mapping[str, Any], number: int, status: str | None = None
) -> list[str]:
    """Ids of the child runs of trial ``number`` (any process's), newest first."""
    query = (
        f"tags.mlflow.parentRunId = '{state['parent_run_id']}' "
        f"and tags.`{TAG_TRIAL}` = '{int(number)}'"
    )
    if status:
        query += f" and attributes.status = '{status}'"
    runs = client.search_runs([state["experiment_id"]], filter_string=query)
    return [r.info.run_id for r in runs]


# -- the result ------------------------------------------------------------------------


def _log_result(
    client: MlflowClient, run: RunContext, state: dict[str, Any], result: FitResult
) -> None:
    from mlflow.utils import mlflow_tags

    parent_id = state["parent_run_id"]
    best = result.best
    best_run = state["trial_runs"].get(str(best.number)) or next(
        iter(_trial_runs(client, state, best.number)), None
    )
    tags = {
        "autotransfer.best_trial": str(best.number),
        "autotransfer.best_backbone": best.backbone,
        "autotransfer.best_strategy": best.strategy,
        "autotransfer.best_params": _truncate(json.dumps(best.params, default=str), MAX_TAG_VALUE),
    }
    if best_run:
        tags["autotransfer.best_run_id"] = best_run
    note = client.get_run(parent_id).data.tags.get(mlflow_tags.MLFLOW_RUN_NOTE, "")
    board = result.leaderboard_table()
    tags[mlflow_tags.MLFLOW_RUN_NOTE] = _truncate(
        f"{note}\n\nLeaderboard:\n\n```\n{board}\n```", MAX_TAG_VALUE
    )
    _log_batch(client, parent_id, tags=tags)
    client.log_text(parent_id, board, "leaderboard/leaderboard.txt")
    client.log_text(parent_id, _leaderboard_csv(result), "leaderboard/leaderboard.csv")
    client.log_text(
        parent_id,
        _json([r.to_dict() for r in result.leaderboard]),
        "leaderboard/leaderboard.json",
    )
    metrics = {f"best_val_{k.removeprefix('val_')}": v for k, v in result.val_metrics.items()}
    if best.val_accuracy is not None:
        metrics.setdefault("best_val_accuracy", best.val_accuracy)
    metrics.update({f"test_{k}": v for k, v in (result.test_metrics or {}).items()})
    metrics["fit_seconds"] = result.seconds
    for s in ("complete", "pruned", "failed"):
        metrics[f"trials_{s}"] = sum(r.state == s for r in result.leaderboard)
    model_id = None
    if result.model is not None:
        model_id = _create_logged_model(client, state, result)
    _log_batch(client, parent_id, metrics=metrics, model_id=model_id)
    if model_id is not None:
        _log_model_files(client, state, result, model_id)


def _leaderboard_csv(result: FitResult) -> str:
    buf = io.StringIO()
    fields = ["number", "state", "val_accuracy", "seconds", "strategy", "backbone"]
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*fields, "params", "error"])
    for r in result.leaderboard:
        row = ["" if getattr(r, f) is None else getattr(r, f) for f in fields]
        writer.writerow([*row, json.dumps(r.params, default=str), r.error])
    return buf.getvalue()


def _create_logged_model(client: MlflowClient, state: dict[str, Any], result: FitResult) -> str:
    best = result.best
    model = client.create_logged_model(
        state["experiment_id"],
        name=MODEL_NAME,
        source_run_id=state["parent_run_id"],
        params={k: _truncate(str(v), MAX_PARAM_VALUE) for k, v in _flatten(best.params).items()},
        tags={
            TAG_TRIAL: str(best.number),
            "autotransfer.backbone": best.backbone,
            "autotransfer.strategy": best.strategy,
        },
        model_type="autotransfer-classifier",
    )
    return model.model_id


def _log_model_files(
    client: MlflowClient, state: dict[str, Any], result: FitResult, model_id: str
) -> None:
    """The best model as a pyfunc "model from code": the classifier's safetensors and JSON
    plus ``pyfunc_model.py``; nothing is pickled."""
    import mlflow
    import pandas as pd
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import Model, ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    parent_id = state["parent_run_id"]
    try:
        logged = client.get_logged_model(model_id)
        signature = ModelSignature(
            inputs=Schema([ColSpec("string")]),
            outputs=Schema([ColSpec("string")]),
            params=ParamSchema([ParamSpec("proba", "boolean", False)]),
        )
        meta = Model(
            artifact_path=logged.artifact_location,
            model_uuid=model_id,
            run_id=parent_id,
            model_id=model_id,
        )
        with tempfile.TemporaryDirectory(prefix="autotransfer-mlflow-") as tmp, _quiet():
            saved = Path(result.save(Path(tmp) / "classifier"))
            local = Path(tmp) / "mlflow_model"
            mlflow.pyfunc.save_model(
                path=str(local),
                python_model=str(PYFUNC_CODE),
                artifacts={"model": str(saved)},
                signature=signature,
                input_example=pd.DataFrame({"path": ["images/example.jpg"]}),
                pip_requirements=_requirements(),
                mlflow_model=meta,
                metadata={"classes": list(result.classes), "backbone": result.best.backbone},
            )
            client.log_model_artifacts(model_id, str(local))
        client.finalize_logged_model(model_id, "READY")
        client.log_outputs(parent_id, [LoggedModelOutput(model_id, step=0)])
    except BaseException:
        try:
            client.finalize_logged_model(model_id, "FAILED")
        except Exception:  # keep the first error
            logger.debug("MLflow: could not mark model %s failed", model_id, exc_info=True)
        raise
    state["model_id"] = model_id
    state["model_uri"] = f"models:/{model_id}"
    state["model_artifact_uri"] = logged.artifact_location
    client.set_tag(parent_id, "autotransfer.model_uri", state["model_uri"])
    logger.info("MLflow: best model logged as %s", state["model_uri"])


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in MODEL_REQUIREMENTS:
        try:
            out.append(f"{dist}=={version(dist).split('+')[0]}")
        except PackageNotFoundError:
            out.append(dist)
    return out


# -- trials ----------------------------------------------------------------------------


def _trial_run(
    run: RunContext, number: int, backbone: str, strategy: str, params: Mapping[str, Any]
) -> str:
    """The child run of trial ``number``, created on first use."""
    from mlflow.utils import mlflow_tags

    state = _state(run)
    runs = state["trial_runs"]
    if str(number) in runs:
        return runs[str(number)]
    client = _client(state["tracking_uri"])
    child = client.create_run(
        state["experiment_id"],
        run_name=f"trial-{number} {strategy} {backbone}",
        tags={
            mlflow_tags.MLFLOW_PARENT_RUN_ID: state["parent_run_id"],
            mlflow_tags.MLFLOW_USER: _user(),
            mlflow_tags.MLFLOW_SOURCE_NAME: "autotransfer",
            mlflow_tags.MLFLOW_SOURCE_TYPE: "LOCAL",
            TAG_TRIAL: str(number),
            TAG_STATE: "running",
            "autotransfer.backbone": backbone,
            "autotransfer.strategy": strategy,
        },
    )
    runs[str(number)] = child.info.run_id
    flat = {**_flatten(params), "backbone": backbone, "strategy": strategy}
    _log_batch(client, child.info.run_id, params=flat)
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
    _log_batch(_client(state["tracking_uri"]), run_id, metrics=metrics, step=step, time_ms=now)


def _state(run: RunContext) -> dict[str, Any]:
    state = run.state.get(NAME)
    if not state:
        raise RuntimeError(
            "MLflowTracker has no MLflow run for this fit: fit_start(run) was not called, or "
            "it failed (see the error logged then). Call fit_start(run) before trial events."
        )
    return state


# -- MLflow helpers --------------------------------------------------------------------


def _client(uri: str) -> MlflowClient:
    """An MLflow client on ``uri``; MLflow's own INFO chatter is off unless the user set
    ``MLFLOW_LOGGING_LEVEL``."""
    import mlflow

    if "MLFLOW_LOGGING_LEVEL" not in os.environ:
        mlflow_logger = logging.getLogger("mlflow")
        if mlflow_logger.level < logging.WARNING:
            mlflow_logger.setLevel(logging.WARNING)
    return mlflow.MlflowClient(tracking_uri=uri)


@contextmanager
def _quiet() -> Iterator[None]:
    """No artifact progress bars on stderr while we copy model files (library code does
    not print); a user's own setting of the variable wins."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    if key in os.environ:
        yield
        return
    os.environ[key] = "false"
    try:
        yield
    finally:
        os.environ.pop(key, None)


def _log_batch(
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
    ps = [Param(_key(k), _truncate(str(v), MAX_PARAM_VALUE)) for k, v in (params or {}).items()]
    ts = [RunTag(k, _truncate(str(v), MAX_TAG_VALUE)) for k, v in (tags or {}).items()]
    ms = [
        Metric(_key(k), float(v), now, step, model_id=model_id)
        for k, v in (metrics or {}).items()
        if _is_number(v)
    ]
    for i in range(0, max(len(ps), len(ts), len(ms)), MAX_PER_BATCH):
        sl = slice(i, i + MAX_PER_BATCH)
        client.log_batch(run_id, metrics=ms[sl], params=ps[sl], tags=ts[sl])


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings as dotted keys; other values as strings (lists as JSON).

    >>> _flatten({"search": {"epochs": 3, "strategies": ["a", "b"]}, "seed": 0})
    {'search.epochs': '3', 'search.strategies': '["a", "b"]', 'seed': '0'}
    """
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, prefix=f"{key}."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(list(v), default=str)
        else:
            out[key] = str(v)
    return out


def _key(key: str) -> str:
    """A key MLflow accepts on every OS: letters, digits, ``_ - . /`` and spaces.

    >>> _key("backbone id: timm/x..y")
    'backbone id_ timm/x..y'
    """
    k = re.sub(r"[^\w.\- /]", "_", str(key))[:MAX_KEY]
    k = re.sub(r"/+", "/", k).strip("/")
    if not k or k.startswith("..") or "/../" in f"/{k}/" or "/./" in f"/{k}/" or k == ".":
        k = "_" + k.replace("/", "_")
    return k


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 15] + "... [truncated]"


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def _record_of(state: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """What ``<run_dir>/tracking/mlflow.json`` keeps; ``tracking_uri`` is None for the
    folder's own store, so that a moved run folder still finds it."""
    keys = ("experiment_id", "experiment_name", "parent_run_id", "model_uri")
    uri = state["tracking_uri"]
    own = uri == default_tracking_uri(run_dir)
    return {"tracking_uri": None if own else uri, **{k: state.get(k) for k in keys}}
