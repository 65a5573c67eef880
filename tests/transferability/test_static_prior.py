"""The zero-cost static prior reads the published top-1 from the backbone spec."""

from __future__ import annotations

import math

import numpy as np

from autotransfer.backbones.spec import BackboneSpec, WeightsRef
from autotransfer.transferability.base import ScoringInput
from autotransfer.transferability.estimators import ImageNetTop1

NO_DATA = {"features": np.zeros((0, 0), np.float32), "labels": np.zeros(0, np.int64)}


def spec(top1: float | None) -> BackboneSpec:
    return BackboneSpec(
        id="timm:resnet18.a1_in1k", arch="resnet18", weights=WeightsRef("timm", imagenet_top1=top1)
    )


def test_returns_the_published_top1() -> None:
    assert ImageNetTop1().score(ScoringInput(**NO_DATA, backbone=spec(71.49))) == 71.49


def test_missing_top1_or_backbone_is_nan() -> None:
    assert math.isnan(ImageNetTop1().score(ScoringInput(**NO_DATA, backbone=spec(None))))
    assert math.isnan(ImageNetTop1().score(ScoringInput(**NO_DATA)))


def test_needs_neither_features_nor_logits() -> None:
    assert ImageNetTop1.needs_features is False
    assert ImageNetTop1.needs_logits is False
