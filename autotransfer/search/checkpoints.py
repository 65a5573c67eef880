"""Where the trained models of the study's best trials are kept in the run folder.

A trial's model is saved (atomically, by :meth:`Classifier.save`) when it may still win
(its accuracy is within the selection tolerance of the best so far), so the winner's
model is always on disk, whichever worker ran it; a killed process leaves at most a
temporary folder behind. :mod:`autotransfer.search.pick` reads the winner back.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


def checkpoint_dir(run_dir: Path, number: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"trial-{number:04d}"


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete every trial model but ``keep``'s."""
    root = Path(run_dir) / "checkpoints"
    if not root.exists():
        return
    for d in root.iterdir():
        if d.is_dir() and d != checkpoint_dir(run_dir, keep):
            shutil.rmtree(d, ignore_errors=True)
