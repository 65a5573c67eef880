"""Leave-one-out kNN accuracy against a brute-force double loop over all pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autotransfer.errors import ConfigError
from autotransfer.transferability.base import ScoringInput
from autotransfer.transferability.estimators import KNNLeaveOneOut


def brute_force_loo_knn(x: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Standardise columns, cosine similarity, k most similar others, majority vote.

    Ties: equal similarities by lower index; a tied vote by the nearest tied class.
    """
    n, d = x.shape
    z = np.zeros_like(x, dtype=float)
    for j in range(d):
        column = [float(v) for v in x[:, j]]
        mean = sum(column) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in column) / n)
        for i in range(n):
            z[i, j] = (column[i] - mean) / std if std > 1e-12 else 0.0
    correct = 0
    for i in range(n):
        sims = []
        for j in range(n):
            if j == i:
                continue
            dot = sum(z[i, a] * z[j, a] for a in range(d))
            norm_i = math.sqrt(sum(v * v for v in z[i]))
            norm_j = math.sqrt(sum(v * v for v in z[j]))
            sim = dot / (norm_i * norm_j) if norm_i > 0 and norm_j > 0 else 0.0
            sims.append((-sim, j))
        neighbours = [j for _, j in sorted(sims)[:k]]
        votes: dict[int, int] = {}
        for j in neighbours:
            votes[int(labels[j])] = votes.get(int(labels[j]), 0) + 1
        top = max(votes.values())
        predicted = next(int(labels[j]) for j in neighbours if votes[int(labels[j])] == top)
        correct += predicted == labels[i]
    return correct / n


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_matches_brute_force(k: int) -> None:
    rng = np.random.default_rng(k)
    labels = rng.integers(0, 3, 40)
    x = rng.normal(size=(40, 6)) + 0.8 * labels[:, None] * [1, -1, 0, 0.5, 0, 0]
    got = KNNLeaveOneOut(k=k).score(ScoringInput(features=x, labels=labels))
    assert got == pytest.approx(brute_force_loo_knn(x, labels, k))


def test_ties_are_broken_deterministically() -> None:
    # duplicated rows give equal similarities; k = 2 with 2 classes gives tied votes
    base = np.random.default_rng(4).normal(size=(6, 3))
    x = np.vstack([base, base])
    labels = np.array([0, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0])
    got = KNNLeaveOneOut(k=2).score(ScoringInput(features=x, labels=labels))
    assert got == pytest.approx(brute_force_loo_knn(x, labels, 2))
    assert got == KNNLeaveOneOut(k=2).score(ScoringInput(features=x, labels=labels))


def test_excludes_the_point_itself() -> None:
    # every point's only neighbour of its own class is itself: LOO 1-NN gets everything wrong
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]) + 5.0
    labels = np.array([0, 1, 2, 3]) % 2
    assert KNNLeaveOneOut(k=1).score(ScoringInput(features=x, labels=labels)) == 0.0


def test_all_singleton_classes_cannot_be_scored() -> None:
    x = np.random.default_rng(0).normal(size=(5, 3))
    for k in (1, 5):
        assert np.isnan(KNNLeaveOneOut(k=k).score(ScoringInput(features=x, labels=np.arange(5))))


def test_blocked_similarities_match_one_block() -> None:
    from autotransfer.transferability.estimators.knn import loo_neighbours

    z = np.random.default_rng(0).normal(size=(37, 4))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    np.testing.assert_array_equal(loo_neighbours(z, 5, block=8), loo_neighbours(z, 5))


def test_k_larger_than_the_dataset_uses_all_others() -> None:
    x = np.random.default_rng(0).normal(size=(5, 2))
    labels = np.array([0, 0, 0, 1, 1])
    got = KNNLeaveOneOut(k=50).score(ScoringInput(features=x, labels=labels))
    assert got == pytest.approx(brute_force_loo_knn(x, labels, 4))


def test_default_names() -> None:
    assert KNNLeaveOneOut(k=1).name == "knn_loo_k1"
    assert KNNLeaveOneOut(k=5).name == "knn_loo_k5"


def test_rejects_bad_k() -> None:
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        KNNLeaveOneOut(k=0).score(ScoringInput(features=np.eye(4), labels=np.array([0, 0, 1, 1])))


def test_the_blocks_products_through_torch_give_the_same_neighbours() -> None:
    """The path a CUDA machine takes (torch products, host selection), run on the CPU."""
    from autotransfer.transferability.estimators._util import l2_normalise
    from autotransfer.transferability.estimators.knn import loo_neighbours

    z = l2_normalise(np.random.default_rng(3).normal(size=(300, 16)))
    np.testing.assert_array_equal(
        loo_neighbours(z, 5, block=64, device="cpu"), loo_neighbours(z, 5)
    )
    tied = np.repeat(z[:30], 2, axis=0)  # exact duplicates: ties broken by lower index
    np.testing.assert_array_equal(loo_neighbours(tied, 3, device="cpu"), loo_neighbours(tied, 3))
