from __future__ import annotations

import pytest

from autotransfer.api import open_folder
from autotransfer.testing.images import make_image_folder


@pytest.fixture
def dataset(tmp_path):
    root = make_image_folder(tmp_path / "data", classes=("a", "b", "c"), per_class=8)
    return open_folder(root, progress=False)
