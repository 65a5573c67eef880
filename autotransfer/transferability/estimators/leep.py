"""LEEP: log expected empirical prediction of the source classifier.

Nguyen, Hassner, Seeger, Archambeau. "LEEP: A New Measure to Evaluate Transferability
of Learned Representations", ICML 2020. https://arxiv.org/abs/2002.12462
"""

from __future__ import annotations

import numpy as np

from autotransfer.transferability.base import ScoringInput
from autotransfer.transferability.estimators._util import (
    check_inputs,
    check_positive,
    one_hot,
    softmax,
)

_TINY = 1e-300


def leep_from_probs(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """LEEP from "source" probabilities ``probs`` (N, K) and target ``labels`` in 0..C-1.

    Empirical joint ``P(y, z) = 1/N sum_{i: y_i = y} probs[i, z]``, conditional
    ``P(y | z) = P(y, z) / P(z)``, and the score is
    ``1/N sum_i log sum_z P(y_i | z) probs[i, z]``, at most 0.

    >>> p = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> leep_from_probs(p, np.array([0, 1]), 2)
    0.0
    """
    n = probs.shape[0]
    joint = one_hot(labels, num_classes).T @ probs / n  # (C, K)
    marginal = joint.sum(axis=0, keepdims=True)  # P(z), (1, K)
    conditional = joint / np.maximum(marginal, _TINY)  # P(y | z); columns with P(z)=0 stay 0
    eep = (probs * conditional[labels]).sum(axis=1)  # sum_z P(y_i | z) probs[i, z]
    return float(np.mean(np.log(np.maximum(eep, _TINY))))


class LEEP:
    """LEEP (Nguyen et al., ICML 2020) from the source classifier's softmax.

    Needs source-head logits (the features are not used); ``temperature`` divides them
    before the softmax (1.0 as in the paper). Higher is better; the maximum, 0, means the
    source classes predict the target classes perfectly.

    >>> import numpy as np
    >>> from autotransfer.transferability.base import ScoringInput
    >>> y = np.array([0, 0, 1, 1])
    >>> logits = 20.0 * np.eye(2)[y]  # source class z == target class y
    >>> x = np.zeros((4, 1))
    >>> round(LEEP().score(ScoringInput(features=x, labels=y, logits=logits)), 6)
    -0.0
    """

    name = "leep"
    needs_logits = True
    needs_features = True  # a forward pass is needed (for the logits)

    def __init__(self, *, temperature: float = 1.0):
        self.temperature = temperature

    def __repr__(self) -> str:
        return f"LEEP(temperature={self.temperature})"

    def score(self, inputs: ScoringInput) -> float:
        check_positive(self.name, "temperature", self.temperature)
        data = check_inputs(inputs, self.name, logits=True)
        probs = softmax(data.logits / self.temperature)
        return leep_from_probs(probs, data.labels, data.num_classes)
