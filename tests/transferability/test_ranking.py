import math

import numpy as np
import pytest

from autotransfer.transferability.ranking import Ranking, RankingRow, aggregate_scores


def test_aggregate_is_mean_normalised_rank_by_hand():
    scores = {
        "a": {"x": 3.0, "y": -1.0, "z": float("nan")},
        "b": {"x": 1.0, "y": -2.0, "z": 0.5},
        "c": {"x": 2.0, "y": 7.0, "z": 0.1},
    }
    agg = aggregate_scores(scores, ["x", "y", "z"])
    # x: a best (1), c middle (0.5), b worst (0); y: c 1, a 0.5, b 0; z: b 1, c 0 (a has none)
    assert agg["a"] == pytest.approx((1 + 0.5) / 2)
    assert agg["b"] == pytest.approx((0 + 0 + 1) / 3)
    assert agg["c"] == pytest.approx((0.5 + 1 + 0) / 3)


def test_aggregate_ties_share_their_rank_and_missing_is_nan():
    agg = aggregate_scores({"a": {"x": 1.0}, "b": {"x": 1.0}, "c": {"x": float("nan")}}, ["x"])
    assert agg["a"] == agg["b"] == pytest.approx(0.5)
    assert math.isnan(agg["c"])


def _ranking():
    rows = tuple(
        RankingRow(
            backbone=b,
            scores={"logme": s, "leep": float("nan")},
            aggregate=a,
            rank=i,
            params_m=1.5,
            feature_dim=8,
            images=10,
            extract_seconds=0.2,
        )
        for i, (b, s, a) in enumerate([("p:one", 0.5, 1.0), ("p:two", 0.1, 0.0)], 1)
    )
    return Ranking(
        rows=rows,
        estimators=("logme", "leep"),
        aggregate_estimators=("logme",),
        top_k=1,
        dataset="/d",
    )


def test_ranking_round_trips_and_prints_every_estimator():
    r = _ranking()
    again = Ranking.from_dict(r.to_dict())
    assert again.shortlist == ["p:one"] and again.best == "p:one"
    assert np.isnan(again.rows[0].scores["leep"])
    assert again.rows[1].scores["logme"] == 0.1
    table = r.table()
    assert "logme" in table and "leep" in table and "p:two" in table
    assert table.splitlines()[2].startswith("1*")


def test_a_new_revision_of_an_estimator_does_not_reuse_cached_scores():
    from autotransfer.transferability.estimators import KNNLeaveOneOut
    from autotransfer.transferability.ranking import estimator_identity

    class OldKNN(KNNLeaveOneOut):
        revision = 1

    new, old = KNNLeaveOneOut(k=5), OldKNN(k=5)
    renamed = estimator_identity(old, 0).replace("OldKNN", "KNNLeaveOneOut")
    assert "@rev=2" in estimator_identity(new, 0) and estimator_identity(new, 0) != renamed
    assert estimator_identity(new, 0) == estimator_identity(KNNLeaveOneOut(k=5), 0)
    assert estimator_identity(new, 0) != estimator_identity(new, 1)


def _zoo(hedge=True, top_k=2):
    ids = [
        "p:efficientnet_lite2",
        "p:efficientnet_lite0",
        "p:mobilenetv2_100@3",
        "p:efficientnet_lite1",
        "p:mobilenetv2_100",
    ]
    rows = tuple(
        RankingRow(backbone=b, scores={"logme": -i}, aggregate=1.0 - i / 4, rank=i + 1)
        for i, b in enumerate(ids)
    )
    return Ranking(
        rows=rows, estimators=("logme",), aggregate_estimators=("logme",), top_k=top_k, hedge=hedge
    )


def test_a_one_family_shortlist_adds_the_best_whole_network_of_another():
    r = _zoo()
    assert r.hedged == "p:mobilenetv2_100"  # not its cut, ranked above it
    assert r.shortlist == ["p:efficientnet_lite2", "p:efficientnet_lite0", "p:mobilenetv2_100"]
    table = r.table().splitlines()
    assert table[2 + 4].startswith("5*") and table[2 + 3].startswith("4 ")
    assert "and p:mobilenetv2_100, another family's best" in table[-1]
    again = Ranking.from_dict(r.to_dict())
    assert again.shortlist == r.shortlist and again.to_dict()["shortlist"] == r.shortlist


def test_no_hedge_when_asked_or_when_the_top_k_has_another_family_or_saved_without_it():
    assert _zoo(hedge=False).shortlist == ["p:efficientnet_lite2", "p:efficientnet_lite0"]
    assert _zoo(hedge=False).hedged is None
    # the top 3 holds the cut of MobileNetV2: another family's whole network is still added
    assert _zoo(top_k=3).hedged == "p:mobilenetv2_100"
    assert len(_zoo(top_k=5).shortlist) == 5  # everything: nothing to add
    saved = _zoo().to_dict()
    del saved["hedge"]  # a ranking saved before the hedge keeps the shortlist it had
    assert Ranking.from_dict(saved).shortlist == ["p:efficientnet_lite2", "p:efficientnet_lite0"]
