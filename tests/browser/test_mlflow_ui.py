"""`autotransfer ui` on a real tiny fit, opened in headless Chromium: the experiment, the
parent run, its trial runs (expanded) with their validation accuracy, and a trial's own
page with its metrics and parent. Screenshots are kept as test artifacts."""

from __future__ import annotations

import pytest

from . import mlflow_ui
from .conftest import EXPERIMENT, N_TRIALS, RUN_FOLDER
from .driver import screenshot, shows_text, text, wait_for


@pytest.fixture(scope="module")
def tracked(fitted):
    """What the fit wrote to MLflow, read back with MLflow's client: the parent run and
    each trial run's id, name and last validation accuracy."""
    from mlflow import MlflowClient

    t = fitted.tracking
    client = MlflowClient(t["tracking_uri"])
    parent = client.get_run(t["parent_run_id"])
    children = client.search_runs(
        [t["experiment_id"]], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    trials = {r.info.run_id: (r.info.run_name, r.data.metrics["val_accuracy"]) for r in children}
    assert len(trials) == len(fitted.leaderboard) == N_TRIALS
    return t["experiment_id"], parent, trials


def test_runs_table_shows_the_fit_and_its_trials(browser, ui_url, tracked, keep):
    experiment_id, parent, trials = tracked
    driver = browser(width=1600, height=900)
    driver.get(mlflow_ui.runs_url(ui_url, experiment_id))
    mlflow_ui.wait_for_runs(driver, [parent.info.run_id])
    mlflow_ui.close_assistant(driver)
    collapsed = text(driver)
    mlflow_ui.expand(driver, parent.info.run_id, trials)
    mlflow_ui.show_columns(driver, ["val_accuracy"])
    shown = text(driver)
    names = mlflow_ui.cells(driver, "attributes.`Run Name`")
    accuracy = mlflow_ui.cells(driver, "metrics.`val_accuracy`")
    screenshot(driver, keep("mlflow-ui-trials.png"))

    assert EXPERIMENT in shown  # the experiment's name (breadcrumb, sidebar)
    assert parent.info.run_name == RUN_FOLDER and names[parent.info.run_id] == RUN_FOLDER
    # the trial runs are nested: collapsed, the table shows the parent only; expanded, all
    assert not any(name in collapsed for name, _ in trials.values())
    assert f"{len(trials) + 1} matching runs" in shown
    for run_id, (name, val_accuracy) in trials.items():
        assert name.startswith("trial-") and name in shown
        assert names[run_id] == name
        assert float(accuracy[run_id]) == pytest.approx(val_accuracy, abs=1e-3)
    assert accuracy[parent.info.run_id] == "-"  # the parent logs best_val_accuracy instead


def test_a_trial_run_page_shows_its_metrics_and_parent(browser, ui_url, tracked, keep):
    experiment_id, parent, trials = tracked
    run_id, (name, val_accuracy) = max(trials.items(), key=lambda kv: kv[1][0])
    driver = browser(width=1600, height=900)
    driver.get(mlflow_ui.run_url(ui_url, experiment_id, run_id))
    wait_for(driver, shows_text(name, "val_accuracy", f"Parent run\n{parent.info.run_name}"))
    mlflow_ui.close_assistant(driver)
    lines = [line.strip() for line in text(driver).splitlines()]
    screenshot(driver, keep("mlflow-ui-trial-run.png"))

    value = lines[lines.index("val_accuracy") + 1]  # the metrics table: name, then value
    assert float(value) == pytest.approx(val_accuracy, abs=1e-6)
    assert lines[lines.index("Parent run") + 1] == parent.info.run_name
    assert run_id in lines and {"train_loss", "val_log_loss", "epochs"} <= set(lines)
