"""The pick: the winning trial's model, read from its checkpoint, or trained again with the
same configuration and seed when the checkpoint is missing or fails to load (its weights
fail their checksum, a file is cut short), instead of failing the fit."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import optuna

from autotransfer.model import Classifier
from autotransfer.model_files import ModelFileError
from autotransfer.plugins import plugin_error
from autotransfer.search.checkpoints import checkpoint_dir
from autotransfer.search.objective import train_model
from autotransfer.search.search_run import SearchRun
from autotransfer.search.selection import ranked
from autotransfer.search.study import record_of

log = logging.getLogger(__name__)


def load_best(
    study: optuna.Study, sr: SearchRun
) -> tuple[optuna.trial.FrozenTrial, Any] | tuple[None, None]:
    """The winning complete trial and its classifier, from its checkpoint.

    A checkpoint that is missing or damaged is reported and rebuilt by training the
    trial again (:func:`rebuild`); when that fails too,
    the next trial in the ranking is tried. ``(None, None)`` when no complete trial
    yields a model.
    """
    for t in ranked(study.get_trials(deepcopy=False)):
        if t.state != optuna.trial.TrialState.COMPLETE:
            break
        path = checkpoint_dir(sr.run_dir, t.number)
        if not (path / "autotransfer.json").exists() and _fetch(sr, t.number, path):
            log.info(
                "Trial %d's model came from the shared checkpoints (%s).", t.number, sr.checkpoints
            )
        if (path / "autotransfer.json").exists():
            try:
                return t, Classifier.load(path)
            except ModelFileError as exc:
                log.warning(
                    "The checkpoint of trial %d is damaged (%s); training the trial again.",
                    t.number,
                    exc,
                )
        else:
            log.warning(
                "Trial %d has no checkpoint in %s (deleted, or run on another machine); "
                "training it again.",
                t.number,
                path,
            )
        shutil.rmtree(path, ignore_errors=True)
        try:
            return t, rebuild(sr, t)
        except Exception as exc:
            log.error("Could not rebuild the model of trial %d: %s", t.number, exc)
    return None, None


def _fetch(sr: SearchRun, number: int, path: Path) -> bool:
    """Trial ``number``'s model from the shared checkpoints into ``path``, if kept there."""
    if sr.checkpoints is None:
        return False
    try:
        return bool(sr.checkpoints.get(number, path))
    except Exception as exc:
        log.warning(
            "Trial %d: reading its shared model failed (%s): %s", number, sr.checkpoints, exc
        )
        return False


def rebuild(sr: SearchRun, trial: optuna.trial.FrozenTrial) -> Any:
    """Train a complete trial again and save its checkpoint: its model on disk was lost
    or damaged. Same backbone, strategy, hyperparameters and seed; no pruning; at most
    the trial time limit (the budget may be spent by now). Returns the classifier."""
    record = record_of(trial)
    if record.backbone not in sr.specs or record.strategy not in sr.strategies:
        raise KeyError(
            f"trial {trial.number} used {record.strategy!r} on {record.backbone!r}, which "
            "this fit no longer has"
        )
    limit = sr.trial_limit
    deadline = None if limit is None else time.monotonic() + limit
    try:
        model, _ = train_model(
            sr,
            record.backbone,
            record.strategy,
            dict(record.params),
            trial.number,
            lambda epoch, metrics: None,
            deadline=deadline,
            grow=bool(trial.user_attrs.get("grow")),
        )
    except Exception as exc:
        raise RuntimeError(plugin_error(record.strategy, "train", exc)) from exc
    model.save(checkpoint_dir(sr.run_dir, trial.number))
    return model
