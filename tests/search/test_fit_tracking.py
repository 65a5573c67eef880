"""A fit with the default tracker: the MLflow store in the run folder holds the parent run,
one nested run per trial with per-epoch metrics and its state, and the logged model, which
loads back and predicts the same labels as the result."""

from __future__ import annotations

import pandas as pd

from .conftest import fit_tiny


def test_fit_is_tracked_in_mlflow(folder, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    result = fit_tiny(
        folder,
        run,
        trackers=("mlflow",),
        n_trials=4,
        trial_time_limit="10s",
        strategies=("feature_extraction", "partial_freeze"),
    )
    t = result.tracking
    assert t["tracking_uri"].startswith("sqlite:///") and (run / "mlflow.db").exists()
    client = MlflowClient(t["tracking_uri"])
    parent = client.get_run(t["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_val_accuracy"] == result.best.val_accuracy
    children = client.search_runs(
        [t["experiment_id"]], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    by_trial = {int(r.data.tags["autotransfer.trial"]): r for r in children}
    assert sorted(by_trial) == sorted(r.number for r in result.leaderboard)
    for record in result.leaderboard:
        r = by_trial[record.number]
        assert r.data.tags["autotransfer.state"] == record.state
        assert r.data.params["strategy"] == record.strategy
        assert r.data.params["backbone"] == record.backbone
        history = client.get_metric_history(r.info.run_id, "val_accuracy")
        epochs = sorted({m.step for m in history})
        assert epochs == list(range(len(record.history)))
        assert r.info.status == ("FAILED" if record.state == "failed" else "FINISHED")
    # the logged model loads without this process's objects and predicts like the result
    model = mlflow.pyfunc.load_model(t["model_artifact_uri"])
    paths = sorted(str(p) for p in folder.rglob("*.png"))[:6]
    assert list(model.predict(pd.DataFrame({"path": paths}))) == result.predict(paths)
