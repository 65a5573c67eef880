from __future__ import annotations

import pytest

import autotransfer
from autotransfer.search.study import open_study
from autotransfer.testing.images import make_image_folder


@pytest.fixture
def folder(tmp_path):
    """Three classes, ten images each: 24 train, 6 val after the split."""
    return make_image_folder(tmp_path / "data", classes=("cat", "dog", "owl"), per_class=10)


TINY = dict(
    backbones=("random:test_resnet", "random:test_efficientnet"),
    resolution=32,
    time_budget=None,
    progress=False,
    # the last mile has tests of its own (test_finish.py, test_no_transfer.py)
    ensemble=False,
    refit=False,
    flip_tta="off",
)


def fit_tiny(folder, run, **options):
    """``autotransfer.fit`` of ``folder`` into the run folder ``run`` with the tiny
    backbones (:data:`TINY`), untracked unless ``options`` give ``trackers``, without the
    last mile (ensemble, refit, flip TTA) unless ``options`` turn it on."""
    return autotransfer.fit(folder, run_dir=str(run), **{"trackers": (), **TINY, **options})


def study_of(run_dir):
    """The study of the fit in ``run_dir``, opened as ``fit`` opens it."""
    return open_study(run_dir, storage=None, study_name="autotransfer", seed=0, pruner="median")
