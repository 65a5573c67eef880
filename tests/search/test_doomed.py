"""No doomed trials: a fine-tune whose time cannot give its schedule enough steps is
skipped, with the reason in the study, the result, the CLI's leaderboard and MLflow."""

from __future__ import annotations

import optuna
import pytest

import autotransfer
from autotransfer import plugins
from autotransfer.strategies.full_finetune import FullFinetune

from .conftest import fit_tiny, study_of


class LongFinetune(FullFinetune):
    """The full fine-tune with a schedule no trial's time can hold (a million steps)."""

    name = "long_finetune"

    def defaults(self, *, search):
        return {**super().defaults(search=search), "steps": 1_000_000}


class Plugin:
    @autotransfer.hookimpl
    def autotransfer_register_strategies(self):
        return [LongFinetune()]


@pytest.fixture
def long_finetune():
    plugins.register_plugin(Plugin(), name="long_finetune_plugin")
    yield
    plugins.reset_plugin_manager()


def test_a_fine_tune_that_cannot_get_its_steps_is_skipped_and_says_why(
    folder, tmp_path, long_finetune
):
    run = tmp_path / "run"
    result = fit_tiny(
        folder,
        run,
        backbones=("random:test_resnet",),
        strategies=("feature_extraction", "long_finetune"),
        n_trials=2,
        trial_time_limit=30,
        trackers=("mlflow",),
    )
    head, long = sorted(study_of(run).get_trials(), key=lambda t: t.number)
    assert head.state == optuna.trial.TrialState.COMPLETE
    # skipped on its first steps' pace: far fewer than the million fit in 30 s
    assert long.state == optuna.trial.TrialState.PRUNED
    assert long.user_attrs["seconds"] < 20
    (record,) = [r for r in result.leaderboard if r.strategy == "long_finetune"]
    assert record.skipped.startswith("only ") and "of its 1000000 steps fit" in record.skipped
    table = result.leaderboard_table()
    assert "skipped" in table.splitlines()[3] and f"skipped #{long.number}: only " in table
    assert result.best.strategy == "feature_extraction"
    # the MLflow run of the trial says it too
    from mlflow import MlflowClient

    client = MlflowClient(result.tracking["tracking_uri"])
    experiment = client.get_run(result.tracking["parent_run_id"]).info.experiment_id
    (trial_run,) = client.search_runs([experiment], f"tags.`autotransfer.trial` = '{long.number}'")
    assert trial_run.data.tags["autotransfer.skipped"] == record.skipped
