"""fit end to end on real images with tiny real timm models: the study, the result, resume."""

from __future__ import annotations

import json

import optuna
import pytest

import autotransfer
from autotransfer.search.selection import PER_CLASS
from autotransfer.strategies.feature_extraction import DEFAULT_C

from .conftest import TINY, fit_tiny, study_of


def test_fit_returns_the_best_trial_and_a_model_that_predicts(folder, tmp_path):
    run = tmp_path / "run"
    result = fit_tiny(
        folder,
        run,
        n_trials=4,
        strategies=("feature_extraction", "partial_freeze"),
        trial_time_limit="20s",
    )
    assert len(result.leaderboard) == 4
    assert result.best == result.leaderboard[0]
    assert result.best.state == "complete"
    best_acc = max(r.val_accuracy for r in result.leaderboard if r.state == "complete")
    # within one standard error of the best accuracy (6 validation images here)
    assert result.best.val_accuracy >= best_acc - (best_acc * (1 - best_acc) / 6) ** 0.5
    # the cheapest trials run first: one frozen-feature trial per shortlisted backbone
    first = sorted(result.leaderboard, key=lambda r: r.number)[:2]
    assert {r.strategy for r in first} == {"feature_extraction"}
    assert {r.backbone for r in first} == set(TINY["backbones"])
    assert set(result.val_metrics) >= {"accuracy", "balanced_accuracy", "macro_f1", "log_loss"}
    assert result.test_metrics is None  # the folder has no test split
    images = sorted(str(p) for p in folder.rglob("*.png"))[:5]
    labels = result.predict(images)
    assert len(labels) == 5 and set(labels) <= {"cat", "dog", "owl"}
    # saved in the run folder; loads back without training and predicts the same
    again = autotransfer.load(run)
    assert again.predict(images) == labels
    assert again.best.number == result.best.number
    assert (run / "plan.json").exists() and (run / "ranking.json").exists()
    assert json.loads((run / "plan.json").read_text())["shortlist"] == list(TINY["backbones"])
    # only the best trial's checkpoint is kept
    kept = [p.name for p in (run / "checkpoints").iterdir()]
    assert kept == [f"trial-{result.best.number:04d}"]


def test_fit_again_resumes_without_rerunning_finished_trials(folder, tmp_path):
    run = tmp_path / "run"
    opts = dict(run_dir=str(run), trackers=(), strategies=("feature_extraction",), **TINY)
    autotransfer.fit(folder, n_trials=3, **opts)
    before = {t.number: t.params for t in study_of(run).get_trials()}
    result = autotransfer.fit(folder, n_trials=5, **opts)
    trials = study_of(run).get_trials()
    assert len(trials) == 5
    assert {t.number: t.params for t in trials[:3]} == before
    # the enqueued priors were not enqueued (and run) a second time
    priors = [t for t in trials if t.params.get("feature_extraction.C") == DEFAULT_C]
    assert len(priors) == 2
    assert len(result.leaderboard) == 5


def test_fit_on_other_data_in_the_same_run_folder_is_refused(folder, tmp_path):
    from autotransfer.testing.images import make_image_folder

    run = tmp_path / "run"
    opts = dict(run_dir=str(run), trackers=(), strategies=("feature_extraction",), **TINY)
    autotransfer.fit(folder, n_trials=1, **opts)
    other = make_image_folder(tmp_path / "other", classes=("x", "y"), per_class=6)
    with pytest.raises(autotransfer.ConfigError, match="holds a study of other data"):
        autotransfer.fit(other, n_trials=1, **opts)


def test_time_budget_bounds_the_fit(folder, tmp_path):
    import time

    start = time.monotonic()
    result = fit_tiny(
        folder,
        tmp_path / "run",
        time_budget="15s",
        strategies=("feature_extraction", "full_finetune"),
    )
    elapsed = time.monotonic() - start
    assert result.best.state == "complete"
    # ranking, the trials and the final evaluation; a trial in flight stops at the deadline
    assert elapsed < 15 + 20, elapsed
    ft = [r for r in result.leaderboard if r.strategy == "full_finetune" and r.state == "complete"]
    # the BiT-HyperRule schedule (100 steps here) was shortened: by the deadline or by
    # early stopping
    hyperrule = [r for r in ft if r.params["steps"] == 100]
    assert hyperrule
    assert all(r.info["steps_run"] < 100 for r in hyperrule)


def test_unknown_option_gets_close_matches(folder):
    with pytest.raises(autotransfer.UnknownNameError, match="time_budget"):
        autotransfer.fit(folder, time_budgit="1m")


def test_settings_need_a_budget_or_a_trial_count():
    with pytest.raises(autotransfer.ConfigError, match="time_budget"):
        autotransfer.FitSettings(time_budget=None, n_trials=None)


def test_study_records_are_complete(folder, tmp_path):
    run = tmp_path / "run"
    fit_tiny(
        folder,
        run,
        n_trials=3,
        strategies=("feature_extraction", "discriminative_lr"),
        trial_time_limit="15s",
    )
    ran = [t for t in study_of(run).get_trials() if t.state != optuna.trial.TrialState.WAITING]
    assert len(ran) == 3  # (priors enqueued beyond n_trials wait, never run)
    for t in ran:
        assert t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        assert t.user_attrs["worker"]["pid"] > 0
        assert t.user_attrs["history"] and "val_accuracy" in t.user_attrs["history"][0]
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert t.user_attrs["metrics"]["accuracy"] == t.value
            # what the selection reads to tell a few-shot search
            ds = autotransfer.open_folder(folder)
            assert t.user_attrs[PER_CLASS] == round(len(ds.train) / len(ds.classes), 2)
        if t.user_attrs.get("prior"):  # enqueued priors run to the end, never pruned
            assert t.state == optuna.trial.TrialState.COMPLETE


def test_a_ranking_out_of_time_shortlists_by_the_prior_and_the_fit_goes_on(folder, tmp_path):
    """A ranking share too short to read any features: each candidate is listed as
    stopped, the feature-free prior orders the shortlist, and the fit still trains."""
    run = tmp_path / "run"
    result = autotransfer.fit(
        folder,
        run_dir=str(run),
        trackers=(),
        strategies=("feature_extraction",),
        top_k=1,
        hedge=False,
        **{**TINY, "time_budget": "60s", "n_trials": 2, "rank_share": 1e-9},
    )
    saved = json.loads((run / "ranking.json").read_text())
    assert len(saved["rows"]) == 2 and set(saved["skipped"]) == set(TINY["backbones"])
    assert saved["images"] == 0 and all(r["images"] == 0 for r in saved["rows"])
    assert saved["shortlist"] == [saved["rows"][0]["backbone"]]
    assert {r.backbone for r in result.leaderboard} == set(saved["shortlist"])
    assert result.best.state == "complete"
    assert result.ranking.skipped == saved["skipped"]


def test_fit_fine_tunes_another_familys_best_beside_the_top_pick(folder, tmp_path):
    """top_k=1 of a ResNet and an EfficientNet: the other joins the shortlist (another
    family), and the rule's first fine-tuning prior runs on both."""
    run = tmp_path / "run"
    result = autotransfer.fit(
        folder,
        run_dir=str(run),
        trackers=(),
        top_k=1,
        strategies=("feature_extraction", "partial_freeze"),
        **{**TINY, "n_trials": 4},
    )
    ranking = result.ranking
    assert ranking.shortlist == [ranking.rows[0].backbone, ranking.hedged]
    tuned = {r.backbone for r in result.leaderboard if r.strategy == "partial_freeze"}
    assert tuned == set(ranking.shortlist)
    assert json.loads((run / "ranking.json").read_text())["shortlist"] == ranking.shortlist


def test_a_fit_decoding_jpegs_on_the_device_trains_from_them(folder, tmp_path, caplog):
    """``jpeg_decode="device"`` reaches the trials' image cache (the CPU stands in for CUDA:
    the same batched torchvision path)."""
    import logging

    with caplog.at_level(logging.DEBUG, logger="autotransfer.strategies.images"):
        result = fit_tiny(
            folder,
            tmp_path / "run",
            n_trials=1,
            strategies=("partial_freeze",),
            jpeg_decode="device",
        )
    assert result.best.state == "complete" and result.best.strategy == "partial_freeze"
    assert "train images" in caplog.text and "decode on cpu into memory" in caplog.text
