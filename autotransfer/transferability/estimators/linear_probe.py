"""Cross-validated accuracy of a logistic-regression probe on frozen features.

The linear-evaluation protocol of e.g. Kornblith, Shlens, Le. "Do Better ImageNet Models
Transfer Better?", CVPR 2019, used as a transferability estimate.
"""

from __future__ import annotations

import warnings

import numpy as np

from autotransfer.threads import on_one_blas_thread
from autotransfer.transferability.base import ScoringInput
from autotransfer.transferability.estimators._util import check_inputs, check_positive


def n_folds(counts: np.ndarray, max_folds: int) -> int:
    """``min(max_folds, smallest class count)``, at least 2."""
    return int(max(2, min(max_folds, int(counts.min()))))


def make_probe(c: float, max_iter: int, seed: int):
    """The probe: standardisation then L2-regularised multinomial logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
    )


class LinearProbeCV:
    """Stratified k-fold accuracy of a logistic regression on standardised features.

    ``k = min(folds, smallest class count)``, at least 2; folds are shuffled with seed
    ``inputs.seed``. A class with a single example cannot be stratified: it lands in one
    test fold and counts as an error there (its class is absent from training). A training
    fold with a single class predicts that class. When every class is a singleton (a
    one-shot dataset) nothing can be held out and predicted: the score is NaN ("cannot
    score"). ``C`` is the inverse regularisation strength of scikit-learn's
    ``LogisticRegression`` (lbfgs). Score in [0, 1], the accuracy over all held-out
    predictions.

    >>> import numpy as np
    >>> from autotransfer.transferability.base import ScoringInput
    >>> y = np.repeat([0, 1], 10)
    >>> x = np.random.default_rng(0).normal(size=(20, 3)) + 5 * y[:, None]
    >>> LinearProbeCV().score(ScoringInput(features=x, labels=y))
    1.0
    """

    name = "linear_probe_cv"
    needs_logits = False
    needs_features = True
    revision = 2  # 2: NaN instead of 0 when every class is a singleton

    def __init__(self, *, folds: int = 5, C: float = 0.1, max_iter: int = 200):
        self.folds = folds
        self.C = C
        self.max_iter = max_iter

    def __repr__(self) -> str:
        return f"LinearProbeCV(folds={self.folds}, C={self.C}, max_iter={self.max_iter})"

    @on_one_blas_thread
    def score(self, inputs: ScoringInput) -> float:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.model_selection import StratifiedKFold

        check_positive(self.name, "folds", self.folds, integer=True)
        check_positive(self.name, "C", self.C)
        check_positive(self.name, "max_iter", self.max_iter, integer=True)
        data = check_inputs(inputs, self.name)
        x, y = data.features, data.labels
        if data.all_singletons:
            return float("nan")  # every class a singleton: held out, its class is never seen
        k = n_folds(data.counts, self.folds)
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=inputs.seed)
        correct = 0
        with warnings.catch_warnings():
            # a class with fewer members than folds, and an early-stopped lbfgs, are expected
            warnings.filterwarnings("ignore", message="The least populated class")
            warnings.simplefilter("ignore", ConvergenceWarning)
            for train, test in splitter.split(x, y):
                if np.unique(y[train]).size < 2:
                    predicted = np.full(test.size, y[train][0])
                else:
                    probe = make_probe(self.C, self.max_iter, inputs.seed)
                    predicted = probe.fit(x[train], y[train]).predict(x[test])
                correct += int(np.sum(predicted == y[test]))
        return correct / y.size
