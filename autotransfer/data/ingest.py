"""Open an image folder or a CSV manifest as a checked, split :class:`ImageDataset`.

Three layouts are understood (see :func:`open_dataset`):

``class_folders``  ``root/<class>/...`` - a seeded, stratified train/val split is carved.
``split_folders``  ``root/train/<class>/...`` plus optional ``val/`` (or ``valid/``) and
                   ``test/``; without ``val/`` one is carved from ``train/``.
``manifest``       a CSV file with header ``path,label`` and an optional ``split`` column.

Every file inside a class folder is tried, whatever its extension, and class folders are
read *recursively*: ``root/cat/indoor/1.jpg`` is a ``cat``. Hidden files and folders
(``.DS_Store``, ``._1.jpg``, ``.ipynb_checkpoints``) and ``Thumbs.db``/``desktop.ini``
are ignored silently. Symlinked folders are followed once (loops are cut). The files are
found by :mod:`autotransfer.data.layouts`.

One validation pass fully decodes every image before any model runs. Files that cannot be
used (empty, not an image, corrupt, truncated, decompression bombs, unreadable, not a
regular file) are skipped and listed in :attr:`ValidationReport.skipped` (or raise with
``strict=True``). The skips and other data smells (one-image classes, look-alike class
names, duplicates) are also told in a :class:`~autotransfer.errors.DataWarning` that
names the files and says what to do (:mod:`autotransfer.data.smells`). The pass is cached
under ``cache_dir/scan/`` keyed by absolute path, size and modification time, so opening
the same folder again only decodes what changed; see :mod:`autotransfer.data.scan`.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections import Counter
from pathlib import Path

from sklearn.model_selection import train_test_split

from autotransfer.cache import resolve_cache_dir
from autotransfer.config import DataSettings
from autotransfer.data.images import DEFAULT_MAX_PIXELS, ImageInfo
from autotransfer.data.layouts import EXPECTED_LAYOUT, discover_folder, read_manifest
from autotransfer.data.scan import Progress, ScanCache, scan
from autotransfer.data.smells import class_example, data_smells, duplicates_warning, skipped_warning
from autotransfer.data.types import (
    DuplicatePair,
    ImageDataset,
    ImageRecord,
    SkippedFile,
    ValidationReport,
)
from autotransfer.errors import ConfigError, DataError, DataWarning
from autotransfer.progress import progress_bar

logger = logging.getLogger(__name__)


def open_folder(
    data: str | os.PathLike[str] | ImageDataset,
    settings: DataSettings | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> ImageDataset:
    """Read and check a folder or CSV manifest (an ImageDataset passes through).

    >>> ds = open_folder("data/")            # doctest: +SKIP
    >>> print(ds.report.summary())           # doctest: +SKIP
    """
    if isinstance(data, ImageDataset):
        return data
    s = settings or DataSettings()
    with progress_bar("scanning", enabled=progress, unit="file") as update:
        ds = open_dataset(
            data,
            val_fraction=s.val_fraction,
            seed=s.seed,
            strict=s.strict,
            cache_dir=resolve_cache_dir(cache_dir),
            progress=update,
        )
    return ds


def open_dataset(
    source: str | os.PathLike[str],
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    strict: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> ImageDataset:
    """Find, check and split the labelled images in a folder or CSV manifest.

    ``val_fraction`` of each class (at least one image per class that has two or more)
    becomes the validation split when the source has none, chosen by scikit-learn's
    stratified ``train_test_split`` with ``seed`` on the sorted paths, so the split does
    not depend on file-system order. Classes with a single image stay in train and are
    reported (and warned about, :class:`~autotransfer.errors.DataWarning`). Evaluation
    images whose bytes equal a training image are dropped and reported.

    ``cache_dir`` keeps the scan results (``None``: no scan cache); ``progress`` is called
    as ``progress(done, total)`` while files are checked; ``max_pixels`` refuses larger
    images as decompression bombs; ``strict=True`` raises instead of skipping bad files.

    >>> ds = open_dataset("data/", seed=0)                      # doctest: +SKIP
    >>> ds.classes, len(ds.train), len(ds.val)                  # doctest: +SKIP
    (('cat', 'dog'), 80, 20)
    >>> print(ds.report.summary())                              # doctest: +SKIP
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(
            f"val_fraction={val_fraction!r} must lie strictly between 0 and 1, e.g. 0.2."
        )
    src = Path(os.path.abspath(os.fspath(source)))
    found_warnings: list[str] = []
    if src.is_file():
        layout = "manifest"
        candidates, skipped, class_dirs = read_manifest(src)
    elif src.is_dir():
        layout, candidates, skipped, class_dirs = discover_folder(src, found_warnings)
    else:
        raise DataError(f"No such folder or CSV file: {src}. {EXPECTED_LAYOUT}")

    cache = ScanCache(Path(cache_dir), src, max_pixels) if cache_dir is not None else None
    outcomes = scan(sorted({c[0] for c in candidates}), max_pixels, cache, progress)

    usable: list[tuple[str, str, str | None, ImageInfo]] = []
    for path, label, split in candidates:
        outcome = outcomes[path]
        if isinstance(outcome, str):
            skipped.append(SkippedFile(path, outcome))
        else:
            usable.append((path, label, split, outcome))
    classes = tuple(sorted({label for _, label, _, _ in usable}))
    empty = sorted(set(class_dirs) - set(classes))
    for name in empty:
        for folder in class_dirs[name]:
            skipped.append(SkippedFile(folder, "class folder with no readable images: not a class"))
    if empty:
        found_warnings.append(
            f"Ignored class folders without readable images: {', '.join(empty)}. Add images "
            "to them or remove them."
        )
    skipped.sort(key=lambda s: s.path)
    base = src.parent if layout == "manifest" else src
    folders = {f for name in empty for f in class_dirs[name]}
    bad_files = [s for s in skipped if s.path not in folders]
    if bad_files:
        found_warnings.append(skipped_warning(bad_files, src, base))
    if strict and skipped:
        lines = "\n".join(f"  {s.path}: {s.reason}" for s in skipped)
        raise DataError(
            f"{len(skipped)} file(s) under {src} cannot be used (strict=True):\n{lines}\n"
            "Fix or remove them, or pass strict=False to skip them."
        )
    if len(classes) < 2:
        raise DataError(
            f"Found {len(classes)} class(es) with readable images under {src} "
            f"({', '.join(classes) or 'none'}); at least two classes are needed. "
            f"{EXPECTED_LAYOUT}" + _skipped_hint(skipped)
        )

    train, val, test, singletons = _assign_splits(
        usable, classes, val_fraction, seed, found_warnings, base
    )
    found_warnings += data_smells(classes, train + val + test, base)
    val, dup_val = _drop_duplicates(train, val, "val")
    test, dup_test = _drop_duplicates(train, test, "test")
    if dup_val or dup_test:
        found_warnings.append(duplicates_warning(dup_val + dup_test, base))
    if not val:
        why = "each duplicates a training image" if dup_val else "every class has a single image"
        raise DataError(
            f"No validation images under {src}: {why}. Add images (two or more per class) "
            "or provide a val/ folder or a split column."
        )
    converted = Counter(r.mode for r in train + val + test if r.mode != "RGB")
    report = ValidationReport(
        scanned=len(outcomes),
        skipped=tuple(skipped),
        singleton_classes=singletons,
        duplicates_dropped=tuple(dup_val + dup_test),
        converted_modes=dict(sorted(converted.items())),
    )
    for message in found_warnings:
        warnings.warn(message, DataWarning, stacklevel=2)
    logger.info("opened %s (%s): %s", src, layout, report.summary().replace("\n", "; "))
    return ImageDataset(
        str(src), layout, classes, tuple(train), tuple(val), tuple(test), report, seed
    )


def _assign_splits(
    usable: list[tuple[str, str, str | None, ImageInfo]],
    classes: tuple[str, ...],
    val_fraction: float,
    seed: int,
    found_warnings: list[str],
    base: Path,
) -> tuple[list[ImageRecord], list[ImageRecord], list[ImageRecord], tuple[str, ...]]:
    """Records per split (each sorted by path), carving val when none was given."""
    index = {name: i for i, name in enumerate(classes)}
    by_split: dict[str | None, list[ImageRecord]] = {None: [], "train": [], "val": [], "test": []}
    for path, label, split, info in usable:
        record = ImageRecord(path, index[label], info.sha256, info.width, info.height, info.mode)
        by_split[split].append(record)
    counts = Counter(label for _, label, _, _ in usable)
    singletons = tuple(name for name in classes if counts[name] == 1)
    first: dict[str, str] = {}
    for path, label, _, _ in sorted(usable, key=lambda u: u[0]):
        first.setdefault(label, path)
    if singletons:
        found_warnings.append(
            "Classes with a single image (kept in train, not validated): "
            + ", ".join(class_example(n, first[n], classes, base) for n in singletons)
            + ". Add images of them, or fix the label if it is a typo."
        )
    pool = by_split["train"] + by_split[None]
    trained = {r.label for r in pool}
    if len(trained) < len(classes):
        missing = [c for c in classes if index[c] not in trained]
        found_warnings.append(
            "Classes with no training images: "
            + ", ".join(class_example(c, first[c], classes, base) for c in missing)
            + ". A model cannot learn them: add training images, or fix the labels if they "
            "are typos."
        )
    if by_split["val"]:
        train, val = pool, by_split["val"]
    else:
        train, val = _carve(pool, val_fraction, seed)
    return (
        sorted(train, key=_path_key),
        sorted(val, key=_path_key),
        sorted(by_split["test"], key=_path_key),
        singletons,
    )


def _skipped_hint(skipped: list[SkippedFile], limit: int = 5) -> str:
    if not skipped:
        return ""
    shown = "; ".join(f"{s.path} ({s.reason})" for s in skipped[:limit])
    more = f"; and {len(skipped) - limit} more" if len(skipped) > limit else ""
    return f" Skipped {len(skipped)}: {shown}{more}."


def _path_key(record: ImageRecord) -> str:
    return record.path


def _carve(
    pool: list[ImageRecord], val_fraction: float, seed: int
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Stratified, seeded train/val split; single-image classes stay in train.

    At least one validation image per class that has two or more: the fraction is raised
    for tiny datasets so that stratification stays possible.
    """
    pool = sorted(pool, key=_path_key)
    counts = Counter(r.label for r in pool)
    alone = [r for r in pool if counts[r.label] == 1]
    rest = [r for r in pool if counts[r.label] > 1]
    if not rest:
        return pool, []
    n_classes = len({r.label for r in rest})
    wanted = math.ceil(val_fraction * len(rest))
    n_val = min(max(n_classes, wanted), len(rest) - n_classes)
    if n_val != wanted:
        logger.info(
            "validation split raised from %d to %d images to hold every class", wanted, n_val
        )
    train, val = train_test_split(
        rest, test_size=n_val, random_state=seed, shuffle=True, stratify=[r.label for r in rest]
    )
    return alone + list(train), list(val)


def _drop_duplicates(
    train: list[ImageRecord], evaluation: list[ImageRecord], split: str
) -> tuple[list[ImageRecord], list[DuplicatePair]]:
    """Drop evaluation images byte-identical to a training image (as BiT does)."""
    first: dict[str, str] = {}
    for r in train:
        first.setdefault(r.sha256, r.path)
    kept = [r for r in evaluation if r.sha256 not in first]
    pairs = [DuplicatePair(split, r.path, first[r.sha256]) for r in evaluation if r.sha256 in first]
    return kept, pairs
