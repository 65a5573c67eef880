"""Exceptions and warnings raised by autotransfer.

Every error inherits :class:`AutoTransferError` and the matching builtin, so
``except ValueError`` keeps working for callers who do not know our types.
Messages say what was wrong, the value, what is allowed and what to do next.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AutoTransferError(Exception):
    """Base class of every error autotransfer raises on purpose."""


class ConfigError(AutoTransferError, ValueError):
    """A setting or argument has a value that is not allowed."""


class DataError(AutoTransferError, ValueError):
    """The image folder or manifest cannot be used as it is."""


class UnknownNameError(AutoTransferError, KeyError):
    """A registry name (backbone, estimator, strategy, ...) is not registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class WeightsUnavailableError(AutoTransferError, FileNotFoundError):
    """The weights of a backbone are not available on this machine."""


class PluginError(AutoTransferError, RuntimeError):
    """A plugin hook raised; the message names the plugin and the hook."""


class TrainingDiverged(AutoTransferError, RuntimeError):
    """A trial's training loss became NaN or infinite before any epoch finished sound."""


class TooFewSteps(AutoTransferError, RuntimeError):
    """A trial's deadline leaves its schedule too few steps to be worth training; the
    search skips it. ``step_seconds`` is the pace measured on its first steps."""

    def __init__(self, message: str, step_seconds: float) -> None:
        super().__init__(message)
        self.step_seconds = step_seconds


class CacheError(AutoTransferError, OSError):
    """A cache entry is unreadable or does not match its checksum."""


class BudgetSpent(AutoTransferError, TimeoutError):
    """A step reached its deadline (the time budget's share for it) before it finished."""


class DataWarning(UserWarning):
    """A data smell worth knowing about (one-image classes, duplicates, ...)."""


def unknown_name(kind: str, name: str, known: Iterable[str], hint: str = "") -> UnknownNameError:
    """Build an :class:`UnknownNameError` that lists close matches.

    >>> str(unknown_name("estimator", "logm", ["logme", "leep"]))
    "Unknown estimator 'logm'. Did you mean 'logme'? Known: leep, logme."
    """
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    msg = f"Unknown {kind} {name!r}."
    if close:
        msg += " Did you mean " + " or ".join(repr(c) for c in close) + "?"
    msg += " Known: " + (", ".join(known) if known else "(none registered)") + "."
    if hint:
        msg += " " + hint
    return UnknownNameError(msg)
