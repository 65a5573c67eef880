"""Wall-clock budgets: ``"10m"``, ``"1h30m"``, ``"90s"``, ``600`` (seconds)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from autotransfer.errors import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")


def parse_duration(value: str | float | int | None) -> float | None:
    """Seconds from a number or a string such as ``"10m"`` or ``"1h30m"``; None stays None.

    >>> parse_duration("1h30m"), parse_duration("90s"), parse_duration(45)
    (5400.0, 90.0, 45.0)
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            parts = _PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ConfigError(
                    f"Cannot read the duration {value!r}: use seconds (600) or a string like "
                    "'90s', '10m', '1h30m' (units s, m, h, d)."
                ) from None
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ConfigError(f"A duration must be positive, got {value!r}.")
    return seconds


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
