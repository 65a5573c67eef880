"""Trained models of the study's best trials, kept in the run folder.

A trial's model is saved (atomically, by :meth:`Classifier.save`) when it may still win
(its accuracy is within the selection tolerance of the best so far), so the winner's
model is always on disk, whichever worker ran it; a killed process leaves at most a
temporary folder behind.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import optuna

log = logging.getLogger(__name__)


def checkpoint_dir(run_dir: Path, number: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"trial-{number:04d}"


def best_with_checkpoint(study: optuna.Study, run_dir: Path) -> optuna.trial.FrozenTrial | None:
    """The winning complete trial (:mod:`autotransfer.search.selection`) among those whose
    model is on disk."""
    from autotransfer.search.selection import ranked

    for t in ranked(study.get_trials(deepcopy=False)):
        if t.state != optuna.trial.TrialState.COMPLETE:
            break
        if (checkpoint_dir(run_dir, t.number) / "autotransfer.json").exists():
            return t
    return None


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete every trial model but ``keep``'s."""
    root = Path(run_dir) / "checkpoints"
    if not root.exists():
        return
    for d in root.iterdir():
        if d.is_dir() and d != checkpoint_dir(run_dir, keep):
            shutil.rmtree(d, ignore_errors=True)
