"""What a strategy is: a name, an Optuna search space, a prior configuration and a way to train.

Strategies differ in what they freeze, which parameter groups get which learning rate
and their search spaces; they all train through the one loop in
:mod:`autotransfer.strategies.loop` (or, for frozen features, a linear model). A
strategy reports validation accuracy after every epoch through ``ctx.report``, which
raises :class:`optuna.TrialPruned` when the trial should stop.

A plugin adds one with::

    @autotransfer.hookimpl
    def autotransfer_register_strategies():
        return [MyStrategy()]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import optuna
    import torch

    from autotransfer.backbones.feature_cache import FeatureSet
    from autotransfer.backbones.spec import BackboneSpec
    from autotransfer.data.descriptors import DatasetDescriptor
    from autotransfer.data.types import ImageDataset
    from autotransfer.strategies.images import ImageCache


@dataclass(frozen=True)
class SearchContext:
    """What a strategy may look at when it proposes hyperparameters (no training yet)."""

    num_train: int
    num_classes: int
    median_side: float  # median shorter image side of the data, pixels
    similarity: float | None  # 0 (far from the source) .. 1 (close); None when unknown
    device: str  # "cpu" or "cuda"
    batch_size: int  # the training batch size the fit will start with
    descriptor: DatasetDescriptor | None = None
    # seconds a training step of the top backbone is estimated to take (all its weights
    # trained), and a trial's time, when the search plans its priors (None: unknown)
    step_seconds: float | None = None
    trial_seconds: float | None = None


@dataclass
class TrainContext:
    """Everything one trial's training gets. ``params`` are this strategy's hyperparameters.

    ``report(epoch, metrics)`` must be called after each epoch with at least
    ``val_accuracy``; it raises :class:`optuna.TrialPruned` when the trial is pruned.
    ``deadline`` is a :func:`time.monotonic` time by which ``train`` must return (None:
    no limit); the loop shortens its schedule to fit. ``features(split)`` gives cached
    frozen features of the backbone at its own resolution; ``images`` serves decoded
    images for training at ``resolution``. ``skip_doomed``: the training loop raises
    :class:`~autotransfer.errors.TooFewSteps` rather than train a schedule the deadline
    compresses past use (the search sets it once the study has a model).
    """

    dataset: ImageDataset
    spec: BackboneSpec
    params: dict[str, Any]
    device: torch.device
    seed: int
    resolution: int
    batch_size: int
    num_workers: int
    augment: str  # "crop_flip", "crop" or "none"
    class_weights: np.ndarray | None
    deadline: float | None
    report: Callable[[int, Mapping[str, float]], None]
    features: Callable[[str], FeatureSet]
    images: ImageCache
    search: SearchContext
    skip_doomed: bool = False
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("autotransfer.trial"))


@dataclass
class TrainOutcome:
    """What ``Strategy.train`` returns: a timm model whose classifier outputs the classes.

    ``model`` is on any device, in any mode; ``preprocessing`` says how to feed it
    (resolution, mean, std, crop_pct, interpolation: the keys of
    :class:`autotransfer.model.Preprocessing`). ``val_accuracy`` is the selection
    score; ``history`` one dict of metrics per epoch; ``info`` anything worth recording
    (epochs run, whether the deadline cut it short, batch size used). ``val_proba``
    (N, classes), when given, are the returned model's class probabilities on
    ``ctx.dataset``'s validation split, in its order, computed from the pixels or
    features the model's own preprocessing gives: the search scores the trial from them
    instead of predicting the split again. ``arch`` and ``model_kwargs`` name the timm
    architecture that rebuilds ``model`` when it is not the trial's backbone (a model
    trained from scratch, the raw-pixel model).
    """

    model: torch.nn.Module
    preprocessing: dict[str, Any]
    val_accuracy: float
    history: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    val_proba: np.ndarray | None = None
    arch: str | None = None
    model_kwargs: dict[str, Any] | None = None


@runtime_checkable
class Strategy(Protocol):
    """A way to adapt a pretrained backbone to the data.

    ``relative_cost`` orders strategies when nothing else does (cheapest first: frozen
    features about 0.05, full fine-tuning 1.0). ``suggest`` declares the search space
    through ``space`` (an Optuna trial whose parameter names are prefixed with the
    strategy's name); ``defaults`` is the prior configuration, enqueued as the
    strategy's first trial; ``train`` trains and returns a :class:`TrainOutcome`.
    """

    name: str
    description: str
    relative_cost: float

    def suggest(self, space: optuna.Trial, *, search: SearchContext) -> dict[str, Any]: ...

    def defaults(self, *, search: SearchContext) -> dict[str, Any]: ...

    def train(self, ctx: TrainContext) -> TrainOutcome: ...


def converges_quickly(strategy: Any) -> bool:
    """Whether ``strategy`` is a fine-tuning recipe meant to converge in few steps (its
    ``quick`` attribute): the first fine-tune where the budget is short."""
    return bool(getattr(strategy, "quick", False))


def transfers(strategy: Any) -> bool:
    """Whether a strategy starts from the pretrained backbone (the default). One that
    does not (raw pixels, a network trained from scratch) sets ``transfers = False``: it
    is the baseline of the transfer verdict, and runs once however many backbones
    are shortlisted.

    >>> from autotransfer.strategies.raw_pixels import RawPixels
    >>> transfers(RawPixels()), transfers(object())
    (False, True)
    """
    return bool(getattr(strategy, "transfers", True))
