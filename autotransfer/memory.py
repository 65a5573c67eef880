"""How much memory this process may use, and the default cap of the in-memory image stores.

The default cap is a quarter of the memory available when a store is made: the rest stays
for the model, its optimiser state and the activations of a training batch (several GB on
CPU at 160 px), the features of the ranking, and the page cache that serves the memory
maps of what goes past the cap.
"""

from __future__ import annotations

import os
from pathlib import Path

MEMORY_SHARE = 0.25  # of the available memory, the default cap
FALLBACK_CAP = 2 * 2**30  # when the available memory cannot be read


def available_memory() -> int | None:
    """Bytes this process may still use: MemAvailable, bounded by a cgroup (container)
    limit; None when neither /proc nor ``os.sysconf`` tells."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            left = int(Path(limit).read_text()) - int(Path(usage).read_text())
        except (OSError, ValueError):  # absent, or "max": no limit
            continue
        found.append(max(0, left))
    return min(found) if found else None


def default_memory_cap() -> int:
    """A quarter of :func:`available_memory`, else 2 GiB."""
    available = available_memory()
    return FALLBACK_CAP if available is None else int(MEMORY_SHARE * available)
