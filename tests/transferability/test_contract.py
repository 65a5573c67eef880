"""The estimator contract, run on every built-in estimator."""

from __future__ import annotations

import pytest

from autotransfer.builtin.estimators import autotransfer_register_estimators
from autotransfer.testing.estimators import EstimatorContract
from autotransfer.transferability.base import Estimator

BUILTINS = autotransfer_register_estimators()


class TestBuiltinEstimators(EstimatorContract):
    @pytest.fixture(params=BUILTINS, ids=[e.name for e in BUILTINS])
    def estimator(self, request: pytest.FixtureRequest) -> Estimator:
        return request.param
