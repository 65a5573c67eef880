"""autotransfer: from a folder of labelled images to the best transfer-learning model.

>>> import autotransfer
>>> ranking = autotransfer.rank("data/")          # doctest: +SKIP
>>> print(ranking.table())                          # doctest: +SKIP
"""

from autotransfer.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]
