"""Shared fixtures: every test gets its own feature cache, and nothing touches the network."""

from __future__ import annotations

import pytest

import autotransfer
from autotransfer.testing.images import make_image_folder

TINY = ["random:test_resnet", "random:test_efficientnet"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("AUTOTRANSFER_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def image_folder(tmp_path):
    """Three visually distinct classes, ten small images each, class-folder layout."""
    return make_image_folder(tmp_path / "data", classes=("cat", "dog", "owl"), per_class=10)


@pytest.fixture
def tiny_backbones():
    return list(TINY)


@pytest.fixture
def builtin_estimator_names() -> set[str]:
    """The names of the estimators autotransfer registers itself."""
    return {
        "logme",
        "leep",
        "nleep",
        "hscore",
        "knn_loo_k1",
        "knn_loo_k5",
        "linear_probe_cv",
        "imagenet_top1",
    }


class _SlowEstimator:
    """A third-party estimator that would take ten minutes: far longer than any budget a
    test gives the ranking."""

    name = "slow_estimator"
    needs_logits = False
    needs_features = True

    def score(self, inputs):
        import time

        time.sleep(600)
        return 0.0

    @autotransfer.hookimpl
    def autotransfer_register_estimators(self):
        return [self]


@pytest.fixture
def slow_estimator():
    """Registers :class:`_SlowEstimator` as a plugin for one test."""
    from autotransfer import plugins

    plugins.register_plugin(_SlowEstimator(), name="slow")
    yield
    plugins.reset_plugin_manager()
