"""Registers the built-in strategies (the code lives in :mod:`autotransfer.strategies`)."""

from __future__ import annotations

from autotransfer.hookspecs import hookimpl
from autotransfer.strategies.base import Strategy
from autotransfer.strategies.discriminative_lr import DiscriminativeLR
from autotransfer.strategies.feature_extraction import FeatureExtraction
from autotransfer.strategies.fine_tune import FineTune
from autotransfer.strategies.from_scratch import FromScratch
from autotransfer.strategies.full_finetune import FullFinetune
from autotransfer.strategies.partial_freeze import PartialFreeze
from autotransfer.strategies.raw_pixels import RawPixels


@hookimpl
def autotransfer_register_strategies() -> list[Strategy]:
    """Feature extraction, partial freeze, full fine-tune (BiT-HyperRule), discriminative LRs,
    fastai's fine_tune (a warm head, one cycle), and the no-transfer baselines: raw pixels
    and a small network from scratch."""
    return [
        FeatureExtraction(),
        PartialFreeze(),
        FullFinetune(),
        DiscriminativeLR(),
        FineTune(),
        RawPixels(),
        FromScratch(),
    ]
