"""The linear probe against a manual loop over scikit-learn's stratified folds."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from autotransfer.transferability.base import ScoringInput
from autotransfer.transferability.estimators import LinearProbeCV


def manual_cv_accuracy(x: np.ndarray, labels: np.ndarray, k: int, c: float, seed: int) -> float:
    correct = 0
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for train, test in folds.split(x, labels):
            scaler = StandardScaler().fit(x[train])
            model = LogisticRegression(C=c, max_iter=200, random_state=seed)
            model.fit(scaler.transform(x[train]), labels[train])
            correct += int((model.predict(scaler.transform(x[test])) == labels[test]).sum())
    return correct / len(labels)


def noisy(n: int, num_classes: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % num_classes)
    x = rng.normal(size=(n, dim)) + 0.7 * rng.normal(size=(num_classes, dim))[labels]
    return x, labels


@pytest.mark.parametrize(("seed", "c"), [(0, 0.1), (1, 1.0), (2, 0.01)])
def test_matches_manual_stratified_folds(seed: int, c: float) -> None:
    x, labels = noisy(60, 3, 8, seed)
    expected = manual_cv_accuracy(x, labels, 5, c, seed)
    got = LinearProbeCV(C=c).score(ScoringInput(features=x, labels=labels, seed=seed))
    assert got == pytest.approx(expected)
    assert 0.0 < got < 1.0  # a case that is neither trivial nor hopeless


def test_folds_shrink_to_the_smallest_class() -> None:
    x, labels = noisy(30, 3, 5, seed=4)
    labels[labels == 2] = 0
    labels[:3] = 2  # class 2 has 3 examples: 3 folds
    expected = manual_cv_accuracy(x, labels, 3, 0.1, 0)
    assert LinearProbeCV().score(ScoringInput(features=x, labels=labels)) == pytest.approx(expected)


def test_class_with_one_example_counts_as_an_error() -> None:
    x, labels = noisy(21, 2, 4, seed=5)
    labels[0] = 2  # a singleton: k = 2 folds, held out once, never predictable
    got = LinearProbeCV().score(ScoringInput(features=x, labels=labels))
    assert got == pytest.approx(manual_cv_accuracy(x, labels, 2, 0.1, 0))
    assert got <= 20 / 21


def test_all_singleton_classes_cannot_be_scored() -> None:
    x = np.random.default_rng(0).normal(size=(5, 3))
    assert np.isnan(LinearProbeCV().score(ScoringInput(features=x, labels=np.arange(5))))


def test_separable_is_perfect() -> None:
    rng = np.random.default_rng(6)
    labels = np.arange(40) % 4
    x = rng.normal(size=(40, 6)) + 10.0 * np.eye(4, 6)[labels]
    assert LinearProbeCV().score(ScoringInput(features=x, labels=labels)) == 1.0
