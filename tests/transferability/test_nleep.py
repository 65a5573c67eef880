"""NLEEP against LEEP (by loops) on a Gaussian mixture fitted here with the same settings."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler

from autotransfer.errors import ConfigError
from autotransfer.transferability.base import ScoringInput
from autotransfer.transferability.estimators import NLEEP

from .test_leep import leep_by_loops


def clusters(
    n_per_class: int, num_classes: int, dim: int, separation: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), n_per_class)
    means = separation * rng.normal(size=(num_classes, dim))
    return rng.normal(size=(labels.size, dim)) + means[labels] + 5.0, labels


def reference_nleep(
    x: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int,
    variance: float = 0.8,
    max_dims: int = 128,
    per_class: int = 5,
    covariance_type: str = "diag",
) -> float:
    z = StandardScaler().fit_transform(x)
    solver = "covariance_eigh" if z.shape[0] > z.shape[1] else "full"
    z = PCA(n_components=variance, svd_solver=solver).fit_transform(z)[:, :max_dims]
    num_classes = np.unique(labels).size
    gmm = GaussianMixture(
        n_components=min(per_class * num_classes, x.shape[0] // 2),
        covariance_type=covariance_type,
        reg_covar=1e-4,
        max_iter=100,
        random_state=seed,
    ).fit(z)
    return leep_by_loops(gmm.predict_proba(z).tolist(), labels.tolist())


@pytest.mark.parametrize(
    ("covariance_type", "per_class", "seed"), [("diag", 5, 0), ("full", 1, 3), ("diag", 2, 7)]
)
def test_equals_leep_on_mixture_posteriors(covariance_type: str, per_class: int, seed: int) -> None:
    x, labels = clusters(25, 3, 12, separation=1.0, seed=seed)
    expected = reference_nleep(
        x, labels, seed=seed, per_class=per_class, covariance_type=covariance_type
    )
    estimator = NLEEP(components_per_class=per_class, covariance_type=covariance_type)
    got = estimator.score(ScoringInput(features=x, labels=labels, seed=seed))
    assert got == pytest.approx(expected, abs=1e-6)


def test_pca_cap_on_dimensions() -> None:
    x, labels = clusters(20, 2, 40, separation=0.5, seed=1)
    expected = reference_nleep(x, labels, seed=0, max_dims=3, variance=0.95)
    got = NLEEP(max_dims=3, variance=0.95).score(ScoringInput(features=x, labels=labels))
    assert got == pytest.approx(expected, abs=1e-6)


def test_well_separated_clusters_score_near_zero() -> None:
    x, labels = clusters(30, 4, 8, separation=15.0, seed=2)
    assert NLEEP().score(ScoringInput(features=x, labels=labels)) > -0.01


def test_components_are_capped_at_half_the_samples() -> None:
    x, labels = clusters(2, 3, 5, separation=3.0, seed=4)  # 6 samples, 5 * 3 components asked
    assert NLEEP().n_components(6, 3) == 3
    assert np.isfinite(NLEEP().score(ScoringInput(features=x, labels=labels)))


def test_five_shot_scores_differ_between_good_and_poor_features() -> None:
    # 5 images per class and 5 components per class: uncapped, every image got its own
    # component and every feature set scored exactly 0
    good, labels = clusters(5, 4, 16, separation=8.0, seed=5)
    poor = np.random.default_rng(5).normal(size=good.shape)
    score = {
        name: NLEEP().score(ScoringInput(features=x, labels=labels))
        for name, x in (("good", good), ("poor", poor))
    }
    assert score["good"] > score["poor"] + 0.1, score


def test_one_shot_cannot_be_scored() -> None:
    x = np.random.default_rng(0).normal(size=(4, 6))
    assert np.isnan(NLEEP().score(ScoringInput(features=x, labels=np.arange(4))))


def test_all_constant_features_give_the_label_entropy() -> None:
    labels = np.array([0, 0, 0, 1])
    got = NLEEP().score(ScoringInput(features=np.ones((4, 3)), labels=labels))
    assert got == pytest.approx(0.75 * np.log(0.75) + 0.25 * np.log(0.25), abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"variance": 1.5}, "variance"),
        ({"covariance_type": "diagonal"}, "covariance_type"),
        ({"components_per_class": 0}, "components_per_class"),
    ],
)
def test_rejects_bad_hyperparameters(kwargs: dict, match: str) -> None:
    x, labels = clusters(5, 2, 3, separation=1.0, seed=0)
    with pytest.raises(ConfigError, match=match):
        NLEEP(**kwargs).score(ScoringInput(features=x, labels=labels))
