"""Find the labelled files of a dataset: class folders, split folders or a CSV manifest.

Every file inside a class folder is a candidate, whatever its extension, and class folders
are read *recursively*: ``root/cat/indoor/1.jpg`` is a ``cat``. Hidden files and folders
(``.DS_Store``, ``._1.jpg``, ``.ipynb_checkpoints``) and ``Thumbs.db``/``desktop.ini``
are ignored silently. Symlinked folders are followed once (loops are cut). Nothing is
decoded here: :mod:`autotransfer.data.scan` checks the candidates.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from autotransfer.data.types import SkippedFile
from autotransfer.errors import DataError

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
EXPECTED_LAYOUT = (
    "Expected root/<class>/<image> (e.g. data/cat/1.jpg and data/dog/2.jpg), "
    "root/train/<class>/<image> with optional val/ and test/, or a CSV manifest with "
    "header 'path,label'."
)

# (absolute path, class name, split or None when the split is still to be carved)
Candidate = tuple[str, str, "str | None"]


def _ignored(name: str) -> bool:
    return name.startswith(".") or name.lower() in _IGNORED_NAMES


def _inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def walk_files(top: str, blocked: set[tuple[int, int]], skipped: list[SkippedFile]) -> list[str]:
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
                SkippedFile(
                    entry.path,
                    f"image directly in {where}, not inside a class folder; "
                    "move it into the folder of its class",
                )
            )
    return dirs


def discover_folder(
    root: Path, found_warnings: list[str]
) -> tuple[str, list[Candidate], list[SkippedFile], dict[str, list[str]]]:
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
    candidates: list[Candidate] = []
    class_dirs: dict[str, list[str]] = {}
    tree = [str(root), *(d.path for d in split_dirs), *(e.path for e, _ in tops)]
    blocked = {key for key in map(_inode, tree) if key is not None}
    for entry, split in tops:
        class_dirs.setdefault(entry.name, []).append(entry.path)
        candidates += [
            (os.path.abspath(p), entry.name, split)
            for p in walk_files(entry.path, blocked, skipped)
        ]
    return ("split_folders" if is_split else "class_folders"), candidates, skipped, class_dirs


def read_manifest(path: Path) -> tuple[list[Candidate], list[SkippedFile], dict[str, list[str]]]:
    """Read a ``path,label[,split]`` CSV; paths are relative to its folder or absolute."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"Manifest {path} is not UTF-8 text ({exc}). Save it as UTF-8 CSV."
        ) from exc
    reader = csv.reader(text.splitlines())
    candidates: list[Candidate] = []
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
                        full,
                        f"listed again on manifest line {line} (first on line "
                        f"{first_line[full]}); remove the repeated line",
                    )
                )
                continue
            first_line[full] = line
            if os.path.isdir(full) or not os.path.exists(full):
                reason = "is a folder" if os.path.isdir(full) else "does not exist"
                given = repr(rel) if os.path.isabs(rel) else f"{rel!r}, relative to {path.parent}"
                skipped.append(
                    SkippedFile(
                        full,
                        f"listed on manifest line {line} but {reason} ({given}); fix the path "
                        "or remove the line",
                    )
                )
                continue
            candidates.append((full, label, SPLIT_ALIASES.get(split_value)))
    except csv.Error as exc:
        raise DataError(f"Manifest {path}, line {reader.line_num}: malformed CSV ({exc}).") from exc
    return candidates, skipped, {}
