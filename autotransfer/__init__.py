"""autotransfer: from a folder of labelled images to the best transfer-learning model.

>>> import autotransfer
>>> ranking = autotransfer.rank("data/")          # doctest: +SKIP
>>> print(ranking.table())                          # doctest: +SKIP
"""

from autotransfer.api import describe, open_folder, rank
from autotransfer.config import DataSettings, ExtractionSettings, RankSettings
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

__version__ = "0.1.0"

__all__ = [
    "AutoTransferError",
    "ConfigError",
    "DataError",
    "DataSettings",
    "DataWarning",
    "ExtractionSettings",
    "PluginError",
    "RankSettings",
    "UnknownNameError",
    "WeightsUnavailableError",
    "__version__",
    "describe",
    "hookimpl",
    "open_folder",
    "rank",
]
