"""Metrics against values computed by hand on a four-image example."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from autotransfer.errors import ConfigError
from autotransfer.metrics import METRICS, classification_metrics, confusion

Y = [0, 0, 1, 2]
P = [
    [0.7, 0.2, 0.1],  # predicts 0: right
    [0.2, 0.5, 0.3],  # predicts 1: wrong
    [0.1, 0.8, 0.1],  # predicts 1: right
    [0.3, 0.3, 0.4],  # predicts 2: right
]
# recall: class 0 1/2, class 1 1/1, class 2 1/1
# F1: class 0 (P=1, R=1/2) 2/3, class 1 (P=1/2, R=1) 2/3, class 2 1
EXPECTED = {
    "accuracy": 3 / 4,
    "balanced_accuracy": (0.5 + 1 + 1) / 3,
    "macro_f1": (2 / 3 + 2 / 3 + 1) / 3,
    "log_loss": -(math.log(0.7) + math.log(0.2) + math.log(0.8) + math.log(0.4)) / 4,
}


def test_metrics_match_hand_computed_values():
    m = classification_metrics(Y, P, num_classes=3)
    assert tuple(m) == METRICS
    for key, value in EXPECTED.items():
        assert m[key] == pytest.approx(value, abs=1e-6), key
    assert all(type(v) is float for v in m.values())


def test_class_missing_from_y_true_is_fine_and_not_counted():
    padded = np.hstack([np.asarray(P), np.zeros((4, 1))])  # a 4th class nobody has
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics(np.array(Y), padded, num_classes=4)
    for key, value in EXPECTED.items():
        assert m[key] == pytest.approx(value, abs=1e-5), key


def test_predicted_class_absent_from_y_true_counts_in_f1_but_not_in_balanced_accuracy():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics([0, 0], [[0.9, 0.1], [0.2, 0.8]], num_classes=2)
    assert m["balanced_accuracy"] == pytest.approx(0.5)  # recall of class 0 only
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)  # class 1: predicted, never true


def test_zero_probability_is_clipped_not_infinite():
    m = classification_metrics([1], [[1.0, 0.0]], num_classes=2)
    assert math.isfinite(m["log_loss"])
    assert m["log_loss"] == pytest.approx(-math.log(1e-7), rel=1e-3)


def test_confusion_matrix_rows_are_true_classes():
    assert confusion([0, 0, 1, 2], [0, 1, 1, 2], 4) == [
        [1, 1, 0, 0],
        [0, 1, 0, 0],
        [0, 0, 1, 0],
        [0, 0, 0, 0],
    ]


@pytest.mark.parametrize(
    ("y", "p", "k", "match"),
    [
        ([0, 1], [[1.0, 0.0]], 2, "1 rows"),
        ([0], [[0.5, 0.5]], 3, r"expected \(num_images, 3\)"),
        ([3], [[0.5, 0.5]], 2, "outside 0..1"),
        ([], np.zeros((0, 2)), 2, "empty"),
        ([0], [[np.nan, 0.5]], 2, "NaN"),
    ],
)
def test_bad_inputs_say_what_is_wrong(y, p, k, match):
    with pytest.raises(ConfigError, match=match):
        classification_metrics(y, p, k)
