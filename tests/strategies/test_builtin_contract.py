"""Every built-in strategy passes the contract plugin authors use."""

from __future__ import annotations

import pytest

from autotransfer import plugins
from autotransfer.testing.strategies import StrategyContract

BUILTIN = [
    "feature_extraction",
    "partial_freeze",
    "full_finetune",
    "discriminative_lr",
    "raw_pixels",
    "from_scratch",
]


class TestBuiltinStrategies(StrategyContract):
    @pytest.fixture(params=BUILTIN)
    def strategy(self, request):
        return plugins.lookup("strategies", request.param)


def test_all_builtins_registered():
    reg = plugins.registered("strategies")
    assert set(BUILTIN) <= set(reg)
    assert all(reg[n].distribution == "autotransfer" for n in BUILTIN)
