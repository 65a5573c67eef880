"""A training context for one strategy outside a study, and a contract test class.

``make_train_context`` builds the :class:`TrainContext` a trial would get (a real
dataset, a real backbone, a real decoded-image cache), so a strategy can be trained
and inspected directly. Subclass :class:`StrategyContract` to check a strategy::

    from autotransfer.testing.strategies import StrategyContract

    class TestMyStrategy(StrategyContract):
        def make_strategy(self):
            return MyStrategy()

Needs pytest (``pip install autotransfer[dev]``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from autotransfer.api import extract_all, open_folder
from autotransfer.backbones.load import resolve_backbones
from autotransfer.config import ExtractionSettings
from autotransfer.data.types import ImageDataset
from autotransfer.search.objective import Prefixed
from autotransfer.strategies.base import SearchContext, Strategy, TrainContext
from autotransfer.strategies.images import ImageCache
from autotransfer.testing.images import make_image_folder

CONTRACT_BACKBONE = "random:test_resnet"


def make_train_context(
    dataset: ImageDataset,
    params: Mapping[str, Any],
    *,
    backbone: str = CONTRACT_BACKBONE,
    resolution: int = 32,
    batch_size: int = 8,
    seconds: float | None = None,
    augment: str = "crop_flip",
    seed: int = 0,
    reports: list | None = None,
    device: str = "cpu",
) -> TrainContext:
    """A :class:`TrainContext` for ``dataset`` on ``backbone``; ``reports`` collects every
    ``(epoch, metrics)`` the strategy reports; ``seconds`` sets a deadline."""
    spec = resolve_backbones([backbone])[0]
    sink = [] if reports is None else reports

    def report(epoch: int, metrics: Mapping[str, float]) -> None:
        sink.append((epoch, dict(metrics)))

    ex = ExtractionSettings(resolution=resolution, device=device, num_workers=0)
    return TrainContext(
        dataset=dataset,
        spec=spec,
        params=dict(params),
        device=torch.device(device),
        seed=seed,
        resolution=resolution,
        batch_size=batch_size,
        num_workers=0,
        augment=augment,
        class_weights=None,
        deadline=None if seconds is None else time.monotonic() + seconds,
        report=report,
        features=lambda split: extract_all(dataset, [spec], ex, split=split, progress=False)[
            spec.id
        ],
        images=ImageCache(dataset),
        search=search_context(dataset, torch.device(device).type, batch_size),
        log=logging.getLogger("autotransfer.testing"),
    )


def search_context(dataset: ImageDataset, device: str = "cpu", batch_size: int = 8):
    return SearchContext(
        num_train=len(dataset.train),
        num_classes=len(dataset.classes),
        median_side=float(min(r.width for r in dataset.train)),
        similarity=None,
        device=device,
        batch_size=batch_size,
    )


class StrategyContract:
    """What every strategy must do; provide ``make_strategy``."""

    def make_strategy(self) -> Strategy:  # pragma: no cover - subclasses provide it
        raise NotImplementedError

    def quick_params(self, strategy: Strategy, dataset: ImageDataset) -> dict[str, Any]:
        """The defaults, shortened so that the contract runs in seconds (override freely)."""
        p = dict(strategy.defaults(search=search_context(dataset)))
        if "epochs" in p:
            p["epochs"] = 2
        if "steps" in p:
            p["steps"] = 4
        return p

    @pytest.fixture
    def strategy(self) -> Strategy:
        return self.make_strategy()

    @pytest.fixture
    def dataset(self, tmp_path: Path) -> ImageDataset:
        root = make_image_folder(tmp_path / "data", classes=("a", "b", "c"), per_class=8)
        return open_folder(root, progress=False)

    def test_is_a_strategy(self, strategy: Strategy) -> None:
        assert isinstance(strategy, Strategy)
        assert strategy.name.replace("_", "").isalnum() and strategy.name.islower()
        assert strategy.description
        assert 0.0 < float(strategy.relative_cost) <= 10.0

    def test_defaults_lie_in_the_search_space(self, strategy: Strategy, dataset) -> None:
        search = search_context(dataset)
        defaults = strategy.defaults(search=search)
        study = optuna.create_study()
        study.enqueue_trial({f"{strategy.name}.{k}": v for k, v in defaults.items()})

        trial = study.ask()
        with __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("error")  # out-of-range fixed values warn
            suggested = strategy.suggest(Prefixed(trial, strategy.name), search=search)
        assert suggested == defaults

    def test_trains_reports_and_returns_a_classifier(self, strategy: Strategy, dataset) -> None:
        reports: list = []
        ctx = make_train_context(dataset, self.quick_params(strategy, dataset), reports=reports)
        out = strategy.train(ctx)
        assert reports and all("val_accuracy" in m for _, m in reports)
        assert [e for e, _ in reports] == sorted({e for e, _ in reports})
        assert 0.0 <= out.val_accuracy <= 1.0
        res = int(out.preprocessing["resolution"])
        with torch.no_grad():
            logits = out.model.eval()(torch.zeros(2, 3, res, res))
        assert logits.shape == (2, len(dataset.classes))
        for key in ("resolution", "mean", "std", "crop_pct", "interpolation"):
            assert key in out.preprocessing
