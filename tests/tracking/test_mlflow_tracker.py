"""MLflowTracker against a real MLflow store in tmp_path: runs, nesting, metrics, states,
artifacts, the logged pyfunc model, resume and stale trials."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
import timm
from mlflow import MlflowClient
from mlflow.entities import ViewType

from autotransfer import plugins
from autotransfer.model import Classifier, Preprocessing
from autotransfer.results import FitResult
from autotransfer.search.records import TrialRecord
from autotransfer.tracking.base import RunContext, Tracker, TrialInfo
from autotransfer.tracking.mlflow_client import flatten as _flatten
from autotransfer.tracking.mlflow_client import valid_key as _key
from autotransfer.tracking.mlflow_tracker import MLflowTracker
from autotransfer.tracking.store import default_tracking_uri, tracking_uri_of

CLASSES = ("cat", "dog", "owl")  # the classes of the ``dataset`` fixture
BACKBONE = "random:test_resnet"
HISTORY = (
    {"train_loss": 1.1, "val_accuracy": 0.5},
    {"train_loss": 0.8, "val_accuracy": 0.75},  # the kept epoch
    {"train_loss": 0.6, "val_accuracy": 0.7},
)


def _children(client: MlflowClient, state: dict) -> dict[int, mlflow.entities.Run]:
    runs = client.search_runs(
        [state["experiment_id"]], f"tags.mlflow.parentRunId = '{state['parent_run_id']}'"
    )
    return {int(r.data.tags["autotransfer.trial"]): r for r in runs}


def _classifier(classes: tuple[str, ...]) -> Classifier:
    module = timm.create_model("test_resnet", num_classes=len(classes))
    prep = Preprocessing(resolution=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    return Classifier(module, classes=classes, preprocessing=prep, arch="test_resnet")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, dataset, make_run):
    """One fit driven through the tracker: a complete trial (3 epochs), a pruned one
    (1 epoch), a failed one, then the result with a real classifier."""
    run = make_run(tmp_path_factory.mktemp("tracked") / "flowers-run", dataset, fresh_store=True)
    tracker = MLflowTracker()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        tracker.fit_start(run)

        complete = TrialInfo(0, BACKBONE, "full_finetune", {"lr": 0.001, "epochs": 3})
        tracker.trial_start(run, complete)
        for epoch, metrics in enumerate(HISTORY):
            tracker.epoch_end(run, complete, epoch, metrics)
        best = TrialRecord(
            number=0,
            backbone=BACKBONE,
            strategy="full_finetune",
            params=dict(complete.params),
            state="complete",
            val_accuracy=0.75,
            metrics={"accuracy": 0.75, "macro_f1": 0.7, "log_loss": 0.9},
            history=HISTORY,
            seconds=12.5,
        )
        tracker.trial_end(run, best)

        pruned_info = TrialInfo(1, BACKBONE, "linear_probe", {"lr": 0.1})
        tracker.trial_start(run, pruned_info)
        tracker.epoch_end(run, pruned_info, 0, {"train_loss": 2.0, "val_accuracy": 0.25})
        pruned = TrialRecord(
            number=1,
            backbone=BACKBONE,
            strategy="linear_probe",
            params={"lr": 0.1},
            state="pruned",
            val_accuracy=0.25,
            history=({"train_loss": 2.0, "val_accuracy": 0.25},),
            seconds=2.0,
        )
        tracker.trial_end(run, pruned)

        failed_info = TrialInfo(2, "random:test_efficientnet", "full_finetune", {"lr": 3.0})
        tracker.trial_start(run, failed_info)
        failed = TrialRecord(
            number=2,
            backbone="random:test_efficientnet",
            strategy="full_finetune",
            params={"lr": 3.0},
            state="failed",
            error="RuntimeError: loss is nan (boom)",
            seconds=0.5,
        )
        tracker.trial_end(run, failed)

        result = FitResult(
            model=_classifier(dataset.classes),
            best=best,
            leaderboard=(best, pruned, failed),
            val_metrics={"accuracy": 0.75, "macro_f1": 0.7},
            test_metrics={"accuracy": 0.5},
            run_dir=str(run.run_dir),
            seconds=15.0,
        )
        tracker.fit_end(run, result)
    state = run.state["mlflow"]
    return SimpleNamespace(
        run=run,
        result=result,
        state=state,
        client=MlflowClient(state["tracking_uri"]),
        printed=out.getvalue() + err.getvalue(),
    )


def test_registered_as_the_mlflow_tracker():
    tracker = plugins.lookup("trackers", "mlflow")
    assert isinstance(tracker, MLflowTracker)
    assert isinstance(tracker, Tracker)


def test_store_in_the_run_folder_and_state_for_the_result(tracked):
    run_dir, state = Path(tracked.run.run_dir), tracked.state
    assert state["tracking_uri"] == default_tracking_uri(run_dir) == tracking_uri_of(run_dir)
    assert (run_dir / "mlflow.db").is_file()
    assert (run_dir / "mlartifacts").is_dir()
    for key in ("tracking_uri", "experiment_id", "parent_run_id", "model_uri"):
        assert state[key], key
    json.dumps(state)  # FitResult.tracking must stay JSON-ready
    assert not [k for k in state if k.startswith("_")]  # no bookkeeping left in the result
    record = json.loads((run_dir / "tracking" / "mlflow.json").read_text())
    assert record["parent_run_id"] == state["parent_run_id"]
    assert record["model_uri"] == state["model_uri"]
    assert record["tracking_uri"] is None  # the folder's own store: survives moving it
    experiment = tracked.client.get_experiment(state["experiment_id"])
    assert experiment.name == "flowers-run"
    assert experiment.artifact_location == (run_dir / "mlartifacts").resolve().as_uri()


def test_nothing_printed(tracked):
    assert tracked.printed == ""


def test_parent_run(tracked):
    parent = tracked.client.get_run(tracked.state["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "flowers-run"
    params = parent.data.params
    assert params["time_budget"] == "10m"
    assert params["search.max_trials"] == "3"
    assert json.loads(params["search.strategies"]) == ["full_finetune", "linear_probe"]
    assert len(params["notes"]) <= 6000 and params["notes"].endswith("[truncated]")
    assert params["data.num_classes"] == "3"
    assert params["data.num_images"] == str(len(tracked.run.dataset.records))
    assert params["data.train_size"] == str(len(tracked.run.dataset.train))
    tags = parent.data.tags
    assert tags["autotransfer.classes"] == ", ".join(CLASSES)
    assert tags["autotransfer.best_trial"] == "0"
    assert tags["autotransfer.best_backbone"] == BACKBONE
    assert json.loads(tags["autotransfer.best_params"]) == {"lr": 0.001, "epochs": 3}
    assert tags["autotransfer.best_run_id"] == tracked.state["trial_runs"]["0"]
    assert "Leaderboard" in tags["mlflow.note.content"]
    metrics = parent.data.metrics
    assert metrics["best_val_accuracy"] == 0.75
    assert metrics["best_val_macro_f1"] == 0.7
    assert metrics["test_accuracy"] == 0.5
    assert (metrics["trials_complete"], metrics["trials_pruned"], metrics["trials_failed"]) == (
        1,
        1,
        1,
    )
    contexts = {
        i.dataset.name.rsplit("/", 1)[1]: i.dataset.digest for i in parent.inputs.dataset_inputs
    }
    assert contexts == {"train": tracked.run.dataset.fingerprint("train")} | {
        "val": tracked.run.dataset.fingerprint("val")
    }


def test_parent_artifacts(tracked):
    client, parent_id = tracked.client, tracked.state["parent_run_id"]
    files = {a.path for a in client.list_artifacts(parent_id)}
    assert {"settings.json", "data", "ranking", "leaderboard"} <= files
    local = Path(client.download_artifacts(parent_id, "", str(Path(tracked.run.run_dir) / "dl")))
    text = (local / "leaderboard" / "leaderboard.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    assert [(r["number"], r["state"]) for r in rows] == [
        ("0", "complete"),
        ("1", "pruned"),
        ("2", "failed"),
    ]
    assert json.loads(rows[0]["params"]) == {"lr": 0.001, "epochs": 3}
    board = json.loads((local / "leaderboard" / "leaderboard.json").read_text())
    assert [r["number"] for r in board] == [0, 1, 2]
    assert json.loads((local / "data" / "descriptor.json").read_text())["num_classes"] == 3
    ranking = json.loads((local / "ranking" / "ranking.json").read_text())
    assert ranking["shortlist"] == [BACKBONE]
    assert BACKBONE in (local / "ranking" / "ranking.txt").read_text()


def test_three_nested_trial_runs(tracked):
    children = _children(tracked.client, tracked.state)
    assert sorted(children) == [0, 1, 2]
    assert {str(n): r.info.run_id for n, r in children.items()} == tracked.state["trial_runs"]
    first = children[0]
    assert first.info.run_name == f"trial-0 full_finetune {BACKBONE}"
    assert first.data.tags["autotransfer.backbone"] == BACKBONE
    assert first.data.tags["autotransfer.strategy"] == "full_finetune"
    assert first.data.params == {
        "lr": "0.001",
        "epochs": "3",
        "backbone": BACKBONE,
        "strategy": "full_finetune",
    }


def test_trial_states(tracked):
    children = _children(tracked.client, tracked.state)
    states = {n: (r.info.status, r.data.tags["autotransfer.state"]) for n, r in children.items()}
    assert states == {
        0: ("FINISHED", "complete"),
        1: ("FINISHED", "pruned"),
        2: ("FAILED", "failed"),
    }
    assert "boom" in children[2].data.tags["autotransfer.error"]
    assert "autotransfer.error" not in children[0].data.tags


def test_metric_history_per_epoch(tracked):
    client = tracked.client
    children = _children(client, tracked.state)
    history = client.get_metric_history(children[0].info.run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.1), (1, 0.8), (2, 0.6)]
    assert [m.step for m in client.get_metric_history(children[1].info.run_id, "train_loss")] == [0]
    # the runs table shows the kept scores, not the last epoch's
    final = children[0].data.metrics
    assert final["val_accuracy"] == 0.75
    assert final["val_macro_f1"] == 0.7
    assert final["seconds"] == 12.5
    assert final["epochs"] == 3
    assert children[1].data.metrics["val_accuracy"] == 0.25


def test_logged_model_is_pyfunc_from_code(tracked):
    client, state = tracked.client, tracked.state
    model = client.get_logged_model(state["model_uri"].removeprefix("models:/"))
    assert str(model.status) in ("READY", "LoggedModelStatus.READY")
    assert model.source_run_id == state["parent_run_id"]
    assert model.tags["autotransfer.trial"] == "0"
    root = Path(mlflow.artifacts.download_artifacts(state["model_artifact_uri"]))
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert "MLmodel" in files and "pyfunc_model.py" in files
    assert {"artifacts/classifier/model.safetensors", "artifacts/classifier/autotransfer.json"} <= (
        files
    )
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".pth"))]


def test_logged_model_predicts_like_the_result(tracked, monkeypatch):
    paths = [r.path for r in tracked.run.dataset.records]
    expected = tracked.result.model.predict(paths)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracked.state["tracking_uri"])
    loaded = mlflow.pyfunc.load_model(tracked.state["model_uri"])
    assert loaded.predict(pd.DataFrame({"path": paths})) == expected
    assert loaded.predict(paths) == expected
    assert loaded.predict(pd.Series(paths)) == expected
    proba = loaded.predict(pd.DataFrame({"path": paths}), params={"proba": True})
    assert list(proba.columns) == list(CLASSES)
    np.testing.assert_allclose(
        proba.to_numpy(), tracked.result.model.predict_proba(paths), rtol=1e-5, atol=1e-6
    )
    # the files alone load too, without a tracking URI
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    direct = mlflow.pyfunc.load_model(tracked.state["model_artifact_uri"])
    assert direct.predict(paths[:2]) == expected[:2]


def _crashed_fit(make_run, tmp_path: Path, dataset) -> tuple[RunContext, str]:
    """A fit that started trial 5 and died: its run is left RUNNING, no fit_end."""
    run = make_run(tmp_path / "run", dataset)
    tracker = MLflowTracker()
    tracker.fit_start(run)
    tracker.trial_start(run, TrialInfo(5, BACKBONE, "full_finetune", {"lr": 0.01}))
    tracker.epoch_end(run, TrialInfo(5, BACKBONE, "full_finetune", {}), 0, {"train_loss": 1.0})
    return run, run.state["mlflow"]["trial_runs"]["5"]


def test_resume_reuses_the_parent_and_kills_stale_trials(tmp_path, dataset, make_run, capfd):
    first, stale_id = _crashed_fit(make_run, tmp_path, dataset)
    parent_id = first.state["mlflow"]["parent_run_id"]
    client = MlflowClient(first.state["mlflow"]["tracking_uri"])

    resumed = make_run(first.run_dir, dataset, stale_trials=(5,))
    tracker = MLflowTracker()
    tracker.fit_start(resumed)
    assert resumed.state["mlflow"]["parent_run_id"] == parent_id
    stale = client.get_run(stale_id)
    assert stale.info.status == "KILLED"
    assert stale.data.tags["autotransfer.state"] == "killed"

    tracker.fit_end(resumed, None)  # a fit that produced no result
    assert client.get_run(parent_id).info.status == "FAILED"

    again = make_run(first.run_dir, dataset)
    tracker.fit_start(again)  # a finished parent is reopened, not duplicated
    assert again.state["mlflow"]["parent_run_id"] == parent_id
    assert client.get_run(parent_id).info.status == "RUNNING"
    parents = client.search_runs(
        [again.state["mlflow"]["experiment_id"]], "attributes.run_name = 'run'"
    )
    assert [r.info.run_id for r in parents] == [parent_id]
    assert capfd.readouterr() == ("", "")


def test_worker_logs_under_the_fits_parent(tmp_path, dataset, make_run):
    main, _ = _crashed_fit(make_run, tmp_path, dataset)
    parent_id = main.state["mlflow"]["parent_run_id"]
    worker = make_run(main.run_dir, dataset, is_worker=True)
    tracker = MLflowTracker()
    tracker.fit_start(worker)
    assert worker.state["mlflow"]["parent_run_id"] == parent_id
    info = TrialInfo(6, BACKBONE, "linear_probe", {"lr": 0.1})
    tracker.trial_start(worker, info)
    record = TrialRecord(6, BACKBONE, "linear_probe", {"lr": 0.1}, "complete", val_accuracy=0.5)
    tracker.trial_end(worker, record)
    tracker.fit_end(worker, None)
    client = MlflowClient(worker.state["mlflow"]["tracking_uri"])
    child = client.get_run(worker.state["mlflow"]["trial_runs"]["6"])
    assert child.data.tags["mlflow.parentRunId"] == parent_id
    assert child.info.status == "FINISHED"
    # the parent belongs to the fit: a worker does not end it
    assert client.get_run(parent_id).info.status == "RUNNING"


def test_worker_alone_opens_and_ends_the_parent(tmp_path, dataset, make_run):
    worker = make_run(tmp_path / "run", dataset, is_worker=True)
    tracker = MLflowTracker()
    tracker.fit_start(worker)
    tracker.fit_end(worker, None)
    client = MlflowClient(worker.state["mlflow"]["tracking_uri"])
    parent = client.get_run(worker.state["mlflow"]["parent_run_id"])
    assert parent.info.status == "FINISHED"  # a worker without result is not a failure
    assert parent.data.params["data.num_classes"] == "3"


def test_tracking_uri_and_experiment_from_settings(tmp_path, dataset, make_run):
    store = tmp_path / "elsewhere.db"
    run = make_run(tmp_path / "run", dataset, fresh_store=True)
    run.settings.update(tracking_uri=f"sqlite:///{store}", experiment="my experiment")
    tracker = MLflowTracker()
    tracker.fit_start(run)
    tracker.fit_end(run, None)
    assert store.is_file() and not (tmp_path / "run" / "mlflow.db").exists()
    assert tracking_uri_of(run.run_dir) == f"sqlite:///{store}"  # what the UI will open
    client = MlflowClient(f"sqlite:///{store}")
    assert client.get_experiment(run.state["mlflow"]["experiment_id"]).name == "my experiment"


def test_trial_event_before_fit_start_says_what_to_do(tmp_path, dataset, make_run):
    run = make_run(tmp_path / "run", dataset)
    with pytest.raises(RuntimeError, match=r"fit_start\(run\) was not called"):
        MLflowTracker().trial_start(run, TrialInfo(0, BACKBONE, "full_finetune", {}))


def test_flatten_and_keys():
    assert _flatten({"a": {"b": {"c": 1}}, "d": (1, 2), "e": None, "f": {}}) == {
        "a.b.c": "1",
        "d": "[1, 2]",
        "e": "None",
        "f": "{}",
    }
    assert _key("weird:key*with?chars") == "weird_key_with_chars"
    assert _key("../x") == "_.._x"
    assert len(_key("k" * 300)) == 250


_START = """
import sys
from pathlib import Path
from autotransfer.api import open_folder
from autotransfer.tracking.base import RunContext
from autotransfer.tracking.mlflow_tracker import MLflowTracker

data, cache, run_dir, worker = sys.argv[1:]
ds = open_folder(data, cache_dir=cache, progress=False)
run = RunContext(Path(run_dir), "study", {"seed": 0}, ds, is_worker=worker == "1")
MLflowTracker().fit_start(run)
print(run.state["mlflow"]["parent_run_id"])
"""


def test_processes_starting_together_share_one_store_and_parent(tmp_path, dataset):
    """A fit and a worker starting at once on a new folder: MLflow's store migrations and
    the parent run are created once (the run folder's lock)."""
    run_dir = tmp_path / "run"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _START, dataset.root, str(tmp_path / "c"), str(run_dir), w],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for w in ("0", "1")
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    parents = {out.strip() for out, _ in outs}
    assert len(parents) == 1
    client = MlflowClient(tracking_uri_of(run_dir))
    experiment = client.get_experiment_by_name("run")
    runs = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL)
    assert [r.info.run_id for r in runs] == list(parents)
