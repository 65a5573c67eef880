"""How far a target dataset is from a backbone's pretraining source, from one forward pass.

Two views, both computed from a :class:`~autotransfer.backbones.features.FeatureSet`:

* the backbone's own source classifier on the target images: mean normalised
  entropy of its softmax (0 = always certain, 1 = uniform) and mean top-1
  confidence. Images like the source get confident, low-entropy predictions.
* embedding statistics: the channels entering the backbone's last BatchNorm layer
  have running mean and variance estimated on the source data. We measure the same
  per-channel mean and variance on the target images and report the mean over
  channels of KL(target || source) between the two Gaussians (0 = same statistics).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.backbones.features import FeatureSet


@dataclass(frozen=True)
class SourceSimilarity:
    """Similarity of the target data to one backbone's source (None where not measurable)."""

    backbone: str
    head_entropy: float | None = None  # mean softmax entropy / log(K), in [0, 1]
    head_confidence: float | None = None  # mean top-1 softmax probability
    bn_kl: float | None = None  # mean per-channel KL(target || source) at the last BatchNorm
    images: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SourceSimilarity:
        return cls(**d)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def head_statistics(logits: np.ndarray) -> tuple[float, float]:
    """Mean normalised entropy and mean top-1 probability of the source head's softmax.

    >>> head_statistics(np.array([[0.0, 0.0], [0.0, 0.0]]))
    (1.0, 0.5)
    """
    p = softmax(logits.astype(np.float64))
    ent = -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=1) / np.log(p.shape[1])
    return round(float(ent.mean()), 6), round(float(p.max(axis=1).mean()), 6)


def gaussian_kl(
    mean_t: np.ndarray, var_t: np.ndarray, mean_s: np.ndarray, var_s: np.ndarray, eps: float = 1e-5
) -> float:
    """Mean over channels of KL(N(mean_t, var_t) || N(mean_s, var_s)), in nats.

    >>> gaussian_kl(np.zeros(3), np.ones(3), np.zeros(3), np.ones(3))
    0.0
    """
    vt = np.asarray(var_t, np.float64) + eps
    vs = np.asarray(var_s, np.float64) + eps
    d = np.asarray(mean_t, np.float64) - np.asarray(mean_s, np.float64)
    kl = 0.5 * (vt / vs + d * d / vs - 1.0 + np.log(vs / vt))
    return float(kl.mean())


def source_similarity(backbone: str, fs: FeatureSet) -> SourceSimilarity:
    """Both similarity views for one backbone's features of the target data."""
    entropy = confidence = bn_kl = None
    if fs.logits is not None and fs.logits.shape[1] > 1:
        entropy, confidence = head_statistics(fs.logits)
    if fs.target_bn is not None and fs.source_bn is not None:
        bn_kl = round(gaussian_kl(*fs.target_bn, *fs.source_bn), 6)
    return SourceSimilarity(
        backbone=backbone,
        head_entropy=entropy,
        head_confidence=confidence,
        bn_kl=bn_kl,
        images=len(fs),
    )
