"""autotransfer: from a folder of labelled images to the best transfer-learning model.

>>> import autotransfer
>>> ranking = autotransfer.rank("data/")          # doctest: +SKIP
>>> print(ranking.table())                          # doctest: +SKIP
>>> result = autotransfer.fit("data/", time_budget="10m")  # doctest: +SKIP
>>> result.predict(["new.jpg"])                      # doctest: +SKIP

The public names are imported on first use (PEP 562), so ``import autotransfer`` (and
``autotransfer --help``) does not import torch, timm, Optuna or scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from autotransfer.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.api import describe, fit, load, open_folder, rank, run_worker
    from autotransfer.config import DataSettings, ExtractionSettings, FitSettings, RankSettings
    from autotransfer.errors import (
        AutoTransferError,
        ConfigError,
        DataError,
        DataWarning,
        PluginError,
        UnknownNameError,
        WeightsUnavailableError,
    )
    from autotransfer.hookspecs import hookimpl
    from autotransfer.plugins import register_plugin
    from autotransfer.results import FitResult
    from autotransfer.search.records import TrialRecord

_PUBLIC = {
    "autotransfer.api": ("describe", "fit", "load", "open_folder", "rank", "run_worker"),
    "autotransfer.config": ("DataSettings", "ExtractionSettings", "FitSettings", "RankSettings"),
    "autotransfer.errors": (
        "AutoTransferError",
        "ConfigError",
        "DataError",
        "DataWarning",
        "PluginError",
        "UnknownNameError",
        "WeightsUnavailableError",
    ),
    "autotransfer.hookspecs": ("hookimpl",),
    "autotransfer.plugins": ("register_plugin",),
    "autotransfer.results": ("FitResult",),
    "autotransfer.search.records": ("TrialRecord",),
}
_HOME = {name: module for module, names in _PUBLIC.items() for name in names}

__all__ = [
    "AutoTransferError",
    "ConfigError",
    "DataError",
    "DataSettings",
    "DataWarning",
    "ExtractionSettings",
    "FitResult",
    "FitSettings",
    "PluginError",
    "RankSettings",
    "TrialRecord",
    "UnknownNameError",
    "WeightsUnavailableError",
    "__version__",
    "describe",
    "fit",
    "hookimpl",
    "load",
    "open_folder",
    "rank",
    "register_plugin",
    "run_worker",
]  # every name of _PUBLIC, and the version


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'autotransfer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})
