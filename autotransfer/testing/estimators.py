"""A contract test class for transferability estimators, and the synthetic data it uses.

Subclass :class:`EstimatorContract` in a pytest module and provide the estimator::

    from autotransfer.testing.estimators import EstimatorContract

    class TestMyEstimator(EstimatorContract):
        def make_estimator(self):
            return MyEstimator()

or override the ``estimator`` fixture (for example with ``params=`` to run the contract
on several estimators). Every test is a method of the class, so pytest collects them all.
Needs pytest (``pip install autotransfer[dev]``).
"""

from __future__ import annotations

import math
import pickle
import re

import numpy as np
import pytest

from autotransfer.backbones.spec import BackboneSpec, WeightsRef
from autotransfer.transferability.base import Estimator, ScoringInput

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


def contract_backbone(imagenet_top1: float | None = 71.5) -> BackboneSpec:
    """A spec for synthetic inputs; its weights carry a published top-1."""
    return BackboneSpec(
        id="test:contract_net.synthetic",
        arch="test_resnet",
        weights=WeightsRef(source="random", imagenet_top1=imagenet_top1),
        description="synthetic backbone of the estimator contract tests",
    )


def synthetic_inputs(
    *,
    num_classes: int = 3,
    per_class: int | tuple[int, ...] = 20,
    dim: int = 16,
    separation: float = 4.0,
    num_source_classes: int = 8,
    shuffle_labels: bool = False,
    seed: int = 0,
) -> ScoringInput:
    """Gaussian class clusters as features, with logits of a source head that sees them.

    Class ``c`` has mean ``separation * mu_c`` (``mu_c`` random unit vectors) and identity
    covariance; features are shifted to be positive like post-ReLU features. The source
    logits are ``features @ W`` with each source class tuned to one cluster direction, so
    that they carry the class structure. ``shuffle_labels`` permutes the labels (same
    features, no structure left). ``per_class`` may list one count per class.
    """
    rng = np.random.default_rng(seed)
    counts = (per_class,) * num_classes if isinstance(per_class, int) else tuple(per_class)
    if len(counts) != num_classes:
        raise ValueError(f"per_class lists {len(counts)} counts for {num_classes} classes.")
    directions = rng.normal(size=(num_classes, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    labels = np.repeat(np.arange(num_classes), counts)
    features = rng.normal(size=(labels.size, dim)) + separation * directions[labels]
    features += 3.0 + separation  # positive, like pooled post-ReLU features
    tuned = directions[np.arange(num_source_classes) % num_classes]  # (K, D)
    weights = 2.0 * tuned.T + 0.1 * rng.normal(size=(dim, num_source_classes))
    logits = (features - features.mean(axis=0)) @ weights
    if shuffle_labels:
        labels = rng.permutation(labels)
    return ScoringInput(
        features=features.astype(np.float32),
        labels=labels,
        logits=logits.astype(np.float32),
        backbone=contract_backbone(),
        seed=seed,
    )


class EstimatorContract:
    """What every transferability estimator must do; subclass it in a pytest module.

    Checks: declares the :class:`~autotransfer.transferability.base.Estimator` protocol
    with a snake_case name; returns a finite Python float on ordinary data, on 2 classes,
    on a class with one example, on constant and duplicated feature columns, on N < D and
    on float32 input; is deterministic for a given seed; leaves its inputs untouched;
    survives pickling; refuses missing logits when it needs them; and, when it looks at
    the data, scores clearly separable classes above the same features with shuffled
    labels.
    """

    def make_estimator(self) -> Estimator:
        """Return the estimator under test (or override the ``estimator`` fixture)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement make_estimator() or override the "
            "`estimator` fixture to return the estimator under test."
        )

    @pytest.fixture
    def estimator(self) -> Estimator:
        return self.make_estimator()

    def make_inputs(self, **kwargs) -> ScoringInput:
        """Synthetic inputs; override to feed your estimator something else."""
        return synthetic_inputs(**kwargs)

    def _score(self, estimator: Estimator, inputs: ScoringInput) -> float:
        value = estimator.score(inputs)
        assert isinstance(value, float), (
            f"{estimator.name}.score returned {type(value).__name__}, expected float"
        )
        return value

    def _assert_finite(self, estimator: Estimator, inputs: ScoringInput) -> float:
        value = self._score(estimator, inputs)
        assert math.isfinite(value), f"{estimator.name}.score returned {value}"
        return value

    def test_follows_protocol(self, estimator: Estimator) -> None:
        assert isinstance(estimator, Estimator)
        assert isinstance(estimator.name, str) and NAME_PATTERN.match(estimator.name), (
            f"estimator name {estimator.name!r} is not snake_case"
        )
        assert isinstance(estimator.needs_logits, bool)
        assert isinstance(estimator.needs_features, bool)

    def test_returns_finite_float(self, estimator: Estimator) -> None:
        self._assert_finite(estimator, self.make_inputs())

    def test_deterministic_for_a_seed(self, estimator: Estimator) -> None:
        first = self._score(estimator, self.make_inputs(seed=3))
        second = self._score(estimator, self.make_inputs(seed=3))
        assert first == second or (math.isnan(first) and math.isnan(second))

    def test_two_classes(self, estimator: Estimator) -> None:
        self._assert_finite(estimator, self.make_inputs(num_classes=2, per_class=15))

    def test_class_with_one_example(self, estimator: Estimator) -> None:
        self._assert_finite(estimator, self.make_inputs(num_classes=3, per_class=(12, 1, 12)))

    def test_constant_and_duplicated_columns(self, estimator: Estimator) -> None:
        inputs = self.make_inputs(dim=12)
        f = inputs.features
        features = np.hstack([f, np.full((f.shape[0], 4), 2.5, np.float32), f[:, :3]])
        self._assert_finite(
            estimator,
            ScoringInput(
                features=features,
                labels=inputs.labels,
                logits=inputs.logits,
                backbone=inputs.backbone,
                seed=inputs.seed,
            ),
        )

    def test_fewer_samples_than_dimensions(self, estimator: Estimator) -> None:
        self._assert_finite(estimator, self.make_inputs(num_classes=2, per_class=10, dim=200))

    def test_float64_and_float32_agree(self, estimator: Estimator) -> None:
        inputs = self.make_inputs()
        as64 = ScoringInput(
            features=inputs.features.astype(np.float64),
            labels=inputs.labels,
            logits=None if inputs.logits is None else inputs.logits.astype(np.float64),
            backbone=inputs.backbone,
            seed=inputs.seed,
        )
        assert self._score(estimator, inputs) == pytest.approx(
            self._score(estimator, as64), rel=1e-3, abs=1e-3, nan_ok=True
        )

    def test_leaves_inputs_untouched(self, estimator: Estimator) -> None:
        inputs = self.make_inputs()
        features, labels = inputs.features.copy(), inputs.labels.copy()
        logits = None if inputs.logits is None else inputs.logits.copy()
        self._score(estimator, inputs)
        np.testing.assert_array_equal(inputs.features, features)
        np.testing.assert_array_equal(inputs.labels, labels)
        if logits is not None:
            np.testing.assert_array_equal(inputs.logits, logits)

    def test_survives_pickling(self, estimator: Estimator) -> None:
        clone = pickle.loads(pickle.dumps(estimator))
        inputs = self.make_inputs()
        assert clone.name == estimator.name
        assert self._score(clone, inputs) == pytest.approx(
            self._score(estimator, inputs), nan_ok=True
        )

    def test_refuses_missing_logits_when_needed(self, estimator: Estimator) -> None:
        if not estimator.needs_logits:
            pytest.skip(f"{estimator.name} does not need logits")
        inputs = self.make_inputs()
        with pytest.raises(ValueError, match="logits"):
            estimator.score(
                ScoringInput(features=inputs.features, labels=inputs.labels, logits=None)
            )

    def test_separable_scores_above_shuffled(self, estimator: Estimator) -> None:
        if not estimator.needs_features:
            pytest.skip(f"{estimator.name} does not look at the data")
        separable = self._assert_finite(estimator, self.make_inputs(separation=6.0, seed=1))
        shuffled = self._assert_finite(
            estimator, self.make_inputs(separation=6.0, seed=1, shuffle_labels=True)
        )
        assert separable > shuffled, (
            f"{estimator.name}: separable classes scored {separable}, shuffled labels {shuffled}"
        )
