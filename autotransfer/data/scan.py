"""The validation pass: fully decode every candidate file once, with an on-disk cache.

Files that cannot be used (empty, not an image, corrupt, truncated, decompression bombs,
unreadable, not a regular file) come back as the reason why instead of an
:class:`~autotransfer.data.images.ImageInfo`.
The outcomes are cached under ``cache_dir/scan/`` keyed by absolute path, size and
modification time, so scanning the same source again only decodes what changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import PIL

from autotransfer.cache import atomic_write
from autotransfer.data.images import (
    ImageInfo,
    UnreadableImageError,
    probe_bytes,
    read_image_file,
    strict_decoding,
)

logger = logging.getLogger(__name__)

_CACHE_VERSION = 1
Progress = Callable[[int, int], Any]


def probe_file(path: str, max_pixels: int | None) -> ImageInfo | str:
    """Check one file: an :class:`ImageInfo` or the reason it cannot be used."""
    try:
        return probe_bytes(read_image_file(path), path, max_pixels=max_pixels)
    except UnreadableImageError as exc:
        return exc.reason
    except OSError as exc:
        return f"cannot read file ({exc.strerror or exc})"


def scan(
    paths: list[str], max_pixels: int | None, cache: ScanCache | None, progress: Progress | None
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
        results = pool.map(lambda item: probe_file(item[0], max_pixels), todo)
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


class ScanCache:
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
