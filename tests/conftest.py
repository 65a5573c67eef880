"""Shared fixtures: every test gets its own feature cache, and nothing touches the network."""

from __future__ import annotations

import pytest

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
