"""The small probe fits run on one BLAS thread, and the caller's threads come back after."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_info, threadpool_limits

from autotransfer.strategies.probe import fit_linear_head
from autotransfer.threads import on_one_blas_thread
from autotransfer.transferability.base import ScoringInput
from autotransfer.transferability.estimators import NLEEP, LinearProbeCV


def blas_threads() -> set[int]:
    return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


@pytest.fixture
def two_blas_threads():
    if not blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can control is loaded")
    with threadpool_limits(limits=2, user_api="blas"):
        yield


def test_one_thread_inside_and_the_callers_limit_after(two_blas_threads):
    @on_one_blas_thread
    def inside() -> set[int]:
        return blas_threads()

    assert inside() == {1}
    assert blas_threads() == {2}


def test_one_thread_kept_when_the_function_raises(two_blas_threads):
    @on_one_blas_thread
    def fails() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError):
        fails()
    assert blas_threads() == {2}


@pytest.fixture
def seen(monkeypatch):
    """The BLAS thread counts each scikit-learn fit below ran with (the fits run as usual)."""
    counts: list[set[int]] = []
    for cls in (LogisticRegression, GaussianMixture):
        original = cls.fit

        def fit(self, *args, _original=original, **kwargs):
            counts.append(blas_threads())
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "fit", fit)
    return counts


def data(n_per_class: int = 12, classes: int = 3, dims: int = 8):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(classes), n_per_class)
    x = rng.normal(size=(y.size, dims)) + 3.0 * np.eye(classes, dims)[y]
    return x.astype(np.float32), y


def test_linear_head_probe_and_nleep_fit_on_one_thread(two_blas_threads, seen):
    x, y = data()
    w, b, _ = fit_linear_head(x, y, 3, C=1.0)
    assert ((x @ w.T + b).argmax(1) == y).mean() > 0.9
    assert LinearProbeCV(folds=3).score(ScoringInput(features=x, labels=y)) > 0.9
    assert np.isfinite(NLEEP().score(ScoringInput(features=x, labels=y)))
    assert len(seen) >= 1 + 3 + 1  # the head, the probe's folds, the mixture
    assert all(s == {1} for s in seen)
    assert blas_threads() == {2}
