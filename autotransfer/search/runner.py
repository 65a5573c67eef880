"""Running the study of a run folder: set up the trials' shared state, run them within the
budget with a progress bar, and report what finished. ``fit`` and ``autotransfer worker``
both go through here."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from autotransfer import plugins
from autotransfer.backbones.inputs import resolve_device
from autotransfer.backbones.load import resolve_backbones
from autotransfer.config import ExtractionSettings, FitSettings
from autotransfer.data.sample import sample_split
from autotransfer.data.types import ImageDataset
from autotransfer.progress import progress_bar
from autotransfer.search.budget import Budget
from autotransfer.search.checkpoints import CheckpointStore, shared_folder
from autotransfer.search.objective import objective
from autotransfer.search.plan import CHEAP, doubtful, prior_trials, rank_sample, short_budget
from autotransfer.search.search_run import SearchRun
from autotransfer.search.shared_study import publish_plan, publish_tracking
from autotransfer.search.study import best_train_seconds, close_dead_trials, open_study, record_of
from autotransfer.search.trial_limit import TrialLimitReached, finished_trials
from autotransfer.strategies.base import SearchContext, transfers
from autotransfer.strategies.images import ImageCache
from autotransfer.strategies.schedules import hyperrule_steps
from autotransfer.tracking.base import RunContext, notify
from autotransfer.tracking.mlflow_checkpoints import MlflowCheckpoints

log = logging.getLogger(__name__)

MIN_TRIAL_SECONDS = 5.0  # no trial starts with less than this left to train in the budget


def prepare(
    run_dir: Path,
    dataset: ImageDataset,
    settings: FitSettings,
    plan: dict[str, Any],
    *,
    descriptor: Any = None,
    ranking: Any = None,
    is_worker: bool = False,
    budget: Budget | None = None,
) -> tuple[optuna.Study, SearchRun]:
    """Open the study (marking trials of dead processes failed) and the trials' state.

    ``budget`` runs from the start of the fit (ranking included); default: from now.
    """
    device = resolve_device(settings.device)
    study = open_study(
        run_dir,
        storage=settings.storage,
        study_name=settings.study_name,
        seed=settings.seed,
        pruner=settings.pruner,
        create=not is_worker,
        heartbeat=settings.heartbeat_seconds,
    )
    stale, completed = close_dead_trials(study)
    full = dataset
    if settings.val_sample_size is not None:  # the search validates on a bounded sample
        dataset = sample_split(dataset, "val", settings.val_sample_size, seed=settings.seed)
    specs = {s.id: s for s in resolve_backbones(plan["shortlist"])}
    strategies = {n: plugins.lookup("strategies", n) for n in plan["strategies"]}
    batch = int(settings.batch_size or (128 if device.type == "cuda" else 32))
    side = plan["median_side"]
    search = SearchContext(
        num_train=len(dataset.train),
        num_classes=len(dataset.classes),
        median_side=side,
        similarity=plan.get("similarity"),
        device=device.type,
        batch_size=batch,
        descriptor=descriptor,
    )
    run = RunContext(
        run_dir=Path(run_dir),
        study_name=settings.study_name,
        settings=settings.to_dict(),
        dataset=dataset,
        descriptor=descriptor,
        ranking=ranking,
        is_worker=is_worker,
        stale_trials=tuple(stale),
        recovered_trials=tuple(
            record_of(t) for t in study.get_trials(deepcopy=False) if t.number in completed
        ),
    )
    trackers = [plugins.lookup("trackers", n) for n in settings.trackers]
    sr = SearchRun(
        dataset=dataset,
        full_dataset=None if dataset is full else full,
        rank_sample=rank_sample(ranking, settings),
        specs=specs,
        strategies=strategies,
        search=search,
        run=run,
        trackers=trackers,
        budget=budget or Budget.start(settings.time_budget_seconds),
        trial_limit=settings.trial_time_limit_seconds,
        device=device,
        seed=settings.seed,
        resolution=int(plan["resolution"]),
        batch_size=batch,
        num_workers=settings.num_workers or 0,
        augment=settings.augment,
        class_weights=None
        if plan.get("class_weights") is None
        else np.asarray(plan["class_weights"], dtype=np.float32),
        images=ImageCache(
            dataset,
            memory_cap=settings.image_cache_memory,
            device=device,
            jpeg_decode=settings.jpeg_decode,
        ),
        feature_settings=ExtractionSettings(
            resolution=int(plan["resolution"]),
            device=settings.device,
            num_workers=settings.num_workers,
            jpeg_decode=settings.jpeg_decode,
        ),
        ensemble=settings.ensemble,
        refit=settings.refit,
        flip_tta=settings.flip_tta,
    )
    # a resumed study's best trial may be another process's: the last mile reserves its refit
    sr.pick_seconds = best_train_seconds(study)
    sr.checkpoints = checkpoint_store(settings.shared_checkpoints, sr.run)
    if not is_worker:
        publish_plan(study, plan, settings.to_dict())
    return study, sr


def checkpoint_store(where: str | None, run: RunContext) -> CheckpointStore | None:
    """The store of ``shared_checkpoints``: the trials' MLflow runs, a shared folder, or
    None (the run folder only)."""
    if where is None:
        return None
    if where == "mlflow":
        return MlflowCheckpoints(run)
    return shared_folder(where)


def enqueue_priors(study: optuna.Study, sr: SearchRun) -> None:
    """Enqueue the plan's prior trials (:func:`~autotransfer.search.plan.prior_trials`).
    Under a time budget, where the training split is larger than the ranking's sample,
    the frozen-feature heads come first alone: :func:`grow_the_best` enqueues the rest
    once they are done, with the quick no-transfer baselines (and, where the data are
    :func:`~autotransfer.search.plan.doubtful`, the slow ones)."""
    for params in _priors(sr, first_round=_grows(sr)):
        study.enqueue_trial(params, user_attrs={"prior": True}, skip_if_exists=True)
    grow_the_best(study, sr)


def grow_the_best(study: optuna.Study, sr: SearchRun) -> None:
    """Once the frozen-feature heads of every shortlisted backbone are trained on the
    ranking's sample, the best of them (by validation accuracy) runs again as the next
    trial and reads as much of the training split as the time allows (its ``grow``
    attribute), before the other priors: a careful engineer's choice between backbones
    that the estimators cannot tell apart, then the whole time on the winner's features.
    Nothing to do for a split no larger than the sample, or without a time budget."""
    if not _grows(sr):
        return
    trials = study.get_trials(deepcopy=False)
    if any(t.user_attrs.get("grow") for t in trials):
        return
    waiting = (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)
    if any(t.user_attrs.get("prior") and t.state in waiting for t in trials):
        return  # the heads on the sample are not all trained yet
    done = [
        t
        for t in trials
        if t.user_attrs.get("prior")
        and t.state == optuna.trial.TrialState.COMPLETE
        and t.params.get("strategy") in _cheap(sr)
    ]
    if done:
        best = max(done, key=lambda t: (t.value, -t.number))
        log.info(
            "Frozen-feature heads compared on the ranking's sample: %s on %s is the best "
            "(validation %.4f); it now reads as much of the training split as the time allows.",
            best.params["strategy"],
            best.params["backbone"],
            best.value,
        )
        study.enqueue_trial(dict(best.params), user_attrs={"prior": True, "grow": True})
    for params in _priors(sr, first_round=False):
        study.enqueue_trial(params, user_attrs={"prior": True}, skip_if_exists=True)


def _grows(sr: SearchRun) -> bool:
    return sr.budget.seconds is not None and sr.grows() and bool(_cheap(sr))


def _cheap(sr: SearchRun) -> set[str]:
    """The frozen-feature strategies (cheap and transferring: not the raw pixels)."""
    return {n for n, s in sr.strategies.items() if s.relative_cost < CHEAP and transfers(s)}


def _first_round(sr: SearchRun) -> set[str]:
    """The strategies run before the best head grows: the frozen-feature heads, the quick
    no-transfer baselines, and where the data are doubtful the slow ones too."""
    early = {
        n
        for n, s in sr.strategies.items()
        if not transfers(s) and (s.relative_cost < CHEAP or doubtful(sr.search))
    }
    return _cheap(sr) | early


def _priors(sr: SearchRun, first_round: bool) -> list[dict[str, Any]]:
    search = sr.prior_search()
    priors = prior_trials(list(sr.specs), list(sr.strategies.values()), search)
    if first_round:
        return [p for p in priors if p["strategy"] in _first_round(sr)]
    if short_budget(search):
        log.info(
            "A short budget: a trial has about %d s, and the BiT-HyperRule's schedule would "
            "take about %d s (%.2f s a step, estimated); a recipe that converges in few steps "
            "is the first fine-tune.",
            search.trial_seconds,
            search.step_seconds * hyperrule_steps(search),
            search.step_seconds,
        )
    return priors


@contextlib.contextmanager
def _stop_after_trial_on_ctrl_c(study: optuna.Study) -> Iterator[None]:
    """The first Ctrl-C lets the running trial finish and then ends the study; the second
    stops at once (that trial is recorded as failed). Only in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    asked = []

    def handler(signum: int, frame: Any) -> None:
        if asked:
            raise KeyboardInterrupt
        asked.append(True)
        log.warning("Ctrl-C: stopping after the current trial (Ctrl-C again to stop now).")
        study.stop()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_trials(
    study: optuna.Study, sr: SearchRun, settings: FitSettings, *, progress: bool | None = None
) -> None:
    """Run trials until the budget or the trial count is spent. Ctrl-C once: the running
    trial finishes, then the study stops; twice: it stops at once, the trial in progress
    recorded as failed. Either way the best result so far stands."""
    notify(sr.trackers, "fit_start", sr.run)
    if not sr.run.is_worker:  # the MLflow run a worker elsewhere joins
        publish_tracking(study, sr.run_dir)
    if settings.n_trials is not None:
        done = len(finished_trials(study.get_trials(deepcopy=False)))
        if done >= settings.n_trials:
            log.info("The study already has %d finished trials; none to run.", done)
            return
    # every worker of the study together: exactly n_trials (see search/trial_limit.py)
    study.limit = settings.n_trials
    study.keep_waiting = lambda: not _spent(sr)
    total = settings.n_trials
    with progress_bar("trials", total=total, enabled=progress, unit="trial") as update:

        def show(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            n = len(finished_trials(study.get_trials(deepcopy=False)))
            best = _best_value(study)
            left = sr.budget.left()
            update(n, **_bar_postfix(best, left))
            log.info(
                "trial %d %s; best %s%s",
                trial.number,
                trial.state.name.lower(),
                "-" if best is None else f"{best:.4f}",
                "" if left is None else f"; {math.ceil(left)} s left",
            )

        def grow(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            if not sr.run.is_worker:
                grow_the_best(study, sr)

        def stop_when_spent(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            if _spent(sr):
                study.stop()

        done = len(finished_trials(study.get_trials(deepcopy=False)))
        update(done, **_bar_postfix(_best_value(study), sr.budget.left()))
        callbacks = [show, grow, stop_when_spent]
        left = sr.budget.left()
        training = sr.training_left()
        if training is not None and training < MIN_TRIAL_SECONDS and _best_value(study) is not None:
            log.info("The time budget is spent; no trial started.")
            return
        try:
            with _stop_after_trial_on_ctrl_c(study):
                study.optimize(
                    lambda t: objective(sr, t),
                    n_trials=None,
                    timeout=None if left is None else max(left - MIN_TRIAL_SECONDS, 1.0),
                    catch=(Exception,),
                    callbacks=callbacks,
                    gc_after_trial=True,
                )
        except TrialLimitReached as reached:
            log.debug("No trial left to run: %s.", reached)
        except KeyboardInterrupt:
            log.warning("Interrupted: keeping the trials that finished.")


def _spent(sr: SearchRun) -> bool:
    """Too little training time left in the budget to start a trial."""
    left = sr.training_left()
    return left is not None and left < MIN_TRIAL_SECONDS


def _bar_postfix(best: float | None, left: float | None) -> dict[str, str]:
    """What the study bar shows after its counts: the best accuracy so far, time left.

    >>> _bar_postfix(0.8125, 61.2), _bar_postfix(None, None)
    ({'best': '0.8125', 'left': '1m02s'}, {'best': '-'})
    """
    out = {"best": "-" if best is None else f"{best:.4f}"}
    if left is not None:
        m, sec = divmod(math.ceil(left), 60)
        out["left"] = f"{m}m{sec:02d}s" if m else f"{sec}s"
    return out


def _best_value(study: optuna.Study) -> float | None:
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max((t.value for t in done if t.value is not None), default=None)
