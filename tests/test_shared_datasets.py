"""Slow end-to-end checks on real data and real ImageNet weights (opt in: pytest -m slow)."""

from pathlib import Path

import pytest

import autotransfer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
pytestmark = pytest.mark.slow


@pytest.mark.skipif(not (SHARED / "hymenoptera").exists(), reason="../shared/datasets absent")
def test_pretrained_backbones_outrank_the_random_control_on_ants_and_bees():
    pretrained = ["package:efficientnet_lite0", "package:mobilenetv2_100"]
    r = autotransfer.rank(
        SHARED / "hymenoptera",
        backbones=[*pretrained, "random:mobilenetv2_100"],
        extraction=autotransfer.ExtractionSettings(resolution=128),
        top_k=2,
    )
    assert sorted(r.shortlist) == sorted(pretrained)
    assert r.rows[-1].backbone == "random:mobilenetv2_100"
    control = r.rows[-1].scores
    for row in r.rows[:2]:
        assert row.scores["linear_probe_cv"] > 0.85  # ants vs bees is easy from ImageNet features
        for est in ("logme", "hscore", "knn_loo_k5", "linear_probe_cv"):
            assert row.scores[est] > control[est], (row.backbone, est)
    d = autotransfer.describe(
        SHARED / "hymenoptera",
        backbones=pretrained,
        extraction=autotransfer.ExtractionSettings(resolution=128),
    )
    # ImageNet photos of ants and bees: the source heads are fairly sure of themselves
    for sim in d.source_similarity.values():
        assert sim.head_confidence > 0.4 and sim.head_entropy < 0.5
