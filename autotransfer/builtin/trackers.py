"""Registers the built-in tracker, MLflow (the code lives in
:mod:`autotransfer.tracking.mlflow_tracker`; MLflow itself is imported only when a fit
starts tracking)."""

from __future__ import annotations

from autotransfer.hookspecs import hookimpl
from autotransfer.tracking.base import Tracker
from autotransfer.tracking.mlflow_tracker import MLflowTracker


@hookimpl
def autotransfer_register_trackers() -> list[Tracker]:
    """MLflow: a parent run per run folder, a nested run per trial, the best model."""
    return [MLflowTracker()]
