"""Helpers shared by the built-in estimators: input checks, standardisation, softmax."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autotransfer.errors import ConfigError, DataError
from autotransfer.transferability.base import ScoringInput


@dataclass(frozen=True)
class Checked:
    """Validated arrays: float64 features (N, D), labels remapped to 0..C-1, counts per class."""

    features: np.ndarray
    labels: np.ndarray
    num_classes: int
    counts: np.ndarray
    logits: np.ndarray | None = None

    @property
    def all_singletons(self) -> bool:
        """Every class has one image (a one-shot set): nothing to hold out or to compare
        within a class, so leave-one-out, cross-validated and within-class scores cannot
        be computed."""
        return bool(self.counts.max() < 2)


def check_inputs(inputs: ScoringInput, estimator: str, *, logits: bool = False) -> Checked:
    """Validate ``inputs`` for ``estimator`` and return float64 copies of what it needs.

    Labels are remapped to consecutive ids (``[3, 7, 3]`` becomes ``[0, 1, 0]``) so that
    class ids absent from a subset do not count as empty classes. Raises
    :class:`~autotransfer.errors.DataError` naming the estimator and what was wrong.
    """
    feats = np.asarray(inputs.features)
    if feats.ndim != 2:
        raise DataError(
            f"Estimator {estimator!r} needs features of shape (N, D); got shape {feats.shape}. "
            "Pass pooled pre-logit features, one row per image."
        )
    labels = np.asarray(inputs.labels)
    if labels.ndim != 1 or labels.shape[0] != feats.shape[0]:
        raise DataError(
            f"Estimator {estimator!r} needs one label per feature row; got labels of shape "
            f"{labels.shape} for features of shape {feats.shape}."
        )
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise DataError(
                f"Estimator {estimator!r} needs integer class ids as labels; got dtype "
                f"{labels.dtype}. Map class names to 0..C-1 first."
            )
    if feats.shape[0] < 2:
        raise DataError(f"Estimator {estimator!r} needs at least 2 samples; got {feats.shape[0]}.")
    feats = feats.astype(np.float64, copy=True)
    if not np.all(np.isfinite(feats)):
        raise DataError(
            f"Estimator {estimator!r} got non-finite features ({int((~np.isfinite(feats)).sum())} "
            "NaN or inf values). Check the feature extraction (overflow in half precision?)."
        )
    classes, remapped, counts = np.unique(
        labels.astype(np.int64), return_inverse=True, return_counts=True
    )
    if classes.size < 2:
        raise DataError(
            f"Estimator {estimator!r} needs at least 2 classes; got {classes.size} "
            f"(labels {classes.tolist()}). Transferability is meaningless with one class."
        )
    out_logits = None
    if logits:
        if inputs.logits is None:
            raise DataError(
                f"Estimator {estimator!r} needs source-classifier logits but got none. "
                "Score only backbones with a classification head, or pick an estimator "
                "with needs_logits=False."
            )
        out_logits = np.asarray(inputs.logits, dtype=np.float64)
        if out_logits.ndim != 2 or out_logits.shape[0] != feats.shape[0]:
            raise DataError(
                f"Estimator {estimator!r} needs logits of shape (N, K) with N={feats.shape[0]}; "
                f"got shape {out_logits.shape}."
            )
        if not np.all(np.isfinite(out_logits)):
            raise DataError(f"Estimator {estimator!r} got non-finite logits.")
    return Checked(
        features=feats,
        labels=remapped.reshape(-1).astype(np.int64),
        num_classes=int(classes.size),
        counts=counts,
        logits=out_logits,
    )


def standardise(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per column (population std, like ``StandardScaler``).

    Constant columns become all zeros instead of NaN.

    >>> standardise(np.array([[1.0, 5.0], [3.0, 5.0]])).tolist()
    [[-1.0, 0.0], [1.0, 0.0]]
    """
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std < 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0)] = 1.0
    return (x - mean) / std


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, C) float64 one-hot matrix of integer labels."""
    out = np.zeros((labels.shape[0], num_classes))
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


def check_positive(estimator: str, name: str, value: float, *, integer: bool = False) -> None:
    """Raise :class:`~autotransfer.errors.ConfigError` unless ``value`` is a positive number."""
    ok = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float))
    if not ok or isinstance(value, bool) or not value > 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"Estimator {estimator!r}: {name} must be {kind}; got {value!r}.")
