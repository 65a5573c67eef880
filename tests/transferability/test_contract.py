"""The estimator contract, run on every built-in estimator."""

from __future__ import annotations

import numpy as np
import pytest

from autotransfer.builtin.estimators import autotransfer_register_estimators
from autotransfer.testing.estimators import EstimatorContract, synthetic_inputs
from autotransfer.transferability.base import Estimator

BUILTINS = autotransfer_register_estimators()


class TestBuiltinEstimators(EstimatorContract):
    @pytest.fixture(params=BUILTINS, ids=[e.name for e in BUILTINS])
    def estimator(self, request: pytest.FixtureRequest) -> Estimator:
        return request.param


class ConstantEstimator:
    """Ignores the data: the contract must notice."""

    name = "constant"
    needs_logits = False
    needs_features = True

    def score(self, inputs):
        return 0.5


class NumpyScalarEstimator(ConstantEstimator):
    name = "numpy_scalar"

    def score(self, inputs):
        return np.int64(1)


def test_the_contract_catches_an_estimator_that_ignores_the_data() -> None:
    contract = EstimatorContract()
    contract.test_returns_finite_float(ConstantEstimator())
    with pytest.raises(AssertionError, match="separable classes scored 0.5"):
        contract.test_separable_scores_above_shuffled(ConstantEstimator())


def test_the_contract_catches_a_non_float_score() -> None:
    with pytest.raises(AssertionError, match="returned int64, expected float"):
        EstimatorContract().test_returns_finite_float(NumpyScalarEstimator())


def test_the_contract_asks_for_an_estimator() -> None:
    with pytest.raises(NotImplementedError, match="make_estimator"):
        EstimatorContract().make_estimator()


def test_synthetic_inputs_are_deterministic_and_shaped() -> None:
    a = synthetic_inputs(num_classes=2, per_class=(3, 5), dim=7, num_source_classes=4, seed=9)
    b = synthetic_inputs(num_classes=2, per_class=(3, 5), dim=7, num_source_classes=4, seed=9)
    assert a.features.shape == (8, 7) and a.logits.shape == (8, 4)
    assert a.labels.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    np.testing.assert_array_equal(a.features, b.features)
    assert a.backbone is not None and a.backbone.weights.imagenet_top1 == 71.5
