"""Priors: the size x similarity rule orders strategies; cheap trials and the HyperRule first."""

from __future__ import annotations

import dataclasses

from autotransfer import plugins
from autotransfer.data.statistics import bit_hyperrule
from autotransfer.search.plan import prior_trials, similarity_score, strategy_order
from autotransfer.strategies.base import SearchContext

BUILTIN = ["feature_extraction", "partial_freeze", "full_finetune", "discriminative_lr"]


def _strategies():
    return [plugins.lookup("strategies", n) for n in BUILTIN]


def _search(n, sim):
    return SearchContext(
        num_train=n, num_classes=5, median_side=300.0, similarity=sim, device="cpu", batch_size=32
    )


def test_small_similar_data_freezes_first_large_or_far_data_fine_tunes_first():
    names = lambda s: [x.name for x in strategy_order(_strategies(), s)]  # noqa: E731
    assert names(_search(300, 0.9))[:2] == ["feature_extraction", "partial_freeze"]
    assert names(_search(300, 0.1))[0] == "full_finetune"  # small but far from the source
    assert names(_search(50_000, 0.9))[0] == "full_finetune"  # large
    assert names(_search(300, None))[0] == "feature_extraction"  # unknown: small counts similar


def test_priors_run_frozen_features_on_every_backbone_then_each_strategy_once():
    shortlist = ["timm:resnet50", "timm:resnet34", "timm:resnet18"]  # one family
    trials = prior_trials(shortlist, _strategies(), _search(300, 0.2))
    assert [t["strategy"] for t in trials[:3]] == ["feature_extraction"] * 3
    assert [t["backbone"] for t in trials[:3]] == shortlist
    rest = trials[3:]
    assert [t["backbone"] for t in rest] == ["timm:resnet50"] * 3
    assert rest[0]["strategy"] == "full_finetune"  # far from the source: fine-tune first
    ft = rest[0]
    assert ft["full_finetune.lr"] == 0.003 and ft["full_finetune.decay"] == "step"
    assert ft["full_finetune.mixup_alpha"] == bit_hyperrule(300, 300.0)["mixup_alpha"] == 0.0


def test_the_first_fine_tuning_prior_also_runs_on_another_familys_best():
    # the top backbone's family, a cut of another family (not a hedge: cut), then its
    # whole network: the rule's first strategy runs on it right after the top's
    shortlist = [
        "p:efficientnet_lite2",
        "p:efficientnet_lite0",
        "p:mobilenetv2_100@3",
        "p:mobilenetv2_100",
    ]
    trials = prior_trials(shortlist, _strategies(), _search(300, 0.9))
    pairs = [(t["backbone"], t["strategy"]) for t in trials[len(shortlist) :]]
    assert pairs == [
        ("p:efficientnet_lite2", "partial_freeze"),
        ("p:mobilenetv2_100", "partial_freeze"),
        ("p:efficientnet_lite2", "discriminative_lr"),
        ("p:efficientnet_lite2", "full_finetune"),
    ]
    assert (
        trials[len(shortlist) + 1]["partial_freeze.lr"]
        == trials[len(shortlist)]["partial_freeze.lr"]
    )  # the same prior configuration


def test_similarity_from_the_batchnorm_kl():
    @dataclasses.dataclass
    class Sim:
        bn_kl: float | None

    class Desc:
        source_similarity = {"a": Sim(0.07), "b": Sim(0.8), "c": Sim(None)}

    assert similarity_score(Desc(), "a") > 0.85
    assert similarity_score(Desc(), "b") < 0.25
    assert similarity_score(Desc(), "c") is None
    assert similarity_score(Desc(), "missing") is None


def test_the_no_transfer_baselines_run_once_each_early_where_transfer_is_in_doubt():
    strategies = [plugins.lookup("strategies", n) for n in [*BUILTIN, "raw_pixels", "from_scratch"]]
    shortlist = ["timm:resnet50", "timm:resnet18"]

    def order(median_side, sim):
        s = dataclasses.replace(_search(300, sim), median_side=median_side)
        return [(t["backbone"], t["strategy"]) for t in prior_trials(shortlist, strategies, s)]

    close = order(300.0, 0.9)  # large images close to the source: after the heads, and last
    assert [s for _, s in close].count("raw_pixels") == 1 and close[2][1] == "raw_pixels"
    assert close[-1] == ("timm:resnet50", "from_scratch")
    assert [s for _, s in close[:2]] == ["feature_extraction"] * 2
    for doubtful in (order(28.0, 0.9), order(300.0, 0.1)):  # tiny, or far from the source
        assert doubtful[0] == ("timm:resnet50", "raw_pixels")
        assert [s for _, s in doubtful[1:4]] == ["feature_extraction"] * 2 + ["from_scratch"]
        assert len(doubtful) == len(close)
