"""Progress bars that route log lines through themselves and switch off when not on a terminal.

Three bars exist: ``scanning`` (files of the folder), one per backbone for feature
extraction (images) and ``trials`` for the study (trials done out of ``n_trials``, the best
validation accuracy so far and the time left in the budget). All go to stderr; while a
bar is open, log records of the root logger's console handlers are written above it
instead of through it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm


def bar_enabled(enabled: bool | None) -> bool:
    """``enabled`` as given, else whether stderr is a terminal (a log file or a pipe gets
    no bars)."""
    return sys.stderr.isatty() if enabled is None else bool(enabled)


@contextlib.contextmanager
def progress_bar(
    desc: str, total: int | None = None, enabled: bool | None = None, unit: str = "img"
) -> Iterator[Callable[..., None]]:
    """Yield an ``update(done, total=None, **postfix)`` callable backed by a tqdm bar on stderr.

    ``enabled=None`` shows the bar only when stderr is a terminal. ``total=None`` keeps
    the bar's total (None: a counter without an end); ``postfix`` items are shown after
    the counts (``best=0.8125``).

    >>> with progress_bar("trials", total=3, enabled=False, unit="trial") as update:
    ...     update(1, best="0.5000")
    """
    with logging_redirect_tqdm(loggers=[logging.root]):
        bar = tqdm(total=total, desc=desc, unit=unit, disable=not bar_enabled(enabled), leave=False)
        try:

            def update(done: int, total_: int | None = None, **postfix: Any) -> None:
                if total_ is not None and bar.total != total_:
                    bar.total = total_
                bar.n = done
                if postfix:
                    bar.set_postfix(postfix, refresh=False)
                bar.refresh()

            yield update
        finally:
            bar.close()
