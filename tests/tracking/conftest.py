"""Fixtures for the tracking tests: a tiny real dataset and run contexts on real MLflow stores."""

from __future__ import annotations

import os
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
def make_run() -> Callable[..., RunContext]:
    """``make_run(run_dir, dataset, **fields)``: a RunContext as the orchestrator builds it."""
    return _make_run


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
