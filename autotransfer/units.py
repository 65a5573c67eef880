"""Durations and sizes as users write them: ``"1h30m"`` or ``600``; ``"2GB"`` or ``"500MiB"``."""

from __future__ import annotations

import math
import re

from autotransfer.errors import ConfigError

_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_BYTES = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_BYTES.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})


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
            seconds = sum(float(n) * _SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise ConfigError(f"A duration must be positive, got {value!r}.")
    return seconds


def parse_size(value: str | float | None, setting: str = "image_cache_memory") -> int | None:
    """Bytes from a number or a string such as ``"2GB"`` (powers of 1000) or ``"500MiB"``
    (powers of 1024); None stays None.

    >>> parse_size("2GB"), parse_size("1.5 GiB"), parse_size(500_000), parse_size(None)
    (2000000000, 1610612736, 500000, None)
    """
    if value is None:
        return None
    allowed = "a number of bytes or a size such as '2GB' or '500MiB' (B, KB, MB, GB, TB, KiB ..)"
    if isinstance(value, bool):
        raise ConfigError(f"{setting} must be {allowed}, got {value!r}.")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*", str(value).lower())
        if m is None or m.group(2) not in _BYTES:
            raise ConfigError(f"{setting} must be {allowed}, got {value!r}.")
        number, unit = float(m.group(1)), m.group(2)
    if not math.isfinite(number) or number < 0:
        raise ConfigError(f"{setting} must be 0 or more bytes ({allowed}), got {value!r}.")
    return int(number * _BYTES[unit])
