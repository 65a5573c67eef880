"""The time budget keeps back what follows training (scoring and saving), so that a fit
ends within it: the reserve, the training deadline, and the search stopping for it."""

from __future__ import annotations

import time

import optuna
import pytest

import autotransfer
from autotransfer.config import FitSettings
from autotransfer.model import Classifier
from autotransfer.search import runner
from autotransfer.search.budget import CLOSING_SECONDS, Budget
from autotransfer.search.checkpoints import checkpoint_dir
from autotransfer.search.finish import serving_rate
from autotransfer.search.objective import train_model
from autotransfer.search.plan import make_plan
from autotransfer.search.search_run import LAST_MILE_SHARE, REFIT_MARGIN
from autotransfer.strategies.feature_extraction import FeatureExtraction
from autotransfer.transferability.ranking import Ranking, RankingRow

from .conftest import fit_tiny, study_of

BACKBONE = "random:test_resnet"
OTHER = "random:test_efficientnet"


def _settings(**options) -> FitSettings:
    return FitSettings(
        **{
            "backbones": (BACKBONE,),
            "strategies": ("feature_extraction",),
            "resolution": 32,
            "trackers": (),
            "time_budget": 600,
            **options,
        }
    )


def _ranking(seconds_per_image: dict[str, float]) -> Ranking:
    rows = tuple(
        RankingRow(
            backbone=b, scores={}, aggregate=0.0, rank=i + 1, images=30, extract_seconds=30 * rate
        )
        for i, (b, rate) in enumerate(seconds_per_image.items())
    )
    return Ranking(rows=rows, estimators=(), aggregate_estimators=(), top_k=1)


def _search_run(
    folder, tmp_path, *, ranking=None, settings=None, budget=None, shortlist=(BACKBONE,)
):
    s = settings or _settings()
    ds = autotransfer.open_folder(folder)
    plan = make_plan(ds, s, None, list(shortlist))
    (tmp_path / "run").mkdir(parents=True)
    study, sr = runner.prepare(
        tmp_path / "run",
        ds,
        s,
        plan,
        ranking=ranking,
        budget=budget or Budget.start(s.time_budget_seconds),
    )
    return study, sr


def test_the_reserve_is_the_scoring_of_val_and_test_once_at_the_slowest_rate(folder, tmp_path):
    # the ranking's forward pass estimates the rate; a backbone off the shortlist is not
    # counted; a rate measured in the search replaces the estimate
    _, sr = _search_run(folder, tmp_path, ranking=_ranking({BACKBONE: 0.1, "random:test_vit": 5.0}))
    val, test = len(sr.dataset.val), len(sr.dataset.test)
    assert val > 0
    assert sr.closing_reserve() == pytest.approx(0.1 * (val + test) + CLOSING_SECONDS)
    sr.scoring_rates[BACKBONE] = 0.5
    assert sr.closing_reserve() == pytest.approx(0.5 * (val + test) + CLOSING_SECONDS)


def test_a_measured_rate_scales_the_ranking_estimate_of_the_backbones_not_yet_scored(
    folder, tmp_path
):
    # a ranking on a few images reads ten times slower than the search's own scoring
    # (loading the weights and starting the loader outweigh the images); the backbone not
    # yet scored keeps its ratio to the measured one
    _, sr = _search_run(
        folder, tmp_path, ranking=_ranking({BACKBONE: 1.0, OTHER: 2.0}), shortlist=(BACKBONE, OTHER)
    )
    images = len(sr.dataset.val) + len(sr.dataset.test)
    assert sr.closing_reserve() == pytest.approx(2.0 * images + CLOSING_SECONDS)
    sr.scoring_rates[BACKBONE] = 0.1
    assert sr.closing_reserve() == pytest.approx(0.2 * images + CLOSING_SECONDS)
    sr.scoring_rates[OTHER] = 0.15  # measured: the estimate goes
    assert sr.closing_reserve() == pytest.approx(0.15 * images + CLOSING_SECONDS)


def test_without_a_rate_known_only_the_fixed_part_is_kept(folder, tmp_path):
    _, sr = _search_run(folder, tmp_path)
    assert sr.closing_reserve() == CLOSING_SECONDS
    _, unlimited = _search_run(
        folder, tmp_path / "b", settings=_settings(time_budget=None, n_trials=1)
    )
    assert unlimited.training_left() is None


class _SeesDeadline(FeatureExtraction):
    """The built-in frozen-feature strategy, noting the deadline it is given."""

    seen: list = []

    def train(self, ctx):
        self.seen.append(ctx.deadline)
        return super().train(ctx)


def test_training_ends_the_reserve_before_the_budget(folder, tmp_path):
    # (a trial time limit beyond the budget, so that the budget sets the deadline)
    _, sr = _search_run(
        folder,
        tmp_path,
        ranking=_ranking({BACKBONE: 0.2}),
        settings=_settings(trial_time_limit=3600),
    )
    sr.strategies["feature_extraction"] = _SeesDeadline()
    _SeesDeadline.seen.clear()
    # as the trial starts (its features then measure a rate); and the last mile's share
    reserve = sr.closing_reserve() + sr.last_mile_reserve()
    train_model(sr, BACKBONE, "feature_extraction", {"C": 1.0}, 0, lambda e, m: None)
    (deadline,) = _SeesDeadline.seen
    assert deadline == pytest.approx(sr.budget.deadline - reserve, abs=0.5)
    assert sr.budget.deadline - deadline > CLOSING_SECONDS


def _enqueue(study, n: int) -> None:
    for c in range(n):
        study.enqueue_trial(
            {
                "backbone": BACKBONE,
                "strategy": "feature_extraction",
                "feature_extraction.C": 10.0 ** (c - 1),
            }
        )


def test_the_search_stops_when_only_the_reserve_is_left(folder, tmp_path):
    # the shortlist's other candidate is slow to score (by the ranking's forward pass):
    # all the budget's time is kept back for it. The first trial runs (a fit needs a
    # model), then no other starts, though the budget has time and trials left (the first
    # backbone scores slower than its ranking figure, so the other's estimate only grows).
    s = _settings(n_trials=4, time_budget=600)
    ds = autotransfer.open_folder(folder)
    images = len(ds.val) + len(ds.test)
    study, sr = _search_run(
        folder,
        tmp_path,
        settings=s,
        shortlist=[BACKBONE, OTHER],
        ranking=_ranking({BACKBONE: 1e-6, OTHER: 600.0 / images}),
    )
    _enqueue(study, 4)
    runner.run_trials(study, sr, s, progress=False)
    states = [t.state for t in study.get_trials()]
    assert states == [optuna.trial.TrialState.COMPLETE] + [optuna.trial.TrialState.WAITING] * 3
    assert 0 < sr.scoring_rates[BACKBONE]  # the trial measured its own scoring


def test_once_the_pick_is_known_the_final_scoring_is_priced_at_its_own_rate(folder, tmp_path):
    # the shortlist's other backbone is slow to score (by the ranking): the search keeps its
    # pace back for the final scoring, as any trial may turn out the pick. The pick's own
    # pace then replaces it: its backbone's measured rate for a model that transfers; a
    # raw-pixel model (its probabilities came from training: no scoring of it was timed)
    # timed on validation images
    # (no time budget: however slow the machine, the search runs both trials)
    s = _settings(strategies=("feature_extraction", "raw_pixels"), n_trials=2, time_budget=None)
    study, sr = _search_run(
        folder,
        tmp_path,
        settings=s,
        shortlist=[BACKBONE, OTHER],
        ranking=_ranking({BACKBONE: 1.0, OTHER: 100.0}),
    )
    images = len(sr.dataset.val) + len(sr.dataset.test)
    study.enqueue_trial({"backbone": BACKBONE, "strategy": "feature_extraction"})
    study.enqueue_trial({"backbone": BACKBONE, "strategy": "raw_pixels"})
    runner.run_trials(study, sr, s, progress=False)
    sr.budget = Budget.start(600)  # the last mile prices its work only under a budget
    done = {
        t.params["strategy"]: t
        for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    }

    def rate(strategy: str) -> float:
        t = done[strategy]
        return serving_rate(sr, t, Classifier.load(checkpoint_dir(sr.run_dir, t.number)))

    assert rate("feature_extraction") == sr.backbone_rates()[BACKBONE]
    timed = rate("raw_pixels")
    assert 0 < timed < sr.scoring_rate() / 10  # the slower backbone's, scaled as measured
    slowest = sr.closing_reserve()
    assert slowest == pytest.approx(sr.scoring_rate() * images + CLOSING_SECONDS)
    sr.pick_rate = timed
    assert sr.closing_reserve() == pytest.approx(timed * images + CLOSING_SECONDS)


def test_the_last_mile_keeps_back_a_refit_only_where_it_fits_in_its_share(folder, tmp_path):
    # a refit that its share of the budget cannot hold is left to the time the search
    # leaves: the time it could not use goes to trials
    _, sr = _search_run(folder, tmp_path, settings=_settings(refit=True, flip_tta="off"))
    share = LAST_MILE_SHARE * 600
    sr.pick_seconds = 0.5 * share
    assert sr.last_mile_reserve() == pytest.approx(REFIT_MARGIN * sr.pick_seconds)
    sr.pick_seconds = share
    assert sr.last_mile_reserve() == 0.0
    # flip TTA measured on the mirrored validation images, then served on the test split's
    sr.flip_tta, sr.pick_seconds, sr.scoring_rates[BACKBONE] = "auto", 0.0, 0.01
    assert sr.augment == "crop_flip"
    images = len(sr.dataset.val) + len(sr.dataset.test)
    assert sr.last_mile_reserve() == pytest.approx(0.01 * images)


def test_with_time_to_train_the_search_runs_its_trials(folder, tmp_path):
    s = _settings(n_trials=3, time_budget=600)
    study, sr = _search_run(
        folder,
        tmp_path,
        settings=s,
        shortlist=[BACKBONE, OTHER],
        ranking=_ranking({BACKBONE: 0.01, OTHER: 0.01}),
    )
    _enqueue(study, 3)
    runner.run_trials(study, sr, s, progress=False)
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 3


def _timed_fit(folder, tmp_path, backbones, *, budget, rank_share):
    """A frozen-feature fit with a time budget of ``budget`` seconds: its result and how
    many seconds it took."""
    start = time.monotonic()
    result = fit_tiny(
        folder,
        tmp_path / "run",
        backbones=backbones,
        strategies=("feature_extraction",),
        time_budget=budget,
        rank_share=rank_share,
    )
    return result, time.monotonic() - start


def test_a_slow_estimator_does_not_make_fit_overrun_its_budget(folder, tmp_path, slow_estimator):
    """The ranking waits for an estimator until its share of the budget is spent, and no
    longer: the fit still trains a model and ends within its budget."""
    result, elapsed = _timed_fit(folder, tmp_path, (BACKBONE, OTHER), budget=20, rank_share=0.5)
    assert elapsed < 20 + 10, elapsed  # without the limit inside scoring: 600 s and more
    assert result.best.state == "complete"
    assert any("slow_estimator" in why for why in result.ranking.skipped.values())


def test_fit_sizes_the_ranking_sample_to_its_budget_and_trains_on_its_features(tmp_path, caplog):
    """Past the pilot's 500 images the ranking's sample is sized from the pilot's rate; the
    frozen-feature trial then reads the ranking's parts back from the cache and trains on
    them, and on more of the split while its time lasts."""
    import json
    import logging

    from autotransfer.testing.images import make_image_folder

    folder = make_image_folder(
        tmp_path / "data", classes=("a", "b", "c"), per_class=250, size=(16, 16)
    )  # 600 training images
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="autotransfer"):
        result = fit_tiny(
            folder,
            run,
            backbones=(BACKBONE,),
            strategies=("feature_extraction",),
            time_budget=300,
            n_trials=1,
            rank_sample_size=560,
        )
    ranking = json.loads((run / "ranking.json").read_text())
    assert (ranking["images"], ranking["pilot"], ranking["split_images"]) == (560, 500, 600)
    assert result.ranking.pilot == 500 and "pilot of 500" in result.ranking.sample_note()
    assert result.best.state == "complete"
    read_back = [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith(f"{BACKBONE}: 5") and "from cache" in r.getMessage()
    ]
    # the descriptors' and the trial's reads of the two parts: no part computed again
    assert any(m.startswith(f"{BACKBONE}: 500 x") for m in read_back), read_back
    assert any(m.startswith(f"{BACKBONE}: 560 x") for m in read_back), read_back


def test_the_best_frozen_head_on_the_sample_then_reads_more_of_the_split(tmp_path):
    """With a split larger than the ranking's sample, each shortlisted backbone's frozen
    head is trained on the sample first; the best of them then runs again, before any
    other prior, and reads more of the split."""
    from autotransfer.testing.images import make_image_folder

    folder = make_image_folder(
        tmp_path / "data", classes=("a", "b", "c"), per_class=100, size=(16, 16)
    )  # 240 training images
    run = tmp_path / "run"
    result = fit_tiny(
        folder,
        run,
        backbones=(BACKBONE, OTHER),
        strategies=("feature_extraction", "partial_freeze"),
        time_budget=600,
        n_trials=3,
        rank_sample_size=60,
        hedge=False,
    )
    study = study_of(run)
    trials = sorted(
        study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: t.number
    )
    first, second, grown = trials
    assert {first.params["backbone"], second.params["backbone"]} == {BACKBONE, OTHER}
    assert all(t.params["strategy"] == "feature_extraction" for t in trials)
    assert first.user_attrs["info"]["train_images"] == 60
    assert second.user_attrs["info"]["train_images"] == 60
    best = max((first, second), key=lambda t: (t.value, -t.number))
    assert grown.user_attrs.get("grow") and grown.params == best.params
    assert grown.user_attrs["info"]["train_images"] == 240  # the whole split, in time
    assert len(result.leaderboard) == 3


def test_the_no_transfer_baselines_run_before_the_best_head_grows(tmp_path):
    """Tiny images (16 px: transfer in doubt): the raw-pixel model and the network from
    scratch run in the first round, with the frozen heads on the sample, before the best
    head reads the whole split; the fine-tunes after it."""
    from autotransfer.testing.images import make_image_folder

    folder = make_image_folder(
        tmp_path / "data", classes=("a", "b", "c"), per_class=100, size=(16, 16)
    )  # 240 training images
    run = tmp_path / "run"
    fit_tiny(
        folder,
        run,
        backbones=(BACKBONE,),
        strategies=("feature_extraction", "partial_freeze", "raw_pixels", "from_scratch"),
        time_budget=600,
        trial_time_limit=4,
        n_trials=5,
        rank_sample_size=60,
    )
    trials = sorted(study_of(run).get_trials(), key=lambda t: t.number)
    order = [("grow " if t.user_attrs.get("grow") else "") + t.params["strategy"] for t in trials]
    assert order == [
        "raw_pixels",
        "feature_extraction",
        "from_scratch",
        "grow feature_extraction",
        "partial_freeze",
    ]


def _register_slow_network() -> str:
    """A timm architecture whose forward pass takes 6 s a batch: a backbone far slower
    than the time a test gives it (registered in timm's own registry, as a user's
    architecture would be)."""
    import timm
    from timm.models import register_model

    name = "test_resnet_slow"
    if not timm.is_model(name):

        def test_resnet_slow(pretrained: bool = False, **kwargs):
            model = timm.create_model("test_resnet", pretrained=False, **kwargs)
            fast = model.forward_features

            def slow(x):
                time.sleep(6.0)
                return fast(x)

            model.forward_features = slow
            return model

        test_resnet_slow.__module__ = __name__
        register_model(test_resnet_slow)
    return f"random:{name}"


def test_a_slow_backbone_does_not_make_fit_overrun_its_budget(folder, tmp_path):
    """Extraction checks the time batch by batch: a candidate whose pass cannot end within
    the ranking's share is stopped and listed as not ranked, and the fit still ends
    within its budget with a model."""
    slow = _register_slow_network()
    # equal priors: ranked in this order
    result, elapsed = _timed_fit(folder, tmp_path, (BACKBONE, slow), budget=30, rank_share=0.3)
    assert elapsed < 30 + 8, elapsed  # one pass of the slow network alone: 6 s x 3 batches
    assert result.best.state == "complete"
    assert slow in result.ranking.skipped, result.ranking.skipped
    assert "time" in result.ranking.skipped[slow]
