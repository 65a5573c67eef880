"""Fixtures for the data tests: small real image folders under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotransfer.testing.images import make_image_folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """``data/<a|b|c>/`` with six PNG/JPEG images each."""
    return make_image_folder(tmp_path / "data", classes=("a", "b", "c"), per_class=6)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"
