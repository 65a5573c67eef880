"""The built-in transferability estimators (higher score = better expected transfer).

Each class follows :class:`~autotransfer.transferability.base.Estimator`: a ``name``,
``needs_logits``, ``needs_features`` and ``score(inputs) -> float``; hyperparameters are
keyword arguments stored as attributes. They are registered by
:mod:`autotransfer.builtin.estimators`.
"""

from autotransfer.transferability.estimators.hscore import HScore
from autotransfer.transferability.estimators.knn import KNNLeaveOneOut
from autotransfer.transferability.estimators.leep import LEEP
from autotransfer.transferability.estimators.linear_probe import LinearProbeCV
from autotransfer.transferability.estimators.logme import LogME
from autotransfer.transferability.estimators.nleep import NLEEP
from autotransfer.transferability.estimators.static_prior import ImageNetTop1

__all__ = ["HScore", "ImageNetTop1", "KNNLeaveOneOut", "LEEP", "LinearProbeCV", "LogME", "NLEEP"]
