"""H-score, optionally regularised by Ledoit-Wolf shrinkage of the feature covariance.

Bao, Li, Huang, Wang, Zheng, Zhao. "An Information-Theoretic Approach to
Transferability in Task Transfer Learning", ICIP 2019.
Ibrahim, Ponomareva, Mazumder. "Newer is not always better: Rethinking transferability
metrics, their peculiarities, stability and performance", ECML-PKDD 2022.
https://arxiv.org/abs/2110.06893
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from autotransfer.transferability.base import ScoringInput
from autotransfer.transferability.estimators._util import check_inputs, standardise


def class_means(f: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, D) mean feature of each class."""
    sums = np.zeros((num_classes, f.shape[1]))
    np.add.at(sums, labels, f)
    return sums / np.bincount(labels, minlength=num_classes)[:, None]


class HScore:
    """H-score ``tr(Cov(f)^-1 Cov(E[f | y]))`` (Bao et al., 2019).

    With ``shrinkage=True`` (default) this is the regularised H-score of Ibrahim et al.
    (2022): Cov(f) is replaced by the Ledoit-Wolf estimate
    ``(1 - a) Cov(f) + a mu I`` and Cov(E[f | y]) by ``(1 - a) Cov(E[f | y])``, which keeps
    the score stable when N < D. With ``shrinkage=False`` it is the textbook H-score with
    the pseudo-inverse of Cov(f). Covariances are normalised by N. Features are
    standardised first unless ``standardize=False`` (shrinkage towards ``mu I`` assumes
    columns on a common scale; without shrinkage the score does not depend on it).

    NaN ("cannot score") when every class has a single image: there is then no spread
    within a class to compare the spread between classes with, and the score is C - 1
    for any features (with shrinkage, whatever the shrinkage leaves; a one-shot set of
    30 aerial scenes ranked the random-init control first).

    >>> import numpy as np
    >>> from autotransfer.transferability.base import ScoringInput
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 20)
    >>> x = rng.normal(size=(40, 5)) + 3 * y[:, None]
    >>> HScore().score(ScoringInput(features=x, labels=y)) > 0.5
    True
    """

    name = "hscore"
    needs_logits = False
    needs_features = True
    revision = 2  # 2: NaN when every class is a singleton

    def __init__(self, *, shrinkage: bool = True, standardize: bool = True):
        self.shrinkage = shrinkage
        self.standardize = standardize

    def __repr__(self) -> str:
        return f"HScore(shrinkage={self.shrinkage}, standardize={self.standardize})"

    def score(self, inputs: ScoringInput) -> float:
        data = check_inputs(inputs, self.name)
        if data.all_singletons:
            return float("nan")
        f = standardise(data.features) if self.standardize else data.features
        f = f - f.mean(axis=0)
        n = f.shape[0]
        # Cov(E[f | y]) = M^T W M with M the centred class means and W = diag(n_c / N)
        means = class_means(f, data.labels, data.num_classes)
        between = means * np.sqrt(data.counts / n)[:, None]  # (C, D); between^T between
        if self.shrinkage:
            from sklearn.covariance import ledoit_wolf

            cov_f, alpha = ledoit_wolf(f, assume_centered=True)
            between = between * np.sqrt(1.0 - alpha)
        else:
            cov_f = f.T @ f / n
            return _trace_pinv_quadratic(cov_f, between)
        return _trace_inv_quadratic(cov_f, between)


def _trace_inv_quadratic(cov: np.ndarray, b: np.ndarray) -> float:
    """``tr(pinv(cov) b^T b)`` = ``tr(b pinv(cov) b^T)``.

    Cholesky when ``cov`` is positive definite (always, after shrinkage with a non-zero
    target), otherwise the pseudo-inverse.
    """
    scale = float(np.max(np.diag(cov), initial=0.0))
    if scale > 0:
        try:
            factor = scipy.linalg.cho_factor(cov, lower=True, check_finite=False)
            pivots = np.diag(factor[0]) ** 2
            if pivots.min() > 1e-10 * scale:
                sol = scipy.linalg.cho_solve(factor, b.T, check_finite=False)
                return float(np.sum(b.T * sol))
        except np.linalg.LinAlgError:
            pass
    return _trace_pinv_quadratic(cov, b)


def _trace_pinv_quadratic(cov: np.ndarray, b: np.ndarray) -> float:
    """``tr(pinv(cov) b^T b)``; eigenvalues below ``1e-10`` times the largest count as 0."""
    rcond = 1e-10
    return float(np.sum(b.T * (np.linalg.pinv(cov, rcond=rcond, hermitian=True) @ b.T)))
