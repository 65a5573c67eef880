"""A ``fit`` as a user's first run makes it: a feature cache and a run folder of its own."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import autotransfer


def cold_fit(ds: Any, work: Path, budget: float, **options: Any) -> tuple[Any, float]:
    """``autotransfer.fit`` of ``ds`` with ``budget`` seconds, untracked, no progress bars,
    a cold cache under ``work``; the result and its wall seconds."""
    os.environ["AUTOTRANSFER_CACHE"] = tempfile.mkdtemp(dir=work, prefix="cache-")
    start = time.perf_counter()
    result = autotransfer.fit(
        ds,
        run_dir=tempfile.mkdtemp(dir=work, prefix="run-"),
        time_budget=budget,
        trackers=(),
        progress=False,
        **options,
    )
    return result, time.perf_counter() - start


def test_correct(result: Any, ds: Any) -> np.ndarray:
    """Per test image, whether the result's model is right (predicted outside the budget)."""
    proba = np.asarray(result.predict_proba([r.path for r in ds.test]))
    return proba.argmax(1) == np.array([r.label for r in ds.test])
