"""The zero-cost static prior: the published ImageNet top-1 accuracy of the weights.

Kornblith, Shlens, Le. "Do Better ImageNet Models Transfer Better?", CVPR 2019, found
ImageNet accuracy strongly correlated with transfer accuracy; it is the baseline any
estimator that needs a forward pass has to beat.
"""

from __future__ import annotations

import math

from autotransfer.transferability.base import ScoringInput


class ImageNetTop1:
    """Returns ``inputs.backbone.weights.imagenet_top1``; needs no features.

    When the backbone or its published top-1 is missing, returns ``nan``: ranking treats
    nan as "no score" (the backbone is listed without this estimate, not ranked last).

    >>> from autotransfer.backbones.spec import BackboneSpec, WeightsRef
    >>> import numpy as np
    >>> spec = BackboneSpec("timm:resnet18.a1_in1k", "resnet18",
    ...                     WeightsRef("timm", imagenet_top1=71.5))
    >>> x, y = np.zeros((0, 0)), np.zeros(0, dtype=int)
    >>> ImageNetTop1().score(ScoringInput(features=x, labels=y, backbone=spec))
    71.5
    """

    name = "imagenet_top1"
    needs_logits = False
    needs_features = False

    def __repr__(self) -> str:
        return "ImageNetTop1()"

    def score(self, inputs: ScoringInput) -> float:
        spec = inputs.backbone
        top1 = None if spec is None else spec.weights.imagenet_top1
        return math.nan if top1 is None else float(top1)
