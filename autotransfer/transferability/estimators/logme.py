"""LogME: the maximum log evidence of a Bayesian linear model on frozen features.

You, Liu, Wang, Long. "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning", ICML 2021. https://arxiv.org/abs/2102.11005
"""

from __future__ import annotations

import numpy as np

from autotransfer.transferability.base import ScoringInput
from autotransfer.transferability.estimators._util import (
    check_inputs,
    check_positive,
    one_hot,
    standardise,
)


def log_evidence(
    u: np.ndarray, sigma: np.ndarray, y: np.ndarray, dim: int, *, max_iter: int, tol: float
) -> tuple[float, float, float]:
    """Maximum log evidence of ``y = F w + noise`` per sample, with its ``(alpha, beta)``.

    ``u`` (N, r) and ``sigma`` (r,) are the left singular vectors of F and its squared
    singular values; ``dim`` is D, the number of columns of F. The prior is
    ``w ~ N(0, alpha^-1 I_D)``, the noise ``N(0, beta^-1 I_N)``; alpha and beta are
    found by MacKay's fixed-point iteration.
    """
    n = y.shape[0]
    rank = sigma.shape[0]
    x2 = (u.T @ y) ** 2
    res_x2 = max(float(y @ y - x2.sum()), 0.0)  # part of y outside the column space of F
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        t = alpha / beta
        gamma = float((sigma / (sigma + t)).sum())
        m2 = float((sigma * x2 / (t + sigma) ** 2).sum())
        res2 = float((x2 / (1.0 + sigma / t) ** 2).sum()) + res_x2
        alpha = gamma / (m2 + 1e-12) if gamma > 0 else 1e12
        beta = (n - gamma) / (res2 + 1e-12)
        alpha, beta = float(np.clip(alpha, 1e-12, 1e12)), float(np.clip(beta, 1e-12, 1e12))
        if abs(alpha / beta - t) <= tol * t:
            break
    t = alpha / beta
    m2 = float((sigma * x2 / (t + sigma) ** 2).sum())
    res2 = float((x2 / (1.0 + sigma / t) ** 2).sum()) + res_x2
    # log|A| with A = alpha I_D + beta F^T F: r eigenvalues alpha + beta sigma, D - r of alpha
    logdet_a = float(np.log(alpha + beta * sigma).sum()) + (dim - rank) * np.log(alpha)
    evidence = (
        dim / 2.0 * np.log(alpha)
        + n / 2.0 * np.log(beta)
        - 0.5 * logdet_a
        - beta / 2.0 * res2
        - alpha / 2.0 * m2
        - n / 2.0 * np.log(2.0 * np.pi)
    )
    return float(evidence / n), alpha, beta


class LogME:
    """LogME (You et al., ICML 2021): mean over classes of the per-sample log evidence.

    Each class is a one-hot regression target of a Bayesian linear model on the features;
    the evidence is maximised over the prior precision alpha and noise precision beta by
    the fixed-point iteration, using one thin SVD of F (works for N > D and N < D).

    ``standardize``: z-score feature columns first (off by default, as in the paper; the
    score is invariant to a global rescaling of F either way). ``max_iter`` and ``tol``
    control the fixed-point iteration (relative change of alpha / beta).

    >>> import numpy as np
    >>> from autotransfer.transferability.base import ScoringInput
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 20)
    >>> x = rng.normal(size=(40, 5)) + 3 * y[:, None]
    >>> LogME().score(ScoringInput(features=x, labels=y)) > -1.0
    True
    """

    name = "logme"
    needs_logits = False
    needs_features = True

    def __init__(self, *, standardize: bool = False, max_iter: int = 100, tol: float = 1e-6):
        self.standardize = standardize
        self.max_iter = max_iter
        self.tol = tol

    def __repr__(self) -> str:
        return f"LogME(standardize={self.standardize}, max_iter={self.max_iter}, tol={self.tol})"

    def score(self, inputs: ScoringInput) -> float:
        check_positive(self.name, "max_iter", self.max_iter, integer=True)
        check_positive(self.name, "tol", self.tol)
        data = check_inputs(inputs, self.name)
        f = standardise(data.features) if self.standardize else data.features
        dim = f.shape[1]
        u, s, _ = np.linalg.svd(f, full_matrices=False)
        keep = s > s.max(initial=0.0) * max(f.shape) * np.finfo(np.float64).eps
        u, sigma = u[:, keep], s[keep] ** 2
        targets = one_hot(data.labels, data.num_classes)
        evidences = [
            log_evidence(u, sigma, targets[:, k], dim, max_iter=self.max_iter, tol=self.tol)[0]
            for k in range(data.num_classes)
        ]
        return float(np.mean(evidences))
