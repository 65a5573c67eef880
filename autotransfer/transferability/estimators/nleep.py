"""NLEEP: LEEP with a Gaussian mixture on the features as the "source classifier".

Li, Jia, Zhu, Chen, Guo, Huang, Zhai. "Ranking Neural Checkpoints", CVPR 2021.
https://arxiv.org/abs/2011.11200
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from autotransfer.errors import ConfigError
from autotransfer.threads import on_one_blas_thread
from autotransfer.transferability.base import ScoringInput
from autotransfer.transferability.estimators._util import check_inputs, check_positive, standardise
from autotransfer.transferability.estimators.leep import leep_from_probs

logger = logging.getLogger(__name__)

COVARIANCE_TYPES = ("diag", "full", "spherical", "tied")


def reduce_dimension(x: np.ndarray, variance: float, max_dims: int, seed: int) -> np.ndarray:
    """Standardise ``x`` and project it on the principal components that keep ``variance``.

    At most ``max_dims`` components are kept (and at most ``min(N, D)``). All-constant
    features collapse to one zero column.
    """
    from sklearn.decomposition import PCA

    z = standardise(x)
    n, d = z.shape
    if not np.any(z):
        return np.zeros((n, 1))
    solver = "covariance_eigh" if n > d else "full"
    pca = PCA(n_components=variance, svd_solver=solver, random_state=seed).fit(z)
    keep = int(min(pca.n_components_, max_dims))
    return pca.transform(z)[:, :keep]


class NLEEP:
    """NLEEP (Li et al., CVPR 2021): LEEP on the posteriors of a Gaussian mixture.

    The features are standardised, reduced by PCA to the components that explain
    ``variance`` of the variance (at most ``max_dims``), and a Gaussian mixture with
    ``components_per_class * C`` components is fitted with seed ``inputs.seed``; its
    posteriors P(component | x) replace the source classifier's softmax in LEEP. Does not
    need a source head.

    Components are capped at N / 2, two images each on average: with as many
    components as images each image gets its own, the posteriors are one-hot and every
    backbone scores exactly 0 (what a 5-shot dataset with 5 components per class gave).
    With fewer than two images per class on average (a one-shot dataset) the score is
    NaN ("cannot score").

    >>> import numpy as np
    >>> from autotransfer.transferability.base import ScoringInput
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 30)
    >>> x = rng.normal(size=(60, 4)) + 10 * y[:, None]
    >>> NLEEP().score(ScoringInput(features=x, labels=y)) > -0.05
    True
    """

    name = "nleep"
    needs_logits = False
    needs_features = True
    revision = 2  # 2: components capped at N / 2; NaN below two images per class

    def __init__(
        self,
        *,
        variance: float = 0.8,
        max_dims: int = 128,
        components_per_class: int = 5,
        covariance_type: str = "diag",
        reg_covar: float = 1e-4,
        max_iter: int = 100,
    ):
        self.variance = variance
        self.max_dims = max_dims
        self.components_per_class = components_per_class
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.max_iter = max_iter

    def __repr__(self) -> str:
        return (
            f"NLEEP(variance={self.variance}, max_dims={self.max_dims}, "
            f"components_per_class={self.components_per_class}, "
            f"covariance_type={self.covariance_type!r}, reg_covar={self.reg_covar}, "
            f"max_iter={self.max_iter})"
        )

    def _validate(self) -> None:
        if not (isinstance(self.variance, float) and 0.0 < self.variance < 1.0):
            raise ConfigError(
                f"Estimator 'nleep': variance must be a float in (0, 1), the fraction of "
                f"variance PCA keeps; got {self.variance!r}."
            )
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ConfigError(
                f"Estimator 'nleep': covariance_type must be one of {COVARIANCE_TYPES}; "
                f"got {self.covariance_type!r}."
            )
        check_positive(self.name, "max_dims", self.max_dims, integer=True)
        check_positive(self.name, "components_per_class", self.components_per_class, integer=True)
        check_positive(self.name, "reg_covar", self.reg_covar)
        check_positive(self.name, "max_iter", self.max_iter, integer=True)

    def n_components(self, num_samples: int, num_classes: int) -> int:
        """Number of mixture components for N samples and C classes (0: cannot score)."""
        if num_samples < 2 * num_classes:
            return 0
        return int(min(self.components_per_class * num_classes, num_samples // 2))

    @on_one_blas_thread
    def score(self, inputs: ScoringInput) -> float:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        self._validate()
        data = check_inputs(inputs, self.name)
        components = self.n_components(data.labels.size, data.num_classes)
        if components == 0:
            return float("nan")
        z = reduce_dimension(data.features, self.variance, self.max_dims, inputs.seed)
        gmm = GaussianMixture(
            n_components=components,
            covariance_type=self.covariance_type,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            random_state=inputs.seed,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            posteriors = gmm.fit(z).predict_proba(z)
        for w in caught:
            if issubclass(w.category, ConvergenceWarning):
                logger.debug("nleep: Gaussian mixture: %s", w.message)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return leep_from_probs(posteriors, data.labels, data.num_classes)
