"""Wall-clock budgets: a deadline, the share of it a step may use, and the closing reserve."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """A deadline on :func:`time.monotonic` (None: no time limit)."""

    seconds: float | None
    started: float

    @classmethod
    def start(cls, seconds: float | None) -> Budget:
        return cls(seconds=seconds, started=time.monotonic())

    @property
    def deadline(self) -> float | None:
        return None if self.seconds is None else self.started + self.seconds

    def left(self) -> float | None:
        """Seconds left (never negative), or None without a limit."""
        return None if self.seconds is None else max(0.0, self.deadline - time.monotonic())


# Beyond scoring: loading the best checkpoint, saving the model and logging it.
CLOSING_SECONDS = 2.0


def closing_reserve(
    seconds_per_image: float, val_images: int, test_images: int, full_val_images: int = 0
) -> float:
    """Seconds a fit keeps back from training for the work that follows it, so that it
    ends within its budget: the last trial's validation scoring (the training loop's
    evaluation when the deadline cuts it, or the search predicting the split for a
    strategy that does not hand back its probabilities), then once the best model's
    scoring on the whole validation split (when the search validated on a sample of it)
    and on the test split, plus :data:`CLOSING_SECONDS`.

    >>> closing_reserve(0.01, val_images=100, test_images=200)
    5.0
    >>> closing_reserve(0.01, val_images=100, test_images=200, full_val_images=300)
    8.0
    """
    images = val_images + full_val_images + test_images
    return seconds_per_image * images + CLOSING_SECONDS
