"""The folder a classifier is saved in, written and read without pickle.

A saved model is a folder holding ``model.safetensors`` (the weights) and
``autotransfer.json`` (architecture, classes, preprocessing, metadata, versions). It is
built beside its target and swapped in, so a reader never sees half a model; an existing
saved model is replaced, any other non-empty folder refused. ``autotransfer.json`` records
the SHA-256 of the weights file, so reading detects a damaged file (folders saved before
the checksum existed load without the check). Reading refuses pickled checkpoints, since
unpickling can execute arbitrary code.

>>> config, weights = read_folder(Path("models/cats"))          # doctest: +SKIP
>>> config["classes"], weights.name                            # doctest: +SKIP
(['cat', 'dog'], 'model.safetensors')
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from autotransfer.errors import AutoTransferError
from autotransfer.version import __version__

FORMAT_VERSION = 1
CONFIG_FILE = "autotransfer.json"
WEIGHTS_FILE = "model.safetensors"
CHECKSUM_KEY = "weights_sha256"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")


class ModelFileError(AutoTransferError, OSError):
    """A saved model folder is missing, incomplete, unreadable or refused (pickle)."""


def library_versions() -> dict[str, str]:
    """The versions a saved model or export records (torch, timm, autotransfer)."""
    import timm
    import torch

    return {"torch": torch.__version__, "timm": timm.__version__, "autotransfer": __version__}


def check_replaceable(target: Path) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise ModelFileError(f"Cannot save a model to {target}: it is a file, not a folder.")
    if any(target.iterdir()) and not (target / CONFIG_FILE).is_file():
        raise ModelFileError(
            f"Refusing to save a model over {target}: the folder is not empty and holds no "
            f"saved model ({CONFIG_FILE}), so replacing it would delete your files. Choose "
            "a new or empty folder."
        )


def model_folder(directory: str | os.PathLike[str]) -> Path:
    """The saved model in ``directory``: the folder itself, or a run folder's ``model``."""
    path = Path(directory)
    if not (path / CONFIG_FILE).exists() and (path / "model").is_dir():
        return path / "model"
    return path


def write_folder(target: Path, config: dict[str, Any], tensors: dict[str, Any]) -> None:
    """Write ``tensors`` as ``model.safetensors`` and ``config`` as ``autotransfer.json``
    in a folder built beside ``target``, then swap it in: a reader never sees half a
    model. Check ``target`` with :func:`check_replaceable` first."""
    from safetensors.torch import save_file

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        config = {**config, CHECKSUM_KEY: file_sha256(tmp / WEIGHTS_FILE)}
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str) + "\n")
        _swap_in(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_folder(path: Path) -> tuple[dict[str, Any], Path]:
    """The config of the saved model in ``path`` and its weights file; pickled
    checkpoints, missing or unreadable files and other format versions are refused."""
    config = read_config(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelFileError(
            f"{path} has {CONFIG_FILE} but no {WEIGHTS_FILE}; the save was incomplete or "
            "the file was moved. Save the model again."
        )
    expected = config.get(CHECKSUM_KEY)
    if expected is not None and file_sha256(weights) != expected:
        raise ModelFileError(
            f"{weights} is damaged: its SHA-256 differs from the one recorded in {CONFIG_FILE} "
            "when it was saved. Save the model again (a fit rebuilds its checkpoints)."
        )
    return config, weights


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _swap_in(tmp: Path, target: Path) -> None:
    """Move the finished folder ``tmp`` to ``target``, replacing an old one."""
    if not target.exists():
        os.replace(tmp, target)
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
    os.replace(target, old / "model")
    try:
        os.replace(tmp, target)
    except OSError:
        os.replace(old / "model", target)  # put the old model back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _pickles(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if path.suffix.lower() in PICKLE_SUFFIXES else []
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    return []


def read_config(path: Path) -> dict[str, Any]:
    pickles = _pickles(path)
    if pickles and not (path / CONFIG_FILE).is_file():
        names = ", ".join(p.name for p in pickles)
        where = path.parent if path.is_file() else path
        raise ModelFileError(
            f"Refusing to load the pickled checkpoint {names} in {where}: unpickling a file can "
            "execute arbitrary code. Convert it once, if you trust it: "
            "state = torch.load(file, weights_only=True); build the timm model, "
            "model.load_state_dict(state), then Classifier(model, classes=..., "
            "preprocessing=..., arch=...).save(folder) writes safetensors."
        )
    if not path.is_dir():
        raise ModelFileError(
            f"No saved model at {path}: not a folder. Pass the folder Classifier.save wrote."
        )
    file = path / CONFIG_FILE
    if not file.is_file():
        raise ModelFileError(
            f"{path} is not a saved autotransfer model: {CONFIG_FILE} is missing. Pass the "
            "folder Classifier.save (or FitResult.save) wrote."
        )
    try:
        config = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"Cannot read {file}: {exc}. Save the model again.") from exc
    version = config.get("format_version") if isinstance(config, dict) else None
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{file} has format_version {version!r}; this autotransfer reads version "
            f"{FORMAT_VERSION}. Upgrade autotransfer (or re-save with this version)."
        )
    return config
