"""H-score against the textbook formula written with loops; shrinkage stability for N < D."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.covariance import LedoitWolf

from autotransfer.transferability.base import ScoringInput
from autotransfer.transferability.estimators import HScore


def textbook_hscore(f: np.ndarray, labels: np.ndarray) -> float:
    """tr(Cov(f)^-1 Cov(E[f | y])) of Bao et al. (2019), sums written as loops."""
    n, d = f.shape
    mean = [sum(f[i, j] for i in range(n)) / n for j in range(d)]
    cov_f = np.zeros((d, d))
    for i in range(n):
        for a in range(d):
            for b in range(d):
                cov_f[a, b] += (f[i, a] - mean[a]) * (f[i, b] - mean[b]) / n
    class_mean = {}
    for c in set(labels.tolist()):
        members = [i for i in range(n) if labels[i] == c]
        class_mean[c] = [sum(f[i, j] for i in members) / len(members) for j in range(d)]
    cov_g = np.zeros((d, d))
    for i in range(n):
        g = class_mean[labels[i]]
        for a in range(d):
            for b in range(d):
                cov_g[a, b] += (g[a] - mean[a]) * (g[b] - mean[b]) / n
    inverse = np.linalg.inv(cov_f)
    return float(sum(inverse[a, b] * cov_g[b, a] for a in range(d) for b in range(d)))


def separable(n: int, d: int, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    means = 3.0 * rng.normal(size=(num_classes, d))
    return rng.normal(size=(n, d)) + means[labels], labels


def test_without_shrinkage_equals_the_textbook_formula() -> None:
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2] * 8 + [0, 0])
    f = rng.normal(size=(26, 4)) * [1.0, 5.0, 0.2, 2.0] + labels[:, None] * [1.0, 0.0, 0.3, -1]
    expected = textbook_hscore(f, labels)
    for standardize in (False, True):  # without shrinkage the scale of columns does not matter
        got = HScore(shrinkage=False, standardize=standardize).score(
            ScoringInput(features=f, labels=labels)
        )
        assert got == pytest.approx(expected, rel=1e-9)


def test_with_shrinkage_equals_the_ledoit_wolf_formula() -> None:
    # Ibrahim et al. (2022): tr(((1 - a) Cov(f) + a mu I)^-1 (1 - a) Cov(E[f | y]))
    f, labels = separable(30, 6, 3, seed=1)
    z = (f - f.mean(axis=0)) / f.std(axis=0)
    lw = LedoitWolf().fit(z)
    alpha = lw.shrinkage_
    cov_f = z.T @ z / len(z)
    mu = np.trace(cov_f) / z.shape[1]
    assert np.allclose(lw.covariance_, (1 - alpha) * cov_f + alpha * mu * np.eye(6))
    g = np.stack([z[labels == c].mean(axis=0) for c in labels])
    cov_g = g.T @ g / len(z)
    expected = np.trace(np.linalg.inv(lw.covariance_) @ ((1 - alpha) * cov_g))
    got = HScore().score(ScoringInput(features=f, labels=labels))
    assert got == pytest.approx(expected, rel=1e-9)


def test_shrinkage_is_finite_and_bounded_when_n_is_below_d() -> None:
    # Cov(E[f|y]) <= Cov(f) in the Loewner order, so 0 <= H <= C - 1, shrunk or not
    rng = np.random.default_rng(2)
    labels = np.arange(20) % 2
    random_features = rng.normal(size=(20, 200))
    scores = [
        HScore().score(ScoringInput(features=random_features, labels=labels, seed=s))
        for s in (0, 1)
    ]
    assert all(np.isfinite(s) and 0.0 <= s <= 1.0 for s in scores)
    assert scores[0] == scores[1]
    # without shrinkage, N < D lets the between-class covariance explain everything
    textbook = HScore(shrinkage=False).score(ScoringInput(features=random_features, labels=labels))
    assert textbook == pytest.approx(1.0, abs=1e-6)
    assert scores[0] < 0.5


def test_shrinkage_ranks_separable_above_random_labels_when_n_is_below_d() -> None:
    f, labels = separable(20, 200, 2, seed=3)
    shuffled = np.random.default_rng(3).permutation(labels)
    good = HScore().score(ScoringInput(features=f, labels=labels))
    bad = HScore().score(ScoringInput(features=f, labels=shuffled))
    assert np.isfinite(good) and np.isfinite(bad)
    assert good > bad


def test_constant_and_duplicated_columns() -> None:
    f, labels = separable(30, 5, 3, seed=4)
    padded = np.hstack([f, np.full((30, 2), 7.0), f[:, :2]])
    for shrinkage in (True, False):
        assert np.isfinite(
            HScore(shrinkage=shrinkage).score(ScoringInput(features=padded, labels=labels))
        )
    # the pseudo-inverse ignores the constant and duplicated directions
    assert HScore(shrinkage=False).score(
        ScoringInput(features=padded, labels=labels)
    ) == pytest.approx(HScore(shrinkage=False).score(ScoringInput(features=f, labels=labels)))


def test_all_singleton_classes_cannot_be_scored() -> None:
    x = np.random.default_rng(0).normal(size=(6, 20))
    for shrinkage in (True, False):
        got = HScore(shrinkage=shrinkage).score(ScoringInput(features=x, labels=np.arange(6)))
        assert np.isnan(got)
