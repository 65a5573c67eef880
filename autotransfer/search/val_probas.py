"""Each finished trial's class probabilities on the validation split, kept in the run folder.

The transfer verdict compares two trials image by image (a paired standard error) and the
ensemble is chosen from these, so neither predicts the validation split again: the
probabilities are written when the trial ends (``<run_dir>/val_proba/trial-N.npy``,
float16, rows in the validation split's order), at no cost to the budget. Trials run by
workers in other run folders have theirs there; readers take what is here.

>>> save_val_proba(run_dir, 3, proba)                            # doctest: +SKIP
>>> sorted(load_val_probas(run_dir, [3, 4]))                      # doctest: +SKIP
[3]
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FOLDER = "val_proba"
MAX_VALUES = 50_000_000  # images x classes kept at most a trial (100 MB as float16)


def proba_file(run_dir: str | os.PathLike[str], number: int) -> Path:
    return Path(run_dir) / FOLDER / f"trial-{int(number)}.npy"


def save_val_proba(run_dir: str | os.PathLike[str], number: int, proba: np.ndarray) -> None:
    """Keep trial ``number``'s validation probabilities (N, classes); skipped (logged) past
    :data:`MAX_VALUES` values or when the folder cannot be written: they are a help to
    the verdict and the ensemble, never a reason to fail a trial."""
    if proba.size > MAX_VALUES:
        log.info("Trial %d: %d validation probabilities are not kept.", number, proba.size)
        return
    path = proba_file(run_dir, number)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(proba, dtype=np.float16))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("Trial %d: its validation probabilities were not kept: %s", number, exc)


def load_val_probas(
    run_dir: str | os.PathLike[str], numbers: Iterable[int], n: int | None = None
) -> dict[int, np.ndarray]:
    """The kept probabilities (float32) of those of ``numbers`` that have them, with ``n``
    rows when given (others are from another validation split and are left out)."""
    out = {}
    for number in numbers:
        path = proba_file(run_dir, number)
        try:
            proba = np.load(path, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError):
            continue
        if n is None or len(proba) == n:
            out[int(number)] = proba
    return out
