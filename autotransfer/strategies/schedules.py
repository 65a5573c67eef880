"""Schedule lengths in optimiser steps: the BiT-HyperRule, a size-scaled default and the
range the search explores.

A length is a number of images seen, turned into steps at the trial's batch size (a
smaller batch takes more steps over the same images; a batch larger than the training
set sees all of it in one step), and capped in passes over the training set; the
trial's deadline may shorten it further (see :mod:`autotransfer.strategies.loop`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from autotransfer.data.statistics import bit_hyperrule
from autotransfer.strategies import loop
from autotransfer.strategies.base import SearchContext

MAX_EPOCHS = 100  # no schedule passes over the training images more often than this
DEFAULT_IMAGES = 20_000  # images seen by the default schedule (between 3 and 30 epochs)
SHORTEST_IMAGES = 5_000  # the search's shortest schedule, where 3 epochs are more than this


def steps_for(images: int, search: SearchContext) -> int:
    """Optimiser steps that see ``images`` images at the trial's batch size: as many
    epochs (``images / num_train``) of the loop's steps per epoch.

    >>> steps_for(20_000, SearchContext(1000, 10, 200.0, None, "cpu", 32))  # 20 x 32
    640
    """
    n = max(1, search.num_train)
    per_epoch = math.ceil(n / max(1, search.batch_size))
    return max(1, -(-images * per_epoch // n))


def default_steps(search: SearchContext) -> int:
    """About 20k images seen, between 3 and 30 epochs' worth (the deadline may shorten it).

    >>> default_steps(SearchContext(1000, 10, 200.0, None, "cpu", 32))  # 20 epochs
    640
    >>> default_steps(SearchContext(48_000, 10, 200.0, None, "cpu", 32))  # 3 epochs
    4500
    """
    n = max(1, search.num_train)
    return steps_for(min(30 * n, max(3 * n, DEFAULT_IMAGES)), search)


def hyperrule_steps(search: SearchContext) -> int:
    """BiT-HyperRule's schedule (500 / 10k / 20k steps of 512 images by dataset size) as
    steps at the trial's batch size, the same images seen, at most ``MAX_EPOCHS`` epochs.

    >>> hyperrule_steps(SearchContext(1000, 10, 200.0, None, "cpu", 32))  # 100 epochs
    3200
    >>> hyperrule_steps(SearchContext(100_000, 10, 200.0, None, "cuda", 128))  # 51.2 x 782
    40039
    """
    rule = bit_hyperrule(search.num_train, search.median_side)
    n = max(1, search.num_train)
    return steps_for(min(MAX_EPOCHS * n, rule["schedule_steps"] * 512), search)


def step_range(search: SearchContext, max_epochs: int) -> tuple[int, int]:
    """The schedule lengths a search explores, in steps: from 3 epochs (or 5k images
    where that is fewer, a schedule that fits a short trial on a large dataset) to
    ``max_epochs`` epochs. The defaults above lie inside it.

    >>> step_range(SearchContext(1000, 10, 200.0, None, "cpu", 32), 40)
    (96, 1280)
    >>> step_range(SearchContext(48_000, 10, 200.0, None, "cpu", 32), 40)
    (157, 60000)
    """
    n = max(1, search.num_train)
    return steps_for(min(3 * n, SHORTEST_IMAGES), search), steps_for(max_epochs * n, search)


def training_space(
    space: Any, search: SearchContext, lr: tuple[float, float], max_epochs: int = 40
) -> dict[str, Any]:
    """What every trained strategy searches, suggested on ``space`` (an Optuna trial): the
    learning rate, log-uniform on ``lr``; the length in steps (:func:`step_range` up to
    ``max_epochs`` epochs); the weight decay, log-uniform from 1e-6 to 1e-3."""
    return {
        "lr": space.suggest_float("lr", *lr, log=True),
        "steps": space.suggest_int("steps", *step_range(search, max_epochs), log=True),
        "weight_decay": space.suggest_float("weight_decay", 1e-6, 1e-3, log=True),
    }


def trial_schedule(params: Mapping[str, Any], **fixed: Any) -> loop.Schedule:
    """The :class:`~autotransfer.strategies.loop.Schedule` of a trial's parameters: its
    length (``steps``, or ``epochs`` where the caller gives them: scripts, benchmarks and
    tests that ask for a number of epochs) and weight decay, with the ``fixed`` rest.

    >>> trial_schedule({"steps": 600, "weight_decay": 1e-5}, decay="cosine").steps
    600
    >>> trial_schedule({"steps": 600, "epochs": 2, "weight_decay": 0.0}).epochs
    2
    """
    if "epochs" in params:
        length = {"epochs": int(params["epochs"])}
    else:
        length = {"steps": int(params["steps"])}
    return loop.Schedule(**length, weight_decay=float(params["weight_decay"]), **fixed)


def default_epochs(search: SearchContext) -> int:
    """About 20k images seen, between 3 and 30 epochs, for strategies whose length is in
    epochs (the lp_ft plugin); the built-ins use :func:`default_steps`.

    >>> default_epochs(SearchContext(1000, 10, 200.0, None, "cpu", 32))
    20
    """
    return int(min(30, max(3, math.ceil(DEFAULT_IMAGES / max(1, search.num_train)))))
