"""A linear probe: scikit-learn's logistic regression as a head over every class.

Shared by the frozen-feature strategy and strategies that start from a probe (LP-FT):
each scales the features its own way, fits here, and folds its scaling into the head.
"""

from __future__ import annotations

import warnings

import numpy as np

from autotransfer.threads import on_one_blas_thread

MISSING_CLASS_BIAS = -1e4  # a class absent from the training split is never predicted


@on_one_blas_thread
def fit_linear_head(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    C: float = 1.0,
    class_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(weight (classes, features), bias (classes,), solver iterations)`` of an
    L2-regularised logistic regression, with a row for every class index: the binary
    case expanded to two rows, classes missing from ``labels`` never predicted.

    >>> x = np.array([[0.0], [1.0], [4.0], [5.0]]); y = np.array([0, 0, 2, 2])
    >>> w, b, _ = fit_linear_head(x, y, 3)
    >>> (x @ w.T + b).argmax(1).tolist()
    [0, 0, 2, 2]
    """
    from sklearn.linear_model import LogisticRegression

    weights = None
    if class_weights is not None:  # the classes present only
        weights = {int(c): float(class_weights[int(c)]) for c in np.unique(labels)}
    clf = LogisticRegression(C=float(C), max_iter=2000, class_weight=weights)
    with warnings.catch_warnings():
        # one or two images per class: scikit-learn guesses from the label counts that this
        # may be a regression; the labels are class indices
        warnings.filterwarnings("ignore", message="The number of unique classes is greater")
        clf.fit(features, labels)
    coef, icpt = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:  # two classes seen: sklearn keeps one row, for the second class
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        icpt = np.array([-icpt[0] / 2, icpt[0] / 2])
    w = np.zeros((num_classes, features.shape[1]), dtype=np.float64)
    b = np.full(num_classes, MISSING_CLASS_BIAS, dtype=np.float64)
    for row, c in enumerate(clf.classes_):
        w[int(c)], b[int(c)] = coef[row], icpt[row]
    return w.astype(np.float32), b.astype(np.float32), int(np.max(clf.n_iter_))
