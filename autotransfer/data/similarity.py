"""How far a target dataset is from a backbone's pretraining source, from one forward pass.

Two views, both computed from a :class:`~autotransfer.backbones.feature_cache.FeatureSet`:

* the backbone's own source classifier on the target images: mean normalised
  entropy of its softmax (0 = always certain, 1 = uniform), mean top-1 confidence,
  and the mutual information between image and predicted source class (entropy of the
  mean prediction minus the mean entropy, normalised by log K). Images like the source
  get confident *and varied* predictions; a confident head that files every image
  under one class (upscaled 8x8 digits all become "crossword puzzle") has high
  confidence but mutual information near 0.
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
    from autotransfer.backbones.feature_cache import FeatureSet


@dataclass(frozen=True)
class SourceSimilarity:
    """Similarity of the target data to one backbone's source (None where not measurable)."""

    backbone: str
    head_entropy: float | None = None  # mean softmax entropy / log(K), in [0, 1]
    head_confidence: float | None = None  # mean top-1 softmax probability
    head_mutual_info: float | None = None  # I(image; source class) / log(K), in [0, 1]
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


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=-1)


def head_statistics(logits: np.ndarray) -> tuple[float, float, float]:
    """Mean normalised entropy, mean top-1 probability and normalised mutual information
    between image and predicted class, of the source head's softmax.

    >>> head_statistics(np.array([[0.0, 0.0], [0.0, 0.0]]))
    (1.0, 0.5, 0.0)
    """
    p = softmax(logits.astype(np.float64))
    log_k = float(np.log(p.shape[1]))
    mean_entropy = float(_entropy(p).mean())
    mutual_info = max(0.0, float(_entropy(p.mean(axis=0))) - mean_entropy)
    return (
        round(mean_entropy / log_k, 6),
        round(float(p.max(axis=1).mean()), 6),
        round(mutual_info / log_k, 6),
    )


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
    entropy = confidence = mutual_info = bn_kl = None
    if fs.logits is not None and fs.logits.shape[1] > 1:
        entropy, confidence, mutual_info = head_statistics(fs.logits)
    if fs.target_bn is not None and fs.source_bn is not None:
        bn_kl = round(gaussian_kl(*fs.target_bn, *fs.source_bn), 6)
    return SourceSimilarity(
        backbone=backbone,
        head_entropy=entropy,
        head_confidence=confidence,
        head_mutual_info=mutual_info,
        bn_kl=bn_kl,
        images=len(fs),
    )
