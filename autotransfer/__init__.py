"""autotransfer: from a folder of labelled images to the best transfer-learning model.

>>> import autotransfer
>>> ranking = autotransfer.rank("data/")          # doctest: +SKIP
>>> print(ranking.table())                          # doctest: +SKIP
>>> result = autotransfer.fit("data/", time_budget="10m")  # doctest: +SKIP
>>> result.predict(["new.jpg"])                      # doctest: +SKIP
"""

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
from autotransfer.results import FitResult, TrialRecord

__version__ = "0.1.0"

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
]
