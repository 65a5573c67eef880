"""LogME against a brute-force maximisation of the Gaussian log evidence."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
from scipy.stats import multivariate_normal

from autotransfer.errors import ConfigError
from autotransfer.transferability.base import ScoringInput
from autotransfer.transferability.estimators import LogME


def brute_force_evidence(f: np.ndarray, y: np.ndarray) -> float:
    """max over (alpha, beta) of log N(y; 0, I / beta + F F^T / alpha), per sample."""
    n = f.shape[0]

    def negative(log_params: np.ndarray) -> float:
        alpha, beta = np.exp(np.clip(log_params, -30, 30))
        cov = np.eye(n) / beta + f @ f.T / alpha
        return -multivariate_normal(mean=np.zeros(n), cov=cov).logpdf(y)

    starts = [np.array(s) for s in ([0.0, 0.0], [3.0, 1.0], [-2.0, 2.0], [8.0, 0.0], [-5.0, 3.0])]
    best = min(
        (
            scipy.optimize.minimize(
                negative, x0, method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-12}
            )
            for x0 in starts
        ),
        key=lambda r: r.fun,
    )
    return -best.fun / n


def brute_force_logme(f: np.ndarray, labels: np.ndarray) -> float:
    classes = np.unique(labels)
    return float(np.mean([brute_force_evidence(f, (labels == c).astype(float)) for c in classes]))


@pytest.mark.parametrize(("n", "d"), [(30, 5), (14, 25)], ids=["N>D", "N<D"])
def test_matches_brute_force_evidence(n: int, d: int) -> None:
    rng = np.random.default_rng(n + d)
    labels = np.arange(n) % 3
    f = rng.normal(size=(n, d)) + np.outer(labels, rng.normal(size=d))
    expected = brute_force_logme(f, labels)
    got = LogME().score(ScoringInput(features=f, labels=labels))
    assert got == pytest.approx(expected, abs=1e-5)


def test_matches_brute_force_with_constant_column_and_standardize() -> None:
    rng = np.random.default_rng(7)
    labels = np.arange(24) % 2
    f = np.hstack([rng.normal(size=(24, 4)) + labels[:, None], np.full((24, 1), 3.0)])
    mean, std = f.mean(axis=0), f.std(axis=0)
    std[std == 0] = 1.0
    expected = brute_force_logme((f - mean) / std, labels)
    got = LogME(standardize=True).score(ScoringInput(features=f, labels=labels))
    assert got == pytest.approx(expected, abs=1e-5)


def test_invariant_to_global_scale() -> None:
    rng = np.random.default_rng(1)
    labels = np.arange(40) % 4
    f = rng.normal(size=(40, 8)) + labels[:, None]
    base = LogME().score(ScoringInput(features=f, labels=labels))
    assert LogME().score(ScoringInput(features=100.0 * f, labels=labels)) == pytest.approx(base)


def test_absent_class_ids_are_not_empty_classes() -> None:
    rng = np.random.default_rng(2)
    labels = np.arange(30) % 2
    f = rng.normal(size=(30, 6)) + 2 * labels[:, None]
    base = LogME().score(ScoringInput(features=f, labels=labels))
    gapped = LogME().score(ScoringInput(features=f, labels=labels * 5))
    assert gapped == pytest.approx(base)


def test_rejects_bad_hyperparameters() -> None:
    inputs = ScoringInput(features=np.eye(4), labels=np.array([0, 0, 1, 1]))
    with pytest.raises(ConfigError, match="max_iter"):
        LogME(max_iter=0).score(inputs)
