"""Trained models of the study's best trials, kept in the run folder.

A trial's model is saved (atomically, by :meth:`Classifier.save`) when it is at least as
good as every trial completed before it, so the best trial's model is always on disk,
whichever worker ran it; a killed process leaves at most a temporary folder behind.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import optuna

log = logging.getLogger(__name__)


def checkpoint_dir(run_dir: Path, number: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"trial-{number:04d}"


def is_best_so_far(study: optuna.Study, value: float) -> bool:
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return all(value >= (t.value if t.value is not None else -1.0) for t in done)


def best_with_checkpoint(study: optuna.Study, run_dir: Path) -> optuna.trial.FrozenTrial | None:
    """The best complete trial whose model is on disk (order: ``selection_key``)."""
    from autotransfer.search.study import selection_key

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    for t in sorted(done, key=selection_key):
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
