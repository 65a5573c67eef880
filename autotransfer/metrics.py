"""Classification metrics from scikit-learn, for labels and predicted probabilities.

Every score uses class indices ``0..num_classes-1``, so an evaluation split that lacks
some classes is scored without errors or warnings:

* ``balanced_accuracy`` is the mean recall over the classes present in ``y_true``;
* ``macro_f1`` averages over the classes present in ``y_true`` or predicted (a class
  nobody has and nobody predicts is left out, not counted as zero);
* ``log_loss`` clips probabilities to ``[1e-7, 1]`` and renormalises each row, so one
  confident mistake costs about 16 nats instead of infinity.

>>> m = classification_metrics([0, 1], [[0.9, 0.1], [0.2, 0.8]], num_classes=2)
>>> m["accuracy"], round(m["log_loss"], 4)
(1.0, 0.1643)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from autotransfer.errors import ConfigError

METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "log_loss")
PROBA_CLIP = 1e-7


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    proba: Sequence[Sequence[float]] | np.ndarray,
    num_classes: int,
) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro-F1 and log-loss of probabilities ``proba`` (N, C).

    ``y_true`` holds class indices; predictions are the argmax of each row of ``proba``.

    >>> classification_metrics([0, 0, 1], [[0.8, 0.2], [0.4, 0.6], [0.3, 0.7]], 2)["accuracy"]
    0.6666666666666666
    """
    from sklearn.metrics import accuracy_score, f1_score, log_loss, recall_score

    y, p = _check(y_true, proba, num_classes)
    y_pred = p.argmax(axis=1)
    labels = list(range(num_classes))
    p = np.clip(p, PROBA_CLIP, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    return {
        "accuracy": float(accuracy_score(y, y_pred)),
        "balanced_accuracy": float(
            recall_score(y, y_pred, labels=np.unique(y), average="macro", zero_division=0)
        ),
        "macro_f1": float(
            f1_score(y, y_pred, labels=labels, average="macro", zero_division=np.nan)
        ),
        "log_loss": float(log_loss(y, p, labels=labels)),
    }


def confusion(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, num_classes: int
) -> list[list[int]]:
    """The confusion matrix as nested lists: row = true class, column = predicted class.

    >>> confusion([0, 1, 1], [0, 0, 1], num_classes=3)
    [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
    """
    from sklearn.metrics import confusion_matrix

    y = np.asarray(y_true, dtype=np.int64).reshape(-1)
    yp = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if y.shape != yp.shape:
        raise ConfigError(
            f"y_true has {y.size} labels but y_pred has {yp.size}; pass one prediction per label."
        )
    _check_labels(np.concatenate([y, yp]), num_classes)
    return confusion_matrix(y, yp, labels=list(range(num_classes))).tolist()


def _check(
    y_true: Sequence[int] | np.ndarray, proba: Sequence[Sequence[float]] | np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != k:
        raise ConfigError(
            f"proba has shape {p.shape}; expected (num_images, {k}), one column per class."
        )
    if p.shape[0] != y.size:
        raise ConfigError(
            f"y_true has {y.size} labels but proba has {p.shape[0]} rows; pass one row per label."
        )
    if y.size == 0:
        raise ConfigError("No labels to score: y_true is empty.")
    if not np.isfinite(p).all():
        raise ConfigError("proba holds NaN or infinite values; check the model's outputs.")
    _check_labels(y, k)
    return y, p


def _check_labels(y: np.ndarray, k: int) -> None:
    if k < 1:
        raise ConfigError(f"num_classes must be at least 1, got {k}.")
    bad = y[(y < 0) | (y >= k)]
    if bad.size:
        raise ConfigError(
            f"Label {int(bad[0])} is outside 0..{k - 1}; labels must index the {k} classes."
        )


def paired_difference(
    correct_a: Sequence[bool] | np.ndarray, correct_b: Sequence[bool] | np.ndarray
) -> tuple[float, float]:
    """``(accuracy of a - accuracy of b, its standard error)`` of two models scored on the
    same images: ``correct_*`` says per image whether each was right. The standard error
    of the mean per-image difference (the paired test: images both get right or both get
    wrong add no noise), ``sqrt(var(d) / n)``.

    >>> paired_difference([1, 1, 1, 0], [1, 0, 1, 0])
    (0.25, 0.25)
    """
    a = np.asarray(correct_a, dtype=np.float64)
    b = np.asarray(correct_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ConfigError(
            f"paired_difference needs two equal-length, non-empty 1-d lists of per-image "
            f"results; got shapes {a.shape} and {b.shape}."
        )
    d = a - b
    se = float(np.sqrt(d.var(ddof=1) / len(d))) if len(d) > 1 else 0.0
    return float(d.mean()), se
