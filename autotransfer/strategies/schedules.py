"""Default schedule lengths: the BiT-HyperRule and a size-scaled default for the others."""

from __future__ import annotations

import math

from autotransfer.strategies.base import SearchContext

MAX_EPOCHS = 100


def default_epochs(search: SearchContext) -> int:
    """About 20k images seen, between 3 and 30 epochs (the deadline may shorten it).

    >>> default_epochs(SearchContext(1000, 10, 200.0, None, "cpu", 32))
    20
    """
    return int(min(30, max(3, math.ceil(20_000 / max(1, search.num_train)))))


def hyperrule_epochs(search: SearchContext) -> int:
    """BiT-HyperRule's schedule (500 / 10k / 20k steps of 512 images by dataset size) in
    epochs, capped at 100; the trial's deadline compresses it further.

    >>> hyperrule_epochs(SearchContext(1000, 10, 200.0, None, "cpu", 32))
    100
    >>> hyperrule_epochs(SearchContext(100_000, 10, 200.0, None, "cuda", 128))
    52
    """
    from autotransfer.data.statistics import bit_hyperrule

    rule = bit_hyperrule(search.num_train, search.median_side)
    seen = rule["schedule_steps"] * 512
    return int(min(MAX_EPOCHS, max(1, math.ceil(seen / max(1, search.num_train)))))
