"""The winner: best validation accuracy, with statistical ties broken by log-loss."""

from __future__ import annotations

import optuna
import pytest

from autotransfer.search.selection import (
    FEW_PER_CLASS,
    PER_CLASS,
    contenders,
    ranked,
    tolerance,
    worth_keeping,
)


def _trial(number, acc, loss, n=49, state=optuna.trial.TrialState.COMPLETE, per_class=None):
    extra = {} if per_class is None else {PER_CLASS: per_class}
    t = optuna.trial.create_trial(
        state=state,
        value=acc if state == optuna.trial.TrialState.COMPLETE else None,
        user_attrs={"metrics": {"accuracy": acc, "log_loss": loss, "num_images": n}, **extra},
    )
    t.number = number
    return t


def test_tolerance_is_one_binomial_standard_error():
    assert tolerance(0.9, 100) == pytest.approx(0.03)
    assert tolerance(0.5, 0) == 0.0
    assert tolerance(0.9, 100, per_class=FEW_PER_CLASS) == pytest.approx(0.03)
    assert tolerance(0.9, 100, per_class=FEW_PER_CLASS - 1) == 0.0


def test_on_a_few_shot_training_set_accuracy_decides_and_log_loss_only_breaks_ties():
    # a head held near uniform has the lower log-loss and the lower accuracy
    better, timid, tied = (
        _trial(1, 46 / 49, 0.9, per_class=5),
        _trial(2, 45 / 49, 0.3, per_class=5),
        _trial(3, 46 / 49, 0.7, per_class=5),
    )
    assert {t.number for t in contenders([better, timid, tied])} == {1, 3}
    assert [t.number for t in ranked([better, timid, tied])] == [3, 1, 2]


@pytest.mark.parametrize("per_class", [None, 80.0])
def test_a_lucky_image_does_not_beat_a_better_calibrated_model(per_class):
    # the hymenoptera case: one more image right (0.939 vs 0.918 on 49) but worse log-loss;
    # trials of a study made before the training images per class read as many examples
    lucky, calibrated, worse = (
        _trial(6, 46 / 49, 0.238, per_class=per_class),
        _trial(0, 45 / 49, 0.165, per_class=per_class),
        _trial(2, 43 / 49, 0.10, per_class=per_class),
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
    # a few-shot search keeps only what ties or beats the best
    assert not worth_keeping(study, 0.89, 49, per_class=5)
    assert worth_keeping(study, 0.9, 49, per_class=5)
