"""Progress bars that route log lines through themselves and switch off when not on a terminal."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm


@contextlib.contextmanager
def progress_bar(
    desc: str, total: int | None = None, enabled: bool | None = None, unit: str = "img"
) -> Iterator[Callable[[int, int], None]]:
    """Yield an ``update(done, total)`` callable backed by a tqdm bar on stderr.

    ``enabled=None`` shows the bar only when stderr is a terminal.
    """
    disable = (not sys.stderr.isatty()) if enabled is None else not enabled
    with logging_redirect_tqdm(loggers=[logging.root]):
        bar = tqdm(total=total, desc=desc, unit=unit, disable=disable, leave=False)
        try:

            def update(done: int, total_: int) -> None:
                if bar.total != total_:
                    bar.total = total_
                bar.n = done
                bar.refresh()

            yield update
        finally:
            bar.close()
