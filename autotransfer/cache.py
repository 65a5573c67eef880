"""Where autotransfer keeps what it can reuse (features, scans), and safe writes there."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def default_cache_dir() -> Path:
    """The cache folder: ``$AUTOTRANSFER_CACHE``, else ``$XDG_CACHE_HOME/autotransfer``,
    else ``~/.cache/autotransfer``.

    >>> default_cache_dir().name  # doctest: +SKIP
    'autotransfer'
    """
    env = os.environ.get("AUTOTRANSFER_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "autotransfer"


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    """The given folder, or the default one; created if missing."""
    path = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_key(parts: dict[str, Any]) -> str:
    """A stable short hash of a JSON-able description of what was computed."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` and move the result into place, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
