"""Schedules: what a trial trains for and how (:class:`Schedule`), the learning rate
along it (:func:`lr_factor`), the fewest steps it is worth (:func:`useful_steps`), and its
length in optimiser steps: the BiT-HyperRule, a size-scaled default, fastai's short
recipe and the range the search explores.

A length is a number of images seen, turned into steps at the trial's batch size (a
smaller batch takes more steps over the same images; a batch larger than the training
set sees all of it in one step), and capped in passes over the training set; the
trial's deadline may shorten it further (see :mod:`autotransfer.strategies.loop`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autotransfer.data.statistics import bit_hyperrule
from autotransfer.errors import ConfigError
from autotransfer.strategies.base import SearchContext

# the fewest steps a schedule is worth training with: this share of its planned steps,
# and an epoch (or the whole schedule, when it is shorter than both)
MIN_SHARE = 0.25
MIN_EPOCHS = 1.0
# (the loop evaluates and checks the pace every few steps: a trial that cannot reach these
# in its time is skipped, see autotransfer.strategies.loop)
MAX_EPOCHS = 100  # no schedule passes over the training images more often than this
DEFAULT_IMAGES = 20_000  # images seen by the default schedule (between 3 and 30 epochs)
SHORTEST_IMAGES = 5_000  # the search's shortest schedule, where 3 epochs are more than this


@dataclass(frozen=True)
class Schedule:
    """How long and how. The length is ``steps`` optimiser steps at the trial's batch
    size (scaled when an out-of-memory retry halves the batch, so the same images are
    seen) or ``epochs`` passes over the training images. ``decay`` is ``step`` (BiT:
    x0.1 at 30, 60 and 90 %), ``cosine`` or ``one_cycle`` (fastai's: up from a 25th of the
    rate over ``warmup``, then down to nearly zero, both on a cosine). ``warm_head``: the
    share of the steps in which the head alone trains, the rest frozen (fastai's
    ``fine_tune``); that phase has a rising cycle of its own, the rest the ``decay``.
    """

    epochs: int | None = None
    optimizer: str = "sgd"  # "sgd" (momentum 0.9) or "adamw"
    weight_decay: float = 0.0
    warmup: float = 0.05  # share of the steps spent warming up linearly
    decay: str = "step"
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    patience: int | None = None  # stop after this many evaluations without a better one
    steps: int | None = None
    warm_head: float = 0.0

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.steps is None):
            raise ConfigError(
                f"A Schedule takes its length as steps or as epochs, not "
                f"{'both' if self.steps is not None else 'neither'} (got epochs="
                f"{self.epochs!r}, steps={self.steps!r}); give one, e.g. Schedule(steps=2000)."
            )

    def total_steps(self, steps_per_epoch: int, batch_scale: float = 1.0) -> int:
        """The length in optimiser steps; ``batch_scale`` is the batch size the length
        in ``steps`` was meant for over the one trained with.

        >>> Schedule(epochs=3).total_steps(100), Schedule(steps=250).total_steps(100, 2.0)
        (300, 500)
        """
        if self.steps is None:
            return max(1, int(self.epochs)) * steps_per_epoch
        return max(1, math.ceil(int(self.steps) * batch_scale))


def lr_factor(progress: float, schedule: Schedule) -> float:
    """The learning-rate multiplier at ``progress`` (0..1) of the schedule.

    >>> lr_factor(0.5, Schedule(steps=1000, warmup=0.0))
    0.1
    >>> s = Schedule(steps=100, decay="one_cycle", warmup=0.25, warm_head=0.2)
    >>> [round(lr_factor(p, s), 3) for p in (0.0, 0.1, 0.2, 0.4, 0.6, 1.0)]
    [0.04, 0.528, 0.2, 1.0, 0.75, 0.0]
    """
    if schedule.warm_head > 0:
        if progress < schedule.warm_head:  # the head alone: its rate rises through the phase
            return _cycle(progress / schedule.warm_head, rise=0.99, start=1 / 25)
        progress = (progress - schedule.warm_head) / (1 - schedule.warm_head)
        if schedule.decay == "one_cycle":  # fastai's fine_tune: from a fifth, after the head
            return _cycle(progress, rise=schedule.warmup, start=1 / 5)
    if schedule.decay == "one_cycle":
        return _cycle(progress, rise=schedule.warmup, start=1 / 25)
    if schedule.warmup > 0 and progress < schedule.warmup:
        return max(progress / schedule.warmup, 1e-3)
    if schedule.decay == "cosine":
        p = (progress - schedule.warmup) / max(1e-9, 1 - schedule.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, p)))
    return 0.1 ** sum(progress >= b for b in (0.3, 0.6, 0.9))


def _cycle(progress: float, rise: float, start: float, end: float = 1e-5) -> float:
    """One cycle: from ``start`` up to 1 over the ``rise`` share, then down to ``end``,
    both halves on a cosine."""
    if progress < rise:
        return start + (1 - start) * (1 - math.cos(math.pi * progress / rise)) / 2
    p = min(1.0, (progress - rise) / max(1e-9, 1 - rise))
    return end + (1 - end) * (1 + math.cos(math.pi * p)) / 2


def useful_steps(planned: int, steps_per_epoch: int) -> int:
    """The fewest steps a schedule of ``planned`` steps is worth training with:
    :data:`MIN_SHARE` of them and :data:`MIN_EPOCHS` epochs, or all of them when fewer.
    A schedule compressed further decays before the model has learnt anything (the
    BiT-HyperRule's 3,200 steps in 60 reached 0.66 where a frozen head had 0.85).

    >>> useful_steps(3200, 32), useful_steps(96, 32), useful_steps(20, 32)
    (800, 32, 20)
    """
    need = max(math.ceil(MIN_SHARE * planned), math.ceil(MIN_EPOCHS * steps_per_epoch))
    return min(planned, need)


def doomed(fits: int, planned: int, steps_per_epoch: int, step_s: float) -> str | None:
    """Why a schedule of ``planned`` steps is not worth training when only ``fits`` fit in
    its time (at ``step_s`` seconds a step), or None when they are :func:`useful_steps`.

    >>> doomed(75, 3200, 32, 0.8)[:64]
    'only 75 of its 3200 steps fit in its time (0.8 s a step), under '
    >>> doomed(75, 128, 32, 0.8) is None
    True
    """
    useful = useful_steps(planned, steps_per_epoch)
    if fits >= useful:
        return None
    return (
        f"only {fits} of its {planned} steps fit in its time ({step_s:.2g} s a step), "
        f"under the {useful} a schedule needs ({MIN_SHARE:.0%} of its steps and an epoch): "
        "skipped, its time left to the other trials"
    )


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


def quick_steps(search: SearchContext) -> int:
    """The quick recipe's length (fastai's ``fine_tune``): four epochs, or two where four
    would see more than :data:`DEFAULT_IMAGES` / 2 images (the deadline may shorten it).

    >>> quick_steps(SearchContext(1000, 10, 200.0, None, "cpu", 32))  # 4 epochs
    128
    >>> quick_steps(SearchContext(48_000, 10, 200.0, None, "cpu", 32))  # 2 epochs
    3000
    """
    n = max(1, search.num_train)
    return steps_for(min(4 * n, max(2 * n, DEFAULT_IMAGES // 2)), search)


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


def trial_schedule(params: Mapping[str, Any], **fixed: Any) -> Schedule:
    """The :class:`~autotransfer.strategies.Schedule` of a trial's parameters: its
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
    return Schedule(**length, weight_decay=float(params["weight_decay"]), **fixed)


def default_epochs(search: SearchContext) -> int:
    """About 20k images seen, between 3 and 30 epochs, for strategies whose length is in
    epochs (the lp_ft plugin); the built-ins use :func:`default_steps`.

    >>> default_epochs(SearchContext(1000, 10, 200.0, None, "cpu", 32))
    20
    """
    return int(min(30, max(3, math.ceil(DEFAULT_IMAGES / max(1, search.num_train)))))
