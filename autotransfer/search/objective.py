"""One trial: pick a backbone, a strategy and its hyperparameters; train; score; record.

The trial reports validation accuracy after every epoch (Optuna may prune it), is
scored on the validation split through the same preprocessing the final model uses,
and records its metrics, per-epoch history and details as Optuna user attributes, so a
resumed or parallel study sees everything that finished. Trackers hear of every step.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from autotransfer.errors import TooFewSteps
from autotransfer.metrics import classification_metrics
from autotransfer.model import Classifier, Preprocessing
from autotransfer.plugins import plugin_error
from autotransfer.search.checkpoints import checkpoint_dir
from autotransfer.search.search_run import SearchRun
from autotransfer.search.selection import ENSEMBLE_POOL, PER_CLASS, worth_keeping
from autotransfer.search.study import FINISHED_VALUE, SKIPPED, TRANSFER, record_of, worker_id
from autotransfer.search.trial_limit import retry_of
from autotransfer.search.val_probas import save_val_proba
from autotransfer.strategies.base import TrainContext, transfers
from autotransfer.strategies.schedules import doomed
from autotransfer.tracking.base import TrialInfo, notify

log = logging.getLogger(__name__)

MAX_TRACEBACK = 8000  # characters of a failed trial's traceback kept in the study
# the share of a frozen-feature trial's time its training features may take; the rest is
# for the validation features and the head's fit
FEATURE_SHARE = 0.6
# ...and of the training time left, for the trial that grows the best head on a split larger
# than the ranking's sample: when reading the split's features takes more than this, a
# fine-tune (an epoch over it costs about three such reads, on any device) could not
# converge in what would be left, so the time goes to the head (benchmarks/scale.py)
GROW_SHARE = 0.85


class Prefixed:
    """An Optuna trial whose parameter names carry a prefix (``full_finetune.lr``), so that
    strategies can name their parameters freely without clashing."""

    def __init__(self, trial: optuna.Trial, prefix: str) -> None:
        self._trial, self._prefix = trial, prefix

    def suggest_float(self, name: str, *args: Any, **kwargs: Any) -> float:
        return self._trial.suggest_float(f"{self._prefix}.{name}", *args, **kwargs)

    def suggest_int(self, name: str, *args: Any, **kwargs: Any) -> int:
        return self._trial.suggest_int(f"{self._prefix}.{name}", *args, **kwargs)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._trial.suggest_categorical(f"{self._prefix}.{name}", choices)


def objective(sr: SearchRun, trial: optuna.Trial) -> float:
    """Train one configuration and return its validation accuracy (the study maximises it).

    A strategy that raises fails its trial, not the study: the trial's ``error`` user
    attribute names the plugin and the hook, ``traceback`` holds the traceback, and the
    log says both. Ctrl-C during a trial (the second one; see the runner) fails it too,
    so trackers close it before the interrupt goes on.

    Once the study has a model, a trial whose time cannot give its schedule
    :func:`~autotransfer.strategies.schedules.useful_steps` is skipped (pruned, the reason in
    its ``skipped`` user attribute): before it starts, where this process measured its
    strategy's pace on its backbone, else by the training loop after its first steps.
    """
    backbone = trial.suggest_categorical("backbone", list(sr.specs))
    name = trial.suggest_categorical("strategy", list(sr.strategies))
    strategy = sr.strategies[name]
    trial.set_user_attr("worker", worker_id())
    trial.set_user_attr(TRANSFER, transfers(strategy))
    try:
        params = strategy.suggest(Prefixed(trial, name), search=sr.search)
    except Exception as exc:
        _record_error(trial, plugin_error(name, "suggest", exc))
        raise
    info = TrialInfo(
        number=trial.number,
        backbone=backbone,
        strategy=name,
        params=dict(params),
        retry_of=retry_of(trial.study._storage.get_trial(trial._trial_id)),
    )
    notify(sr.trackers, "trial_start", sr.run, info)
    log.info("trial %d: %s on %s %s", trial.number, name, backbone, params)
    history: list[dict[str, float]] = []
    prior = bool(trial.user_attrs.get("prior"))

    def report(epoch: int, metrics: Mapping[str, float]) -> None:
        m = {k: float(v) for k, v in metrics.items()}
        history.append(m)
        trial.set_user_attr("history", history)
        notify(sr.trackers, "epoch_end", sr.run, info, epoch, m)
        trial.report(m["val_accuracy"], epoch)
        # the priors run to the end of their schedule (or time limit): a slow-starting
        # recipe such as the BiT-HyperRule must not be judged by its first epochs
        if not prior and trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch}")

    start = time.monotonic()
    stage = "train"
    grow = bool(trial.user_attrs.get("grow"))
    deadline = trial_deadline(sr, grow)
    skip_doomed = _has_model(trial.study)
    reason = _doomed(sr, backbone, name, params, deadline) if skip_doomed else None
    if reason is not None:
        _skip(sr, trial, info, reason, start, history)
    try:
        model, outcome = train_model(
            sr,
            backbone,
            name,
            dict(params),
            trial.number,
            report,
            deadline=deadline,
            grow=grow,
            skip_doomed=skip_doomed,
        )
        stage = "evaluate"
        metrics, proba = _val_metrics(sr, backbone, model, outcome)
    except optuna.TrialPruned:
        _finish(sr, trial, info, "pruned", start, history)
        raise
    except TooFewSteps as exc:
        sr.step_seconds[(backbone, name)] = exc.step_seconds
        _skip(sr, trial, info, str(exc), start, history)
    except KeyboardInterrupt:
        trial.set_user_attr("error", "interrupted (Ctrl-C)")
        _finish(sr, trial, info, "failed", start, history)
        raise
    except Exception as exc:
        if stage == "train":
            _record_error(trial, plugin_error(name, "train", exc))
        else:
            _record_error(trial, f"Evaluating the model failed: {type(exc).__name__}: {exc}")
        _finish(sr, trial, info, "failed", start, history)
        raise
    value = float(metrics["accuracy"])
    trial.set_user_attr("metrics", {k: float(v) for k, v in metrics.items()})
    trial.set_user_attr(
        "info",
        {
            **_jsonable(outcome.info),
            "train_val_accuracy": outcome.val_accuracy,
        },
    )
    save_val_proba(sr.run_dir, trial.number, proba)
    if outcome.info.get("step_seconds"):  # the pace of the next trials of its kind
        sr.step_seconds[(backbone, name)] = float(outcome.info["step_seconds"])
    # the figure the selection reads back from the trial, so both decide alike
    per_class = round(len(sr.dataset.train) / max(1, len(sr.dataset.classes)), 2)
    trial.set_user_attr(PER_CLASS, per_class)
    pool = ENSEMBLE_POOL if sr.ensemble else 0
    if worth_keeping(trial.study, value, int(metrics.get("num_images", 0)), per_class, pool):
        path = checkpoint_dir(sr.run_dir, trial.number)
        model.save(path)
        share_checkpoint(sr, trial.number, path)
    # the trial's work is done and saved: a process killed from here on leaves a trial
    # the next fit records complete with this value (see study.close_dead_trials)
    trial.set_user_attr(FINISHED_VALUE, value)
    done = [v for v in (t.value for t in trial.study.get_trials(deepcopy=False)) if v is not None]
    if value >= max(done, default=value):  # the best so far: the last mile reserves its refit
        sr.pick_seconds = float(outcome.info.get("train_seconds") or time.monotonic() - start)
    sr.completed += 1
    _finish(sr, trial, info, "complete", start, history, value)
    return value


def _has_model(study: optuna.Study) -> bool:
    """Whether a trial of the study completed (a fit has a model to return)."""
    return bool(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def _doomed(
    sr: SearchRun, backbone: str, name: str, params: Mapping[str, Any], deadline: float | None
) -> str | None:
    """Why a trial cannot train enough steps before ``deadline``, at the pace this process
    measured of its strategy on its backbone (None: it may, or nothing says it may not)."""
    pace = sr.step_seconds.get((backbone, name))
    if pace is None or deadline is None or "steps" not in params:
        return None
    fits = int(max(0.0, deadline - time.monotonic()) / pace)
    per_epoch = math.ceil(len(sr.dataset.train) / sr.batch_size)
    return doomed(fits, int(params["steps"]), per_epoch, pace)


def _skip(
    sr: SearchRun,
    trial: optuna.Trial,
    info: TrialInfo,
    reason: str,
    start: float,
    history: list[dict[str, float]],
) -> None:
    """End the trial as skipped: pruned, with the reason said and recorded."""
    trial.set_user_attr(SKIPPED, reason)
    log.info("trial %d (%s on %s): %s.", trial.number, info.strategy, info.backbone, reason)
    _finish(sr, trial, info, "pruned", start, history)
    raise optuna.TrialPruned(reason)


def share_checkpoint(sr: SearchRun, number: int, path: Path) -> None:
    """Put a kept model in the shared checkpoints, if any; a failure there is logged (the
    model stays in this run folder, and the pick trains it again when it must)."""
    if sr.checkpoints is None:
        return
    try:
        sr.checkpoints.put(number, path)
    except Exception as exc:  # a network store: the trial's result stands
        log.warning("Trial %d: its model could not be shared (%s): %s", number, sr.checkpoints, exc)


def _val_metrics(
    sr: SearchRun, backbone: str, model: Any, outcome: Any
) -> tuple[dict[str, float], np.ndarray]:
    """The trial's validation metrics and probabilities: those its training already
    computed (the frozen-feature head's, the loop's best evaluation), else from predicting
    the validation split through the model's preprocessing (and the scoring rate measured)."""
    y = [r.label for r in sr.dataset.val]
    proba = getattr(outcome, "val_proba", None)
    if proba is None or len(proba) != len(y):
        scored = time.monotonic()
        paths = [r.path for r in sr.dataset.val]
        proba = model.predict_proba(paths, device=str(sr.device))
        if y:
            sr.scoring_rates[backbone] = (time.monotonic() - scored) / len(y)
    metrics = classification_metrics(y, proba, len(sr.dataset.classes))
    metrics["num_images"] = len(y)
    return metrics, np.asarray(proba)


def train_model(
    sr: SearchRun,
    backbone: str,
    name: str,
    params: dict[str, Any],
    number: int,
    report: Any,
    *,
    deadline: float | None = None,
    grow: bool = False,
    skip_doomed: bool = False,
    dataset: Any = None,
    images: Any = None,
    features: Any = None,
) -> tuple[Any, Any]:
    """Train trial ``number``'s configuration: the classifier and the strategy's outcome.

    The deadline is :func:`trial_deadline`'s (or ``deadline`` when given); the seed is
    the fit's plus the trial number, so the same trial trains the same way again. Frozen
    features of a training split larger than the ranking's sample: ``grow``, as much of
    it as :data:`GROW_SHARE` of the time left allows (the trial limit does not apply:
    this is the one trial that reads the split); else the sample and what earlier trials
    read. ``dataset``, ``images`` and ``features`` replace the search's (the refit's
    data). ``skip_doomed``: see :class:`~autotransfer.strategies.base.TrainContext`.
    """
    if deadline is None:
        deadline = trial_deadline(sr, grow)
    ctx = TrainContext(
        dataset=dataset or sr.dataset,
        spec=sr.specs[backbone],
        params=dict(params),
        device=sr.device,
        seed=sr.seed + number,
        resolution=sr.resolution,
        batch_size=sr.batch_size,
        num_workers=sr.num_workers,
        augment=sr.augment,
        class_weights=sr.class_weights,
        deadline=deadline,
        report=report,
        features=features or (lambda split: _features(sr, backbone, split, deadline, grow)),
        images=images or sr.images,
        search=sr.search,
        skip_doomed=skip_doomed,
        log=log,
    )
    outcome = sr.strategies[name].train(ctx)
    model = Classifier(
        outcome.model,
        classes=ctx.dataset.classes,
        preprocessing=Preprocessing(**outcome.preprocessing),
        arch=outcome.arch or sr.specs[backbone].arch,
        model_kwargs=outcome.model_kwargs,
        metadata={
            "backbone": backbone,
            "backbone_spec": sr.specs[backbone].to_dict(),
            "strategy": name,
            "params": dict(params),
            "trial": number,
        },
    )
    return model, outcome


def trial_deadline(sr: SearchRun, grow: bool = False) -> float | None:
    """When a trial starting now must end: the budget's training time, less the time the
    scoring and saving after training take (:meth:`SearchRun.closing_reserve`), or the
    trial time limit from now when sooner (not for the ``grow`` trial); None: no limit."""
    left = sr.training_left()
    deadline = None if left is None else time.monotonic() + left
    if sr.trial_limit is not None and not grow:
        own = time.monotonic() + sr.trial_limit
        deadline = own if deadline is None else min(deadline, own)
    return deadline


def _features(
    sr: SearchRun, backbone: str, split: str, deadline: float | None, grow: bool = False
) -> Any:
    """A trial's frozen features: the validation sample's first, then the training split.
    Under a time budget, where the split is larger than the ranking's sample, a ``grow``
    trial reads as much of it as :data:`GROW_SHARE` of the time left allows, the
    others the sample (and what earlier trials read); without one, all of it."""
    # a fit needs a model: the first trial's validation sample in full
    deadline_val = None if sr.completed == 0 else deadline
    if split != "train" or deadline is None:
        return sr.features(backbone, split, deadline_val if split == "val" else deadline)
    sr.features(backbone, "val", deadline_val)
    if not grow and sr.grows():
        return sr.features(backbone, "train", None, more=False)
    now = time.monotonic()
    share = GROW_SHARE if grow else FEATURE_SHARE
    return sr.features(backbone, "train", now + share * max(0.0, deadline - now))


def _record_error(trial: optuna.Trial, message: str) -> None:
    """The failure as user attributes (``error``, ``traceback``, and the traceback in
    ``info`` so that trackers see it) and in the log."""
    tb = traceback.format_exc()[-MAX_TRACEBACK:]
    trial.set_user_attr("error", message[:2000])
    trial.set_user_attr("traceback", tb)
    trial.set_user_attr("info", {"traceback": tb})
    log.warning("trial %d failed. %s\n%s", trial.number, message, tb.rstrip())


def _finish(
    sr: SearchRun,
    trial: optuna.Trial,
    info: TrialInfo,
    state: str,
    start: float,
    history: list[dict[str, float]],
    value: float | None = None,
) -> None:
    import dataclasses

    seconds = round(time.monotonic() - start, 2)
    trial.set_user_attr("seconds", seconds)
    frozen = trial.study._storage.get_trial(trial._trial_id)
    record = dataclasses.replace(
        record_of(frozen),
        state=state,
        val_accuracy=value,
        seconds=seconds,
        history=tuple(history),
    )
    notify(sr.trackers, "trial_end", sr.run, record)


def _jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, (bool, int, float, str)) or v is None:
            out[k] = v
        elif isinstance(v, np.generic):
            out[k] = v.item()
        else:
            out[k] = str(v)
    return out
