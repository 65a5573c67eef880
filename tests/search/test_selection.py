"""The winner: best validation accuracy, with statistical ties broken by log-loss."""

from __future__ import annotations

import optuna
import pytest

from autotransfer.search.selection import contenders, ranked, tolerance, worth_keeping


def _trial(number, acc, loss, n=49, state=optuna.trial.TrialState.COMPLETE):
    t = optuna.trial.create_trial(
        state=state,
        value=acc if state == optuna.trial.TrialState.COMPLETE else None,
        user_attrs={"metrics": {"accuracy": acc, "log_loss": loss, "num_images": n}},
    )
    t.number = number
    return t


def test_tolerance_is_one_binomial_standard_error():
    assert tolerance(0.9, 100) == pytest.approx(0.03)
    assert tolerance(0.5, 0) == 0.0


def test_a_lucky_image_does_not_beat_a_better_calibrated_model():
    # the hymenoptera case: one more image right (0.939 vs 0.918 on 49) but worse log-loss
    lucky, calibrated, worse = _trial(6, 46 / 49, 0.238), _trial(0, 45 / 49, 0.165), _trial(
        2, 43 / 49, 0.10
    )
    assert {t.number for t in contenders([lucky, calibrated, worse])} == {6, 0}
    assert [t.number for t in ranked([lucky, calibrated, worse])] == [0, 6, 2]


def test_a_clear_win_is_kept_and_large_splits_mean_plain_accuracy():
    clear = [_trial(0, 0.95, 0.5), _trial(1, 0.80, 0.1)]
    assert ranked(clear)[0].number == 0
    big = [_trial(0, 0.95, 0.5, n=100_000), _trial(1, 0.94, 0.1, n=100_000)]
    assert ranked(big)[0].number == 0


def test_unfinished_trials_come_after_complete_ones():
    failed = _trial(0, 0.0, 9.0, state=optuna.trial.TrialState.FAIL)
    pruned = _trial(1, 0.0, 9.0, state=optuna.trial.TrialState.PRUNED)
    done = _trial(2, 0.5, 1.0)
    assert [t.number for t in ranked([failed, pruned, done])] == [2, 1, 0]


def test_models_worth_keeping_are_those_that_may_still_win():
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.9))
    assert worth_keeping(study, 0.89, 49)  # within the tolerance of 0.9
    assert not worth_keeping(study, 0.7, 49)
    assert worth_keeping(study, 0.95, 49)
