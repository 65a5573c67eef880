"""The transfer verdict: the best transfer trial against the best no-transfer trial."""

from __future__ import annotations

import numpy as np
import optuna

from autotransfer.search.verdict import TransferVerdict, transfer_verdict

BASELINES = {"raw_pixels", "from_scratch"}
STRATEGIES = ["feature_extraction", "full_finetune", "from_scratch", "raw_pixels"]


def _study(*trials):
    """A study of complete trials ``(strategy, accuracy)`` on 200 validation images."""
    study = optuna.create_study(direction="maximize")
    dist = {
        "backbone": optuna.distributions.CategoricalDistribution(["b"]),
        "strategy": optuna.distributions.CategoricalDistribution(STRATEGIES),
    }
    for strategy, value in trials:
        study.add_trial(
            optuna.trial.create_trial(
                params={"backbone": "b", "strategy": strategy},
                distributions=dist,
                value=value,
                user_attrs={"metrics": {"num_images": 200, "log_loss": 1.0 - value}},
            )
        )
    return study.get_trials()


def _right(correct, n=200):
    """Probabilities (n, 2) of a model right on the images ``correct`` (a boolean mask)."""
    y = np.zeros(n, dtype=int)
    p = np.where(correct[:, None], [[0.9, 0.1]], [[0.1, 0.9]])
    return p, y


def test_transfer_that_wins_by_more_than_one_se_helps():
    trials = _study(("feature_extraction", 0.95), ("raw_pixels", 0.70), ("full_finetune", 0.9))
    v = transfer_verdict(trials, BASELINES)
    assert (v.transfer_trial, v.baseline_trial) == (0, 1)
    assert v.difference == 0.95 - 0.70 and not v.paired
    assert v.se == np.sqrt(0.95 * 0.05 / 200 + 0.7 * 0.3 / 200)
    assert v.outcome == "helps" and v.sentence.startswith("transfer helps: +25.0 points (SE")


def test_a_better_baseline_says_transfer_does_not_help():
    trials = _study(("feature_extraction", 0.80), ("from_scratch", 0.97), ("raw_pixels", 0.9))
    v = transfer_verdict(trials, BASELINES)
    assert v.baseline_strategy == "from_scratch" and v.outcome == "hurts"
    assert "transfer does not help on this data" in v.sentence
    assert "(from_scratch, trial 1) is 17.0 points better" in v.sentence


def test_within_one_se_is_no_evidence_either_way():
    v = transfer_verdict(_study(("feature_extraction", 0.90), ("raw_pixels", 0.89)), BASELINES)
    assert v.outcome == "tie"
    assert v.sentence.startswith("no evidence that transfer helps on this data")


def test_paired_se_counts_only_the_images_the_two_disagree_on():
    # both right on the same 180 images; transfer also right on 10 more: +5 points
    trials = _study(("feature_extraction", 0.95), ("raw_pixels", 0.90))
    a = np.arange(200) < 190
    b = np.arange(200) < 180
    (pa, y), (pb, _) = _right(a), _right(b)
    v = transfer_verdict(trials, BASELINES, {0: pa, 1: pb}, y)
    assert v.paired and abs(v.difference - 0.05) < 1e-12
    unpaired = transfer_verdict(trials, BASELINES)
    assert v.se < unpaired.se  # the 180 shared images add no noise
    assert v.outcome == "helps"


def test_no_verdict_without_a_finished_trial_of_each_kind():
    assert transfer_verdict(_study(("feature_extraction", 0.9)), BASELINES) is None
    assert transfer_verdict(_study(("raw_pixels", 0.9)), BASELINES) is None


def test_round_trips_through_a_dict():
    v = transfer_verdict(_study(("feature_extraction", 0.9), ("raw_pixels", 0.5)), BASELINES)
    d = v.to_dict()
    assert d["outcome"] == "helps" and d["sentence"] == v.sentence
    assert TransferVerdict.from_dict(d) == v
