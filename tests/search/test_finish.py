"""The last mile after the search: the refit on train + validation, and the ensemble."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from autotransfer.model import Classifier
from autotransfer.search.checkpoints import checkpoint_dir
from autotransfer.search.finish import decide_flip

from .conftest import fit_tiny


def test_refit_trains_the_pick_again_on_train_and_val_at_its_selected_steps(folder, tmp_path):
    run = tmp_path / "run"
    result = fit_tiny(folder, run, strategies=("partial_freeze",), n_trials=1, refit=True)
    best = result.best
    assert result.refit["done"], result.refit
    assert result.refit["steps"] == best.info["best_step"]  # the step count selected at
    assert "30 training and validation images" in result.refit["why"]  # 24 + 6
    # the selection and its validation figures are the search's
    assert result.val_metrics["accuracy"] == best.val_accuracy
    searched = Classifier.load(checkpoint_dir(run, best.number))
    changed = [
        k
        for k, v in searched.module.state_dict().items()
        if v.is_floating_point() and not np.allclose(v, result.model.module.state_dict()[k])
    ]
    assert changed  # other weights: trained on more images
    assert result.model.metadata["refit"] and result.model.metadata["trial"] == best.number


def test_without_refit_the_search_weights_are_the_model(folder, tmp_path):
    run = tmp_path / "run"
    result = fit_tiny(folder, run, strategies=("feature_extraction",), n_trials=1, refit=False)
    assert result.refit == {"done": False, "why": "refit is off (refit=False)"}
    searched = Classifier.load(checkpoint_dir(run, result.best.number))
    for k, v in searched.module.state_dict().items():
        assert np.array_equal(v, result.model.module.state_dict()[k])


def test_the_ensemble_selection_reads_the_kept_trials_and_is_served_only_when_kept(
    folder, tmp_path
):
    result = fit_tiny(
        folder,
        tmp_path / "run",
        strategies=("feature_extraction",),
        n_trials=3,
        ensemble=True,
        refit=True,
    )
    choice = result.ensemble
    assert choice is not None and choice.best_trial in {r.number for r in result.leaderboard}
    if choice.kept:
        assert result.model.arch == "autotransfer_ensemble"
        assert result.refit["why"].startswith("the pick is an ensemble")
    else:
        assert result.model.arch != "autotransfer_ensemble" and result.refit["done"]


def test_flip_tta_is_measured_on_validation_and_never_where_flips_change_labels(folder, tmp_path):
    auto = fit_tiny(
        folder, tmp_path / "a", strategies=("feature_extraction",), n_trials=1, flip_tta="auto"
    )
    assert {"on", "why", "difference", "se"} <= set(auto.flip_tta)
    assert auto.flip_tta["on"] == (auto.flip_tta["difference"] > auto.flip_tta["se"])
    # no mirror images where they may change the label, whatever is asked
    for mode in ("auto", "on"):
        never = SimpleNamespace(flip_tta=mode, augment="crop")
        assert decide_flip(never, auto.model, None) == {
            "on": False,
            "why": "mirror images may change the label (augment='crop')",
        }
    on = fit_tiny(
        folder, tmp_path / "o", strategies=("feature_extraction",), n_trials=1, flip_tta="on"
    )
    assert on.model.arch == "autotransfer_ensemble" and on.model.model_kwargs["flip"]
    # the served model averages each image with its mirror image, saved and loaded
    served = Classifier.load(tmp_path / "o" / "model").module
    member, side = served.members[0], served.resolution
    x = torch.rand(2, 3, side, side)
    with torch.no_grad():
        want = torch.log((member(x).exp() + member(x.flip(-1)).exp()) / 2)
        assert torch.allclose(served(x), want, atol=1e-5)


def test_a_resumed_fit_reserves_the_refit_of_the_best_trial_an_earlier_process_ran(
    folder, tmp_path
):
    from autotransfer.api import open_folder
    from autotransfer.config import FitSettings
    from autotransfer.search.runner import prepare
    from autotransfer.search.study import best_train_seconds, load_plan

    from .conftest import TINY, study_of

    run = tmp_path / "run"
    result = fit_tiny(folder, run, strategies=("partial_freeze",), n_trials=1)
    seconds = result.best.info["train_seconds"]
    assert seconds > 0 and best_train_seconds(study_of(run)) == seconds
    # a new process on the run folder, with a budget: its last mile keeps the refit's time
    # although it trained nothing yet
    tiny = {k: v for k, v in TINY.items() if k != "progress"}
    budget = max(600, 10 * seconds)  # its refit fits in the last mile's share
    settings = FitSettings(**{**tiny, "time_budget": budget, "refit": True, "trackers": ()})
    dataset = open_folder(folder, progress=False)
    _, sr = prepare(run, dataset, settings, load_plan(run))
    assert sr.pick_seconds == seconds
    assert sr.last_mile_reserve() >= seconds


def test_a_frozen_heads_refit_is_priced_at_its_heads_seconds_not_its_features(folder, tmp_path):
    # its refit reads the cached features: what it costs is the head's fit, which the trial
    # times apart from the extraction that makes most of its seconds (priced at the whole
    # trial, a one-shot head's refit on 7x the images was given up for want of 3 s)
    result = fit_tiny(folder, tmp_path / "run", strategies=("feature_extraction",), n_trials=1)
    assert 0 < result.best.info["train_seconds"] < result.best.seconds / 2
