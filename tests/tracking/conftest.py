"""Fixtures for the tracking tests: a tiny real dataset and run contexts on real MLflow stores."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# MLflow reports usage unless told not to; tests never touch the network.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from autotransfer.api import open_folder  # noqa: E402
from autotransfer.data.descriptors import DatasetDescriptor  # noqa: E402
from autotransfer.data.types import ImageDataset  # noqa: E402
from autotransfer.testing.images import make_image_folder  # noqa: E402
from autotransfer.tracking.base import RunContext  # noqa: E402
from autotransfer.transferability.ranking import Ranking, RankingRow  # noqa: E402

CLASSES = ("cat", "dog", "owl")


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> ImageDataset:
    """Three classes, four real images each, split into train and val."""
    root = tmp_path_factory.mktemp("tracking-data")
    folder = make_image_folder(root / "data", classes=CLASSES, per_class=4)
    return open_folder(folder, cache_dir=root / "cache", progress=False)


def descriptor_of(ds: ImageDataset) -> DatasetDescriptor:
    return DatasetDescriptor(
        root=ds.root,
        layout=ds.layout,
        num_images=len(ds.records),
        split_sizes={"train": len(ds.train), "val": len(ds.val)},
        num_classes=len(ds.classes),
    )


def ranking() -> Ranking:
    rows = tuple(
        RankingRow(backbone=b, scores={"logme": s}, aggregate=s, rank=i + 1)
        for i, (b, s) in enumerate([("random:test_resnet", 0.9), ("random:test_efficientnet", 0.4)])
    )
    return Ranking(rows=rows, estimators=("logme",), aggregate_estimators=("logme",), top_k=1)


@pytest.fixture(scope="session")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store: creating one runs MLflow's migrations (seconds)."""
    from mlflow import MlflowClient

    from autotransfer.tracking.store import default_tracking_uri

    folder = tmp_path_factory.mktemp("store-template")
    MlflowClient(default_tracking_uri(folder)).search_experiments()
    return folder / "mlflow.db"


@pytest.fixture(scope="session")
def make_run(store_template: Path) -> Callable[..., RunContext]:
    """``make_run(run_dir, dataset, fresh_store=False, **fields)``: a RunContext as the
    orchestrator builds it. Unless ``fresh_store``, a new run folder starts with a copy
    of an empty store (the tracker's own creation of one is covered once)."""

    def make(run_dir: Path, ds: ImageDataset, fresh_store: bool = False, **kwargs: Any):
        if not fresh_store and not (run_dir / "mlflow.db").exists():
            run_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(store_template, run_dir / "mlflow.db")
        return _make_run(run_dir, ds, **kwargs)

    return make


def _make_run(run_dir: Path, ds: ImageDataset, **kwargs: Any) -> RunContext:
    settings = {
        "time_budget": "10m",
        "seed": 0,
        "trackers": ["mlflow"],
        "tracking_uri": None,
        "experiment": None,
        "search": {"max_trials": 3, "strategies": ["full_finetune", "linear_probe"]},
        "notes": "x" * 7000,  # longer than MLflow's param value limit
        "cache_dir": run_dir / "cache",  # not JSON: settings.json must cope
    }
    return RunContext(
        **{
            "run_dir": run_dir,
            "study_name": "autotransfer",
            "settings": settings,
            "dataset": ds,
            "descriptor": descriptor_of(ds),
            "ranking": ranking(),
            **kwargs,
        }
    )
