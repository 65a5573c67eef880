"""Architecture families of candidate backbones.

Scaled variants of one network (EfficientNet-Lite0, -Lite1, -Lite2) form a family: their
features are alike, so the ranking's estimates err alike for them, and they fine-tune
alike. A shortlist of one family stakes the whole search on one guess; the ranking adds
the best whole network of another family to it (``Ranking.shortlist``), and the study's
priors fine-tune it too (:func:`autotransfer.search.plan.prior_trials`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_PREFIX = re.compile(r"^(?:tf|test|legacy)_")  # timm's port / test / legacy name prefixes
_WORD = re.compile(r"[a-z]+(?:(?<=v)\d+)?")  # "resnet" (of resnet50), "mobilenetv2", "vit"


def family(backbone: str) -> str:
    """The family of a candidate id or timm name: the architecture name's leading word
    (a version suffix such as ``v2`` kept), without source, weights tag or cut.

    >>> family("package:efficientnet_lite0@3"), family("timm:resnet50.a1_in1k")
    ('efficientnet', 'resnet')
    >>> family("mobilenetv2_100"), family("random:test_vit"), family("tf_efficientnet_b0")
    ('mobilenetv2', 'vit', 'efficientnet')
    """
    arch = backbone.split(":", 1)[-1].split("@", 1)[0].split(".", 1)[0].lower()
    arch = _PREFIX.sub("", arch)
    word = _WORD.match(arch)
    return word.group(0) if word else arch


def other_family(ranked: Sequence[str]) -> str | None:
    """The first whole (not cut) network in ``ranked`` of another family than
    ``ranked[0]``, or None when there is none.

    >>> other_family(["p:efficientnet_lite2", "p:efficientnet_lite0", "p:mobilenetv2_100@3",
    ...               "p:mobilenetv2_100"])
    'p:mobilenetv2_100'
    """
    if not ranked:
        return None
    top = family(ranked[0])
    return next((b for b in ranked[1:] if "@" not in b and family(b) != top), None)
