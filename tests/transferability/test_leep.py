"""LEEP against explicit loops over samples and classes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autotransfer.errors import DataError
from autotransfer.transferability.base import ScoringInput
from autotransfer.transferability.estimators import LEEP
from autotransfer.transferability.estimators.leep import leep_from_probs


def leep_by_loops(probs: list[list[float]], labels: list[int]) -> float:
    """The definition of Nguyen et al. (2020), written with plain loops."""
    n, k = len(probs), len(probs[0])
    classes = sorted(set(labels))
    joint = {(y, z): 0.0 for y in classes for z in range(k)}
    for i in range(n):
        for z in range(k):
            joint[labels[i], z] += probs[i][z] / n
    marginal = [sum(joint[y, z] for y in classes) for z in range(k)]
    total = 0.0
    for i in range(n):
        eep = 0.0
        for z in range(k):
            if marginal[z] > 0:
                eep += joint[labels[i], z] / marginal[z] * probs[i][z]
        total += math.log(eep)
    return total / n


def softmax_rows(logits: np.ndarray) -> list[list[float]]:
    out = []
    for row in logits.tolist():
        m = max(row)
        e = [math.exp(v - m) for v in row]
        out.append([v / sum(e) for v in e])
    return out


# 6 samples, 3 source classes, 2 target classes
HAND_LOGITS = np.array(
    [
        [2.0, 0.5, -1.0],
        [1.5, 0.0, 0.2],
        [0.1, 1.0, 0.3],
        [-0.5, 0.2, 2.5],
        [0.0, -1.0, 1.8],
        [0.4, 1.2, 0.9],
    ]
)
HAND_LABELS = np.array([0, 0, 0, 1, 1, 1])


def test_matches_loops_on_a_hand_made_case() -> None:
    expected = leep_by_loops(softmax_rows(HAND_LOGITS), HAND_LABELS.tolist())
    got = LEEP().score(
        ScoringInput(features=np.zeros((6, 1)), labels=HAND_LABELS, logits=HAND_LOGITS)
    )
    assert got == pytest.approx(expected, rel=1e-12)


def test_matches_loops_with_temperature_and_random_case() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(25, 7)) * 3
    labels = rng.integers(0, 4, 25)
    labels[:4] = [0, 1, 2, 3]
    expected = leep_by_loops(softmax_rows(logits / 2.0), labels.tolist())
    got = LEEP(temperature=2.0).score(
        ScoringInput(features=np.zeros((25, 1)), labels=labels, logits=logits)
    )
    assert got == pytest.approx(expected, rel=1e-12)


def test_aligned_source_and_target_is_log_one() -> None:
    labels = np.array([0, 1, 2, 0, 1, 2, 2])
    logits = 50.0 * np.eye(3)[labels]  # source class z == target class y, confidently
    got = LEEP().score(ScoringInput(features=np.zeros((7, 1)), labels=labels, logits=logits))
    assert got == pytest.approx(0.0, abs=1e-12)


def test_uninformative_source_gives_label_entropy() -> None:
    # identical source predictions for every sample: EEP(y) = P(y), LEEP = sum_y P(y) log P(y)
    labels = np.array([0, 0, 0, 1])
    probs = np.full((4, 3), 1 / 3)
    expected = 0.75 * math.log(0.75) + 0.25 * math.log(0.25)
    assert leep_from_probs(probs, labels, 2) == pytest.approx(expected)


def test_rejects_missing_logits() -> None:
    with pytest.raises(DataError, match="needs source-classifier logits"):
        LEEP().score(ScoringInput(features=np.zeros((4, 2)), labels=np.array([0, 1, 0, 1])))


def test_rejects_logits_of_the_wrong_length() -> None:
    with pytest.raises(DataError, match=r"shape \(N, K\) with N=4"):
        LEEP().score(
            ScoringInput(
                features=np.zeros((4, 2)), labels=np.array([0, 1, 0, 1]), logits=np.zeros((3, 5))
            )
        )
