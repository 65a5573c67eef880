"""Where the trained models of the study's best trials are kept: the run folder, and, for
workers on several machines, a store every one of them reaches.

A trial's model is saved (atomically, by :meth:`Classifier.save`) when it may still win
(its accuracy is within the selection tolerance of the best so far), so the winner's
model is always on disk, whichever worker ran it; a killed process leaves at most a
temporary folder behind. With ``shared_checkpoints`` it is also put in a
:class:`CheckpointStore`: a folder every machine mounts (:class:`SharedFolder`) or the
trial's MLflow run (:class:`~autotransfer.tracking.mlflow_checkpoints.MlflowCheckpoints`),
from which :mod:`autotransfer.search.pick` fetches a winner trained on another machine.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from autotransfer.errors import ConfigError

log = logging.getLogger(__name__)


def checkpoint_dir(run_dir: Path, number: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"trial-{number:04d}"


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete every trial model in the run folder but ``keep``'s."""
    root = Path(run_dir) / "checkpoints"
    if not root.exists():
        return
    for d in root.iterdir():
        if d.is_dir() and d != checkpoint_dir(run_dir, keep):
            shutil.rmtree(d, ignore_errors=True)


class CheckpointStore(Protocol):
    """Trial models that every worker of a study can reach."""

    def put(self, number: int, local: Path) -> None:
        """Keep the saved model folder ``local`` of trial ``number``."""

    def get(self, number: int, local: Path) -> bool:
        """Copy trial ``number``'s model into the folder ``local``; False when not kept."""


class SharedFolder:
    """Trial models copied to a folder every machine mounts at the same path (NFS, say).

    >>> SharedFolder("file:///mnt/shared/checkpoints").root
    PosixPath('/mnt/shared/checkpoints')
    """

    def __init__(self, where: str | os.PathLike[str]) -> None:
        text = os.fspath(where)
        self.root = Path(unquote(urlparse(text).path) if text.startswith("file:") else text)

    def __repr__(self) -> str:
        return f"SharedFolder({str(self.root)!r})"

    def put(self, number: int, local: Path) -> None:
        target = self.root / local.name
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{local.name}-", dir=self.root))
        shutil.copytree(local, tmp, dirs_exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)  # whole or absent, for a reader on another machine

    def get(self, number: int, local: Path) -> bool:
        source = self.root / local.name
        if not (source / "autotransfer.json").exists():
            return False
        shutil.rmtree(local, ignore_errors=True)
        shutil.copytree(source, local)
        return True


def shared_folder(where: str) -> SharedFolder:
    """The :class:`SharedFolder` of the ``shared_checkpoints`` setting (a path or a
    ``file://`` URI); other URI schemes are refused by name."""
    scheme = urlparse(where).scheme
    if scheme not in ("", "file") and len(scheme) > 1:  # "C:" is a drive
        raise ConfigError(
            f"shared_checkpoints must be 'mlflow' (the trials' MLflow runs), a folder that "
            f"every machine mounts, or a file:// URI; got {where!r}."
        )
    return SharedFolder(where)
