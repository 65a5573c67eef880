"""Open an image folder or a CSV manifest as a checked, split :class:`ImageDataset`.

Three layouts are understood (see :func:`open_dataset`):

``class_folders``  ``root/<class>/...`` - a seeded, stratified train/val split is carved.
``split_folders``  ``root/train/<class>/...`` plus optional ``val/`` (or ``valid/``) and
                   ``test/``; without ``val/`` one is carved from ``train/``.
``manifest``       a CSV file with header ``path,label`` and an optional ``split`` column.

Every file inside a class folder is tried, whatever its extension, and class folders are
read *recursively*: ``root/cat/indoor/1.jpg`` is a ``cat``. Hidden files and folders
(``.DS_Store``, ``._1.jpg``, ``.ipynb_checkpoints``) and ``Thumbs.db``/``desktop.ini``
are ignored silently. Symlinked folders are followed once (loops are cut).

One validation pass fully decodes every image before any model runs. Files that cannot be
used (empty, not an image, corrupt, truncated, decompression bombs) are skipped and listed
in :attr:`ValidationReport.skipped` (or raise with ``strict=True``). The pass is cached
under ``cache_dir/scan/`` keyed by absolute path, size and modification time, so opening
the same folder again only decodes what changed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import PIL
from sklearn.model_selection import train_test_split

from autotransfer.cache import atomic_write
from autotransfer.data.images import (
    DEFAULT_MAX_PIXELS,
    ImageInfo,
    UnreadableImageError,
    probe_bytes,
    strict_decoding,
)
from autotransfer.data.types import (
    DuplicatePair,
    ImageDataset,
    ImageRecord,
    SkippedFile,
    ValidationReport,
)
from autotransfer.errors import ConfigError, DataError, DataWarning

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
SPLIT_ALIASES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
_IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini"})
_CACHE_VERSION = 1
_EXPECTED_LAYOUT = (
    "Expected root/<class>/<image> (e.g. data/cat/1.jpg and data/dog/2.jpg), "
    "root/train/<class>/<image> with optional val/ and test/, or a CSV manifest with "
    "header 'path,label'."
)

# (absolute path, class name, split or None when the split is still to be carved)
_Candidate = tuple[str, str, "str | None"]
Progress = Callable[[int, int], Any]


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
        candidates, skipped, class_dirs = _read_manifest(src)
    elif src.is_dir():
        layout, candidates, skipped, class_dirs = _discover_folder(src, found_warnings)
    else:
        raise DataError(f"No such folder or CSV file: {src}. {_EXPECTED_LAYOUT}")

    cache = _ScanCache(Path(cache_dir), src, max_pixels) if cache_dir is not None else None
    outcomes = _scan(sorted({c[0] for c in candidates}), max_pixels, cache, progress)

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
        found_warnings.append(f"Ignored class folders without readable images: {', '.join(empty)}.")
    skipped.sort(key=lambda s: s.path)
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
            f"{_EXPECTED_LAYOUT}" + _skipped_hint(skipped)
        )

    train, val, test, singletons = _assign_splits(
        usable, classes, val_fraction, seed, found_warnings
    )
    val, dup_val = _drop_duplicates(train, val, "val")
    test, dup_test = _drop_duplicates(train, test, "test")
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
) -> tuple[list[ImageRecord], list[ImageRecord], list[ImageRecord], tuple[str, ...]]:
    """Records per split (each sorted by path), carving val when none was given."""
    index = {name: i for i, name in enumerate(classes)}
    by_split: dict[str | None, list[ImageRecord]] = {None: [], "train": [], "val": [], "test": []}
    for path, label, split, info in usable:
        record = ImageRecord(path, index[label], info.sha256, info.width, info.height, info.mode)
        by_split[split].append(record)
    counts = Counter(label for _, label, _, _ in usable)
    singletons = tuple(name for name in classes if counts[name] == 1)
    if singletons:
        found_warnings.append(
            f"Classes with a single image (kept in train, not validated): {', '.join(singletons)}."
        )
    pool = by_split["train"] + by_split[None]
    trained = {r.label for r in pool}
    if len(trained) < len(classes):
        missing = ", ".join(c for c in classes if index[c] not in trained)
        found_warnings.append(f"Classes with no training images: {missing}.")
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


def _ignored(name: str) -> bool:
    return name.startswith(".") or name.lower() in _IGNORED_NAMES


def _inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _walk_files(top: str, blocked: set[tuple[int, int]], skipped: list[SkippedFile]) -> list[str]:
    """Every non-hidden file under ``top``, recursively, sorted.

    Folders (symlinked or not) are entered once; those in ``blocked`` (the dataset root,
    split and other class folders) never, so a link back up the tree cannot loop or pull
    other classes in.
    """
    files: list[str] = []
    seen: set[tuple[int, int] | None] = set(blocked) - {_inode(top)}
    stack = [top]
    while stack:
        folder = stack.pop()
        key = _inode(folder)
        if key in seen:
            logger.debug("not entering %s: already read (symlink loop or link to a class)", folder)
            continue
        seen.add(key)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            skipped.append(SkippedFile(folder, f"cannot list folder ({exc.strerror or exc})"))
            continue
        for entry in entries:
            if _ignored(entry.name):
                continue
            if entry.is_dir(follow_symlinks=True):
                stack.append(entry.path)
            else:
                files.append(entry.path)
    return sorted(files)


def _list_subdirs(
    folder: Path, skipped: list[SkippedFile], split: str | None
) -> list[os.DirEntry[str]]:
    """Visible sub-folders of ``folder``; visible loose image files are reported."""
    dirs = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if _ignored(entry.name):
            continue
        if entry.is_dir(follow_symlinks=True):
            dirs.append(entry)
        elif Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
            where = f"the {split}/ folder" if split else "the root folder"
            skipped.append(
                SkippedFile(entry.path, f"image directly in {where}, not inside a class folder")
            )
    return dirs


def _discover_folder(
    root: Path, found_warnings: list[str]
) -> tuple[str, list[_Candidate], list[SkippedFile], dict[str, list[str]]]:
    """Find the layout of ``root`` and list every candidate file with its class and split."""
    skipped: list[SkippedFile] = []
    subdirs = _list_subdirs(root, skipped, None)
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_ALIASES]
    is_split = bool(subdirs) and len(split_dirs) == len(subdirs)
    if is_split and not any(d.name.lower() == "train" for d in split_dirs):
        raise DataError(
            f"{root} has {', '.join(d.name for d in split_dirs)}/ but no train/ folder. "
            "Add train/<class>/ folders, or put class folders directly under the root."
        )
    if split_dirs and not is_split:
        found_warnings.append(
            f"{root} mixes split folders ({', '.join(d.name for d in split_dirs)}) with other "
            "folders; reading every folder as a class. For the split layout, move classes "
            "under train/."
        )
    if not is_split:
        tops = [(d, None) for d in subdirs]
    else:
        seen_splits: dict[str, str] = {}
        tops = []
        for d in split_dirs:
            split = SPLIT_ALIASES[d.name.lower()]
            if split in seen_splits:
                raise DataError(
                    f"{root} has both {seen_splits[split]}/ and {d.name}/ for the {split} split; "
                    "keep one of them."
                )
            seen_splits[split] = d.name
            tops += [(c, split) for c in _list_subdirs(Path(d.path), skipped, d.name)]
    candidates: list[_Candidate] = []
    class_dirs: dict[str, list[str]] = {}
    tree = [str(root), *(d.path for d in split_dirs), *(e.path for e, _ in tops)]
    blocked = {key for key in map(_inode, tree) if key is not None}
    for entry, split in tops:
        class_dirs.setdefault(entry.name, []).append(entry.path)
        candidates += [
            (os.path.abspath(p), entry.name, split)
            for p in _walk_files(entry.path, blocked, skipped)
        ]
    return ("split_folders" if is_split else "class_folders"), candidates, skipped, class_dirs


def _read_manifest(path: Path) -> tuple[list[_Candidate], list[SkippedFile], dict[str, list[str]]]:
    """Read a ``path,label[,split]`` CSV; paths are relative to its folder or absolute."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"Manifest {path} is not UTF-8 text ({exc}). Save it as UTF-8 CSV."
        ) from exc
    reader = csv.reader(text.splitlines())
    candidates: list[_Candidate] = []
    skipped: list[SkippedFile] = []
    first_line: dict[str, int] = {}
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        if "path" not in header or "label" not in header:
            raise DataError(
                f"Manifest {path}, line 1: the header must name the columns 'path,label' "
                f"(optionally 'split'); found {','.join(header) or 'an empty line'}. "
                "Add that header line."
            )
        col = {name: header.index(name) for name in ("path", "label", "split") if name in header}
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(
                    f"Manifest {path}, line {line}: expected {len(header)} fields "
                    f"({','.join(header)}), found {len(row)}: {row!r}. Quote values with commas."
                )
            rel, label = row[col["path"]].strip(), row[col["label"]].strip()
            split_value = row[col["split"]].strip().lower() if "split" in col else ""
            if not rel or not label:
                raise DataError(f"Manifest {path}, line {line}: empty path or label in {row!r}.")
            if split_value and split_value not in SPLIT_ALIASES:
                raise DataError(
                    f"Manifest {path}, line {line}: unknown split {split_value!r}; use train, "
                    "val (or valid) or test, or leave it empty to let autotransfer split."
                )
            full = os.path.abspath(os.path.join(path.parent, rel))
            if full in first_line:
                skipped.append(
                    SkippedFile(
                        full, f"listed again on line {line} (first on line {first_line[full]})"
                    )
                )
                continue
            first_line[full] = line
            if not os.path.isfile(full):
                reason = "is a folder" if os.path.isdir(full) else "does not exist"
                skipped.append(SkippedFile(full, f"listed on manifest line {line} but {reason}"))
                continue
            candidates.append((full, label, SPLIT_ALIASES.get(split_value)))
    except csv.Error as exc:
        raise DataError(f"Manifest {path}, line {reader.line_num}: malformed CSV ({exc}).") from exc
    return candidates, skipped, {}


def _probe_file(path: str, max_pixels: int | None) -> ImageInfo | str:
    """Check one file: an :class:`ImageInfo` or the reason it cannot be used."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        return probe_bytes(data, path, max_pixels=max_pixels)
    except UnreadableImageError as exc:
        return exc.reason
    except OSError as exc:
        return f"cannot read file ({exc.strerror or exc})"


def _scan(
    paths: list[str], max_pixels: int | None, cache: _ScanCache | None, progress: Progress | None
) -> dict[str, ImageInfo | str]:
    """Check every path once (in threads: Pillow and hashlib release the GIL)."""
    started = time.perf_counter()
    outcomes: dict[str, ImageInfo | str] = {}
    todo: list[tuple[str, os.stat_result]] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as exc:
            outcomes[path] = f"cannot read file ({exc.strerror or exc}; a broken symlink?)"
            continue
        hit = cache.get(path, st) if cache is not None else None
        if hit is None:
            todo.append((path, st))
        else:
            outcomes[path] = hit
    total, hits = len(paths), len(outcomes)
    if progress is not None:
        progress(hits, total)
    workers = max(1, min(8, 2 * (os.cpu_count() or 1), len(todo)))
    with strict_decoding(), ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda item: _probe_file(item[0], max_pixels), todo)
        for done, ((path, st), outcome) in enumerate(zip(todo, results), start=hits + 1):
            outcomes[path] = outcome
            if cache is not None:
                cache.put(path, st, outcome)
            if progress is not None:
                progress(done, total)
    if cache is not None:
        cache.save(keep=paths)
    logger.info(
        "scanned %d files (%d from cache, %d decoded) in %.2fs",
        total, hits, len(todo), time.perf_counter() - started,
    )  # fmt: skip
    return outcomes


class _ScanCache:
    """A JSON file of scan outcomes for one source, keyed by path, size and mtime_ns.

    An unreadable or mismatched file (other version, Pillow or ``max_pixels``) is ignored
    and rebuilt; a cache that cannot be written only logs a warning.
    """

    def __init__(self, cache_dir: Path, source: Path, max_pixels: int | None) -> None:
        key = hashlib.sha256(str(source).encode()).hexdigest()[:20]
        self.file = cache_dir / "scan" / f"{key}.json"
        self.header = {
            "version": _CACHE_VERSION,
            "pillow": PIL.__version__,
            "max_pixels": max_pixels,
            "source": str(source),
        }
        self.entries: dict[str, dict[str, Any]] = {}
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("header") == self.header:
                entries = data.get("entries")
                self.entries = entries if isinstance(entries, dict) else {}
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable scan cache %s (%s); rebuilding it", self.file, exc)

    def get(self, path: str, st: os.stat_result) -> ImageInfo | str | None:
        entry = self.entries.get(path)
        if not isinstance(entry, dict) or entry.get("stat") != [st.st_size, st.st_mtime_ns]:
            return None
        try:
            if "skip" in entry:
                return str(entry["skip"])
            return ImageInfo.from_dict(entry["info"])
        except (KeyError, TypeError):
            return None

    def put(self, path: str, st: os.stat_result, outcome: ImageInfo | str) -> None:
        entry: dict[str, Any] = {"stat": [st.st_size, st.st_mtime_ns]}
        if isinstance(outcome, str):
            entry["skip"] = outcome
        else:
            entry["info"] = outcome.to_dict()
        self.entries[path] = entry

    def save(self, keep: Iterable[str]) -> None:
        """Write the entries of ``keep`` atomically (forgetting files that are gone)."""
        entries = {p: self.entries[p] for p in keep if p in self.entries}
        blob = json.dumps({"header": self.header, "entries": entries})
        try:
            atomic_write(self.file, lambda tmp: tmp.write_text(blob, encoding="utf-8"))
        except OSError as exc:
            logger.warning("could not write scan cache %s (%s)", self.file, exc)
