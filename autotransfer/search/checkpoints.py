"""Trained models of the study's best trials, kept in the run folder.

A trial's model is saved (atomically, by :meth:`Classifier.save`) when it may still win
(its accuracy is within the selection tolerance of the best so far), so the winner's
model is always on disk, whichever worker ran it; a killed process leaves at most a
temporary folder behind. A checkpoint that is missing or fails to load (its weights fail
their checksum, a file is cut short) is detected when the result is built, and the
trial is trained again with the same configuration and seed instead of failing the fit.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.search.objective import SearchRun

log = logging.getLogger(__name__)


def checkpoint_dir(run_dir: Path, number: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"trial-{number:04d}"


def load_best(
    study: optuna.Study, sr: SearchRun
) -> tuple[optuna.trial.FrozenTrial, Any] | tuple[None, None]:
    """The winning complete trial and its classifier, from its checkpoint.

    A checkpoint that is missing or damaged is reported and rebuilt by training the
    trial again (:func:`autotransfer.search.objective.rebuild`); when that fails too,
    the next trial in the ranking is tried. ``(None, None)`` when no complete trial
    yields a model.
    """
    from autotransfer.model import Classifier
    from autotransfer.model_files import ModelFileError
    from autotransfer.search.objective import rebuild
    from autotransfer.search.selection import ranked

    for t in ranked(study.get_trials(deepcopy=False)):
        if t.state != optuna.trial.TrialState.COMPLETE:
            break
        path = checkpoint_dir(sr.run_dir, t.number)
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


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete every trial model but ``keep``'s."""
    root = Path(run_dir) / "checkpoints"
    if not root.exists():
        return
    for d in root.iterdir():
        if d.is_dir() and d != checkpoint_dir(run_dir, keep):
            shutil.rmtree(d, ignore_errors=True)
