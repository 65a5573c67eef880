"""A worker on another "machine": another process, in another working folder, that knows
the study only by its storage URL. It reads the plan from PostgreSQL, logs its trials to
the fit's MLflow run on the tracking server, and keeps its models in the server's artifact
store, from where the fit's machine loads a pick it did not train."""

from __future__ import annotations

import logging
import tempfile
import uuid
from pathlib import Path

import optuna

import autotransfer
from autotransfer.databases import database_url
from autotransfer.model import Classifier
from autotransfer.testing.images import make_image_folder

from ..support import autotransfer_cli


def test_a_worker_elsewhere_contributes_trials_and_its_models_reach_the_fit(
    tmp_path, postgres_url, tracking_server, caplog
):
    folder = make_image_folder(tmp_path / "data", classes=("cat", "dog", "owl"), per_class=10)
    run = tmp_path / "machine-1" / "run"
    experiment = f"remote-{uuid.uuid4().hex[:8]}"
    opts = dict(
        run_dir=str(run),
        storage=postgres_url,
        tracking_uri=tracking_server,
        experiment=experiment,
        shared_checkpoints="mlflow",
        strategies=("feature_extraction", "partial_freeze"),
        backbones=("random:test_resnet", "random:test_efficientnet"),
        resolution=32,
        time_budget=None,
        progress=False,
    )
    autotransfer.fit(folder, n_trials=1, **opts)

    elsewhere = tmp_path / "machine-2"
    elsewhere.mkdir()
    done = autotransfer_cli("worker", "--storage", postgres_url, "--n-trials", "4", cwd=elsewhere)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "worker ran 3 trials" in done.stdout
    assert (elsewhere / "autotransfer-runs" / "autotransfer-worker" / "plan.json").exists()

    storage = optuna.storages.RDBStorage(database_url(postgres_url, "storage"))
    trials = optuna.load_study(study_name="autotransfer", storage=storage).get_trials()
    theirs = [t for t in trials if t.number >= 1]
    assert len(trials) == 4 and all(t.state.is_finished() for t in trials)
    # nothing of theirs in the fit's run folder: only what the storage and server hold
    assert not [t for t in theirs if (run / "checkpoints" / f"trial-{t.number:04d}").exists()]

    # every trial's run is under the one parent run, on the tracking server
    from mlflow import MlflowClient

    client = MlflowClient(tracking_server)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = {r.info.run_id for r in runs if "autotransfer.trial" not in r.data.tags}
    trial_runs = {
        int(r.data.tags["autotransfer.trial"]): r for r in runs if r.info.run_id not in parents
    }
    assert len(parents) == 1 and set(trial_runs) == {t.number for t in trials}
    assert {r.data.tags["mlflow.parentRunId"] for r in trial_runs.values()} == parents
    # the models the worker kept are in the server's artifact store, and load here
    shared = [
        t
        for t in theirs
        if "checkpoint" in {f.path for f in client.list_artifacts(trial_runs[t.number].info.run_id)}
    ]
    assert shared  # at least its first model was worth keeping
    image = str(next(folder.rglob("*.png")))
    for t in shared:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(trial_runs[t.number].info.run_id, "checkpoint", tmp)
            assert len(Classifier.load(Path(path)).predict([image])) == 1

    # the fit's machine builds the result from every trial; a pick trained elsewhere
    # comes from the artifact store, not from training it again
    with caplog.at_level(logging.INFO, logger="autotransfer"):
        result = autotransfer.fit(folder, n_trials=4, **opts)
    assert "training it again" not in caplog.text
    if result.best.number >= 1:
        assert f"Trial {result.best.number}'s model came from the shared checkpoints" in caplog.text
    loaded = autotransfer.load(run)
    assert loaded.best.number == result.best.number and len(loaded.predict([image])) == 1
