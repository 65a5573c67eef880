"""The parent run of a run folder: one per fit, shared by resumed fits and workers.

:func:`reusable_parent` finds the run recorded in ``<run_dir>/tracking/mlflow.json``,
:func:`new_parent` creates one (and yields to another process that recorded its own
first), :func:`log_fit_facts` logs the settings, data facts and ranking when a fit
starts, and :func:`log_result` the best trial, the leaderboard and the best model when
it ends. The trials' child runs are found by their tags (:func:`find_trial_runs`).

>>> experiment_id = get_experiment(client, "flowers", run_dir, uri)   # doctest: +SKIP
>>> parent_id = reusable_parent(client, read_record(run_dir), experiment_id)   # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotransfer.tracking.base import RunContext
from autotransfer.tracking.logged_model import create_logged_model, log_model_files
from autotransfer.tracking.mlflow_client import (
    MAX_PARAM_VALUE,
    MAX_TAG_VALUE,
    TAG_TRIAL,
    dist_version,
    flatten,
    log_batch,
    to_json,
    truncate,
    user_name,
    valid_key,
)
from autotransfer.tracking.store import (
    default_artifact_uri,
    default_tracking_uri,
    read_record,
    tracking_record,
    tracking_uri_of,
    write_record,
)

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

    from autotransfer.results import FitResult

logger = logging.getLogger(__name__)


def run_name(run: RunContext) -> str:
    """The parent run's name (and the default experiment's): the run folder's name."""
    return Path(run.run_dir).resolve().name or "autotransfer"


def get_experiment(client: MlflowClient, name: str, run_dir: Path, uri: str) -> str:
    """The id of experiment ``name``: restored if deleted, created if missing (with its
    artifacts in the run folder when ``uri`` is the folder's own store)."""
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


def reusable_parent(
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


def new_parent(client: MlflowClient, run: RunContext, state: dict[str, Any]) -> tuple[str, bool]:
    """Create the parent run and record it, unless another process recorded its own
    first: then delete ours and use theirs. Returns the parent id and whether it is ours."""
    from mlflow.utils import mlflow_tags

    parent = client.create_run(
        state["experiment_id"],
        run_name=run_name(run),
        tags={
            mlflow_tags.MLFLOW_USER: user_name(),
            mlflow_tags.MLFLOW_SOURCE_NAME: "autotransfer",
            mlflow_tags.MLFLOW_SOURCE_TYPE: "LOCAL",
            "autotransfer.run_dir": str(Path(run.run_dir).resolve()),
            "autotransfer.study": run.study_name,
            "autotransfer.version": dist_version("autotransfer"),
        },
    )
    mine = state["parent_run_id"] = parent.info.run_id
    if write_record(run.run_dir, tracking_record(state, run.run_dir), exclusive=True):
        return mine, True
    same_store = tracking_uri_of(run.run_dir) == state["tracking_uri"]
    record = read_record(run.run_dir) if same_store else {}
    theirs = reusable_parent(client, record, state["experiment_id"])
    if theirs is None:  # the record is stale (another store, a deleted run): replace it
        write_record(run.run_dir, tracking_record(state, run.run_dir))
        return mine, True
    client.delete_run(mine)
    state["parent_run_id"] = theirs
    return theirs, False


def reopen(client: MlflowClient, run_id: str) -> bool:
    if client.get_run(run_id).info.status == "RUNNING":
        return False
    client.update_run(run_id, status="RUNNING")
    return True


def log_fit_facts(client: MlflowClient, parent_id: str, run: RunContext) -> None:
    """Settings as params, data facts as params and tags, descriptor and ranking as files."""
    from mlflow.utils import mlflow_tags

    existing = client.get_run(parent_id).data.params
    params = {
        valid_key(k): truncate(v, MAX_PARAM_VALUE)
        for k, v in {**flatten(run.settings), **_data_params(run.dataset)}.items()
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
    log_batch(
        client,
        parent_id,
        params={k: v for k, v in params.items() if k not in existing},
        tags=tags,
    )
    client.log_text(parent_id, to_json(run.settings), "settings.json")
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
    return {k: truncate(str(v), MAX_PARAM_VALUE) for k, v in out.items()}


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
    return truncate("\n".join(lines), MAX_TAG_VALUE)


def find_trial_runs(
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


def log_result(
    client: MlflowClient, run: RunContext, state: dict[str, Any], result: FitResult
) -> None:
    from mlflow.utils import mlflow_tags

    parent_id = state["parent_run_id"]
    best = result.best
    best_run = state["trial_runs"].get(str(best.number)) or next(
        iter(find_trial_runs(client, state, best.number)), None
    )
    tags = {
        "autotransfer.best_trial": str(best.number),
        "autotransfer.best_backbone": best.backbone,
        "autotransfer.best_strategy": best.strategy,
        "autotransfer.best_params": truncate(json.dumps(best.params, default=str), MAX_TAG_VALUE),
    }
    if best_run:
        tags["autotransfer.best_run_id"] = best_run
    verdict = getattr(result, "verdict", None)
    ensemble, refit = getattr(result, "ensemble", None), getattr(result, "refit", None) or {}
    if ensemble is not None:
        tags["autotransfer.ensemble"] = truncate(ensemble.reason, MAX_TAG_VALUE)
    if refit:
        tags["autotransfer.refit"] = truncate(str(refit.get("why", "")), MAX_TAG_VALUE)
    flip = getattr(result, "flip_tta", None) or {}
    if flip:
        tags["autotransfer.flip_tta"] = truncate(str(flip.get("why", "")), MAX_TAG_VALUE)
    if verdict is not None:
        tags["autotransfer.verdict"] = truncate(verdict.sentence, MAX_TAG_VALUE)
        tags["autotransfer.verdict_outcome"] = verdict.outcome
    note = client.get_run(parent_id).data.tags.get(mlflow_tags.MLFLOW_RUN_NOTE, "")
    board = result.leaderboard_table()
    said = f"\n\nTransfer verdict: {verdict.sentence}." if verdict is not None else ""
    tags[mlflow_tags.MLFLOW_RUN_NOTE] = truncate(
        f"{note}{said}\n\nLeaderboard:\n\n```\n{board}\n```", MAX_TAG_VALUE
    )
    log_batch(client, parent_id, tags=tags)
    client.log_text(parent_id, board, "leaderboard/leaderboard.txt")
    client.log_text(parent_id, _leaderboard_csv(result), "leaderboard/leaderboard.csv")
    client.log_text(
        parent_id,
        to_json([r.to_dict() for r in result.leaderboard]),
        "leaderboard/leaderboard.json",
    )
    metrics = {f"best_val_{k.removeprefix('val_')}": v for k, v in result.val_metrics.items()}
    if best.val_accuracy is not None:
        metrics.setdefault("best_val_accuracy", best.val_accuracy)
    metrics.update({f"test_{k}": v for k, v in (result.test_metrics or {}).items()})
    metrics["fit_seconds"] = result.seconds
    if verdict is not None:  # transfer minus no transfer, validation accuracy
        metrics["transfer_gain"] = verdict.difference
        metrics["transfer_gain_se"] = verdict.se
    for s in ("complete", "pruned", "failed"):
        metrics[f"trials_{s}"] = sum(r.state == s for r in result.leaderboard)
    model_id = None
    if result.model is not None:
        model_id = create_logged_model(client, state, result)
    log_batch(client, parent_id, metrics=metrics, model_id=model_id)
    if model_id is not None:
        log_model_files(client, state, result, model_id)


def _leaderboard_csv(result: FitResult) -> str:
    buf = io.StringIO()
    fields = ["number", "state", "val_accuracy", "seconds", "strategy", "backbone"]
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*fields, "params", "error"])
    for r in result.leaderboard:
        row = ["" if getattr(r, f) is None else getattr(r, f) for f in fields]
        writer.writerow([*row, json.dumps(r.params, default=str), r.error])
    return buf.getvalue()
