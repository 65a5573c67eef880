"""Data smells worth a :class:`~autotransfer.errors.DataWarning`: the messages, built here.

Each message says what was noticed, names files (relative to the dataset folder, at most
five, then a count) and says what to do. :func:`~autotransfer.data.ingest.open_dataset`
collects them and warns once per message after the dataset is built.
"""

from __future__ import annotations

import difflib
import os
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from autotransfer.data.types import DuplicatePair, ImageRecord, SkippedFile

SHOWN = 5  # files named in one message before "and N more"


def shown(path: str, base: Path) -> str:
    """``path`` relative to the dataset folder when it lies inside it, else as given."""
    rel = os.path.relpath(path, base)
    return path if rel.startswith(os.pardir) else rel


def _listing(items: Sequence[str]) -> str:
    more = f"; and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return "; ".join(items[:SHOWN]) + more


def skipped_warning(skipped: Sequence[SkippedFile], src: Path, base: Path) -> str:
    """Files left out, with why, and what to do.

    >>> bad = [SkippedFile("/d/a/x.jpg", "empty file (0 bytes)")]
    >>> skipped_warning(bad, Path("/d"), Path("/d"))  # doctest: +ELLIPSIS
    "Skipped 1 file under /d that cannot be used: a/x.jpg (empty file (0 bytes)). Fix or...
    """
    files = "file" if len(skipped) == 1 else "files"
    return (
        f"Skipped {len(skipped)} {files} under {src} that cannot be used: "
        + _listing([f"{shown(s.path, base)} ({s.reason})" for s in skipped])
        + ". Fix or remove them; the dataset's report lists them all, and strict=True "
        "(--strict) makes them an error."
    )


def duplicates_warning(pairs: Sequence[DuplicatePair], base: Path) -> str:
    """Evaluation images dropped because their bytes equal a training image."""
    return (
        f"Dropped {len(pairs)} validation/test image(s) whose bytes equal a training image "
        "(they would inflate the scores): "
        + _listing([f"{shown(p.path, base)} = {shown(p.train_path, base)}" for p in pairs])
        + ". Remove the copies from the evaluation split to keep them counted."
    )


def class_example(name: str, path: str, classes: Sequence[str], base: Path) -> str:
    """``name (one/of/its/files.png)``, with close matches among the other class names."""
    others = [c for c in classes if c != name]
    close = difflib.get_close_matches(name, others, n=2, cutoff=0.6)
    guess = "; did you mean " + " or ".join(map(repr, close)) + "?" if close else ""
    return f"{name} ({shown(path, base)}{guess})"


def data_smells(classes: Sequence[str], records: Sequence[ImageRecord], base: Path) -> list[str]:
    """Class names that look alike, and one image filed under two classes."""
    found: list[str] = []
    by_key: dict[str, list[str]] = defaultdict(list)
    for name in classes:
        by_key[unicodedata.normalize("NFKC", name).casefold().strip()].append(name)
    alike = [group for group in by_key.values() if len(group) > 1]
    if alike:
        found.append(
            "Class names that differ only in case, spaces or Unicode form are separate "
            "classes: "
            + "; ".join(" and ".join(map(ascii, group)) for group in alike)
            + ". Merge their folders (or labels) if they mean the same class."
        )
    by_hash: dict[str, list[ImageRecord]] = defaultdict(list)
    for r in records:
        by_hash[r.sha256].append(r)
    clashes = [
        " and ".join(f"{shown(r.path, base)} ({classes[r.label]})" for r in group)
        for group in by_hash.values()
        if len({r.label for r in group}) > 1
    ]
    if clashes:
        found.append(
            f"{len(clashes)} image(s) appear under more than one class (same bytes): "
            + _listing(clashes)
            + ". Keep each in the class it belongs to."
        )
    return found
