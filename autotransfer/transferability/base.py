"""The estimator contract: score a frozen backbone on a labelled dataset, higher is better."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.backbones.spec import BackboneSpec


@dataclass(frozen=True)
class ScoringInput:
    """What an estimator sees for one (dataset, backbone) pair.

    ``features``: pooled pre-logit features, shape (N, D), float32, as the backbone
    produced them (not standardised: estimators that assume standardised features
    standardise themselves). ``labels``: int array (N,) with values 0..C-1.
    ``logits``: source-classifier logits (N, K) or None when the backbone has no head.
    """

    features: np.ndarray
    labels: np.ndarray
    logits: np.ndarray | None = None
    backbone: BackboneSpec | None = None
    seed: int = 0

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if self.labels.size else 0


@runtime_checkable
class Estimator(Protocol):
    """A transferability estimator.

    ``needs_logits``: only backbones with a source-classifier head can be scored.
    ``needs_features``: False for zero-cost estimators that use only the backbone spec.
    """

    name: str
    needs_logits: bool
    needs_features: bool

    def score(self, inputs: ScoringInput) -> float:
        """The score; higher means the backbone is expected to transfer better.

        NaN (or None) when the data cannot support a score (say, a kNN leave-one-out
        accuracy when every class has one image): the ranking then leaves this estimator
        out for that backbone instead of ranking a meaningless tie.
        """
