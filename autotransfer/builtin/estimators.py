"""Registers the built-in transferability estimators (the code lives in
:mod:`autotransfer.transferability.estimators`)."""

from __future__ import annotations

from autotransfer.hookspecs import hookimpl
from autotransfer.transferability.base import Estimator
from autotransfer.transferability.estimators import (
    LEEP,
    NLEEP,
    HScore,
    ImageNetTop1,
    KNNLeaveOneOut,
    LinearProbeCV,
    LogME,
)


@hookimpl
def autotransfer_register_estimators() -> list[Estimator]:
    """LogME, LEEP, NLEEP, H-score, kNN leave-one-out (k=1, 5), linear probe, ImageNet top-1."""
    return [
        LogME(),
        LEEP(),
        NLEEP(),
        HScore(),
        KNNLeaveOneOut(k=1),
        KNNLeaveOneOut(k=5),
        LinearProbeCV(),
        ImageNetTop1(),
    ]
