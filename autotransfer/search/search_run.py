"""What the trials of one process share (:class:`SearchRun`): the data, the shortlist and
strategies, the budget, the frozen features read so far and the scoring rates measured."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autotransfer.backbones.cuts import cuts_of
from autotransfer.backbones.extraction import extract_all
from autotransfer.backbones.feature_cache import concat_features
from autotransfer.backbones.spec import BackboneSpec
from autotransfer.data.sample import sample_parts, train_chunks
from autotransfer.data.types import ImageDataset
from autotransfer.errors import BudgetSpent
from autotransfer.search.budget import Budget, closing_reserve
from autotransfer.strategies.base import SearchContext, Strategy
from autotransfer.strategies.images import ImageCache
from autotransfer.tracking.base import RunContext, Tracker

log = logging.getLogger(__name__)

FEATURE_CHUNK = 2048  # training images per cached chunk of frozen features
# the most of the time budget the pick's final scoring on the whole validation split may take
FULL_VAL_SHARE = 0.1
# the most of the time budget kept back from the search for the refit and flip TTA. A
# trial may take 40 % (trial_time_limit), so its refit x REFIT_MARGIN up to 48 %. At 0.2,
# 13 of the 60 fits of benchmarks/last_mile.py at 120 s gave up a refit that needed 20-47 %
# of the budget, and in each the trials that ran on after the pick were all pruned:
# benchmarks/results/last_mile_constants_cpu.md
LAST_MILE_SHARE = 0.4
# the refit's predicted seconds are the pick's measured training seconds times this (the
# validation images to decode, a margin for a slower moment; the steps are the same)
REFIT_MARGIN = 1.2
# a training step's seconds per image over a forward pass's (the backward pass about twice
# the forward): the pace the plan's priors are made with before a step is measured
TRAIN_OVER_SCORING = 3.0


@dataclass
class SearchRun:
    """Everything the trials of one process share."""

    dataset: ImageDataset
    specs: dict[str, BackboneSpec]  # the shortlist, by id
    strategies: dict[str, Strategy]
    search: SearchContext
    run: RunContext
    trackers: Sequence[Tracker]
    budget: Budget
    trial_limit: float | None
    device: torch.device
    seed: int
    resolution: int
    batch_size: int
    num_workers: int
    augment: str
    class_weights: np.ndarray | None
    images: ImageCache
    feature_settings: Any  # ExtractionSettings for the frozen features
    # the whole dataset, for the pick's final scoring (``dataset``'s validation split is the
    # search's bounded sample of it); None: ``dataset`` is whole
    full_dataset: ImageDataset | None = None
    # the ranking's sample (size, per class, pilot; see data.sample.sample_parts): the
    # first chunks of the training features
    rank_sample: tuple[int | None, int | None, int] = (None, None, 0)
    # where the kept trial models also go, for a pick trained on another machine
    # (search.checkpoints.CheckpointStore; None: the run folder only)
    checkpoints: Any = None
    completed: int = 0  # trials this process completed
    ensemble: bool = True  # FitSettings.ensemble: an ensemble of the trials may be the pick
    refit: bool = True  # FitSettings.refit: the pick is retrained on train + validation
    flip_tta: str = "auto"  # FitSettings.flip_tta
    # training seconds of the best trial this process completed: its refit's cost
    pick_seconds: float = 0.0
    # after the search: seconds per image of scoring the model the fit serves (its
    # members, its mirror images; see search.finish.serving_rate); None during it
    pick_rate: float | None = None
    _features: dict[tuple[str, str], Any] = field(default_factory=dict)
    _chunks: list[ImageDataset] | None = None
    _first: int = 1  # of the chunks, those of the ranking's sample
    # seconds per image of scoring each backbone's models, measured in this process
    scoring_rates: dict[str, float] = field(default_factory=dict)
    # seconds per training step of each (backbone, strategy), measured in this process
    step_seconds: dict[tuple[str, str], float] = field(default_factory=dict)

    def features(
        self, backbone: str, split: str, deadline: float | None = None, *, more: bool = True
    ) -> Any:
        """Frozen features of ``split`` under a shortlisted backbone; a whole network's
        shortlisted cuts come from the same pass (kept for their own trials).

        The training split is read in chunks (:func:`~autotransfer.data.sample.
        train_chunks`: the ranking's sample first, its features cached, then the other
        images in a stratified order), each cached, until ``deadline``: a trial gets the
        largest stratified part of the split that its time allows, and the next trial on
        the backbone starts from the chunks already read. ``more=False``: the ranking's
        sample and the chunks already read, no more."""
        key = (backbone, split)
        if split == "train":
            return self._train_features(backbone, deadline, more)
        if key not in self._features:
            got = self._extract(backbone, self.dataset, split, deadline)
            for sid, fs in got.items():
                self._features[(sid, split)] = fs
            fs = got[backbone]
            if not fs.from_cache and len(fs) and split == "val":  # a forward pass measured
                self.scoring_rates.setdefault(backbone, fs.seconds / len(fs))
        return self._features[key]

    def _extract(self, backbone: str, dataset: ImageDataset, split: str, deadline) -> Any:
        spec = self.specs[backbone]
        same_pass = [spec, *cuts_of(spec, self.specs.values())]
        return extract_all(
            dataset,
            same_pass,
            self.feature_settings,
            split=split,
            progress=False,
            deadline=deadline,
        )

    def grows(self) -> bool:
        """Whether the training split is larger than the ranking's sample: the frozen-
        feature heads are then first compared on the sample, and the best one reads more
        of the split (see :func:`~autotransfer.search.runner.grow_the_best`)."""
        return len(self._train_chunks()) > self._first

    def _train_chunks(self) -> list[ImageDataset]:
        if self._chunks is None:
            size, per_class, pilot = self.rank_sample
            first = sample_parts(self.dataset, size, per_class, self.seed, pilot)
            self._chunks = train_chunks(self.dataset, first, FEATURE_CHUNK, self.seed)
            self._first = len(first)
        return self._chunks

    def _train_features(self, backbone: str, deadline: float | None, more: bool = True) -> Any:
        chunks = self._train_chunks()
        have = self._features.get((backbone, "train"))
        done = have.meta.get("chunks", 0) if have is not None else 0
        if done == len(chunks) or (not more and done >= self._first):
            return have
        parts = [have] if have is not None else []
        for chunk in chunks[done : None if more else self._first]:
            # the ranking's (cached) sample whatever the time: a model needs features
            limit = None if done < self._first else deadline
            try:
                got = self._extract(backbone, chunk, "train", limit)
            except BudgetSpent:
                break
            parts.append(got[backbone])
            done += 1
        whole = concat_features(parts)
        whole = dataclasses.replace(whole, meta={**whole.meta, "chunks": done})
        self._features[(backbone, "train")] = whole
        if done < len(chunks):
            log.info(
                "%s: features of %d of the %d training images (a stratified part) within "
                "the trial's time",
                backbone,
                len(whole),
                len(self.dataset.train),
            )
        return whole

    @property
    def run_dir(self) -> Path:
        return self.run.run_dir

    def last_mile_reserve(self) -> float:
        """Seconds kept back for the last mile (:mod:`autotransfer.search.finish`): the
        best trial's refit at its measured pace (x ``REFIT_MARGIN``), when that fits in
        :data:`LAST_MILE_SHARE` of the time budget (a refit that does not is left to what
        the search leaves: the time it cannot use goes to trials), and, for flip TTA, the
        pick predicting the mirrored validation images (to measure it) and the mirrored test
        images (served with it); none without a time budget."""
        if self.budget.seconds is None:
            return 0.0
        cap = LAST_MILE_SHARE * self.budget.seconds
        refit = REFIT_MARGIN * self.pick_seconds if self.refit else 0.0
        need = refit if refit <= cap else 0.0
        if self.flip_tta == "auto" and self.augment == "crop_flip":
            need += self.scoring_rate() * (len(self.dataset.val) + len(self.dataset.test))
        return min(need, cap)

    def closing_reserve(self) -> float:
        """Seconds kept back from training for the scoring and saving that follow it
        (:func:`~autotransfer.search.budget.closing_reserve`), at :meth:`closing_rate`."""
        rate = self.closing_rate()
        full_val = len(self.full_dataset.val) if self.rescore_full_val(rate) else 0
        return closing_reserve(rate, len(self.dataset.val), len(self.dataset.test), full_val)

    def closing_rate(self) -> float:
        """Seconds per image of the final scoring: the served model's own
        (:attr:`pick_rate`) once the search is over; during it the slowest of the
        shortlist (:meth:`scoring_rate`), as any trial may turn out the pick."""
        return self.scoring_rate() if self.pick_rate is None else self.pick_rate

    def scoring_rate(self) -> float:
        """Seconds per image of scoring a model of the shortlist, at the slowest rate."""
        return max(self.backbone_rates().values(), default=0.0)

    def backbone_rates(self) -> dict[str, float]:
        """Seconds per image of scoring each shortlisted backbone's models. A backbone
        scored in this search has its measured rate; the others the ranking's forward
        pass, scaled as the measured ones compare with theirs: the ranking's seconds
        include loading the weights and starting the loader, which outweigh the images of
        a small split (the five of a one-shot set read as a fifth of a second each, ten
        times the real rate), and a cached ranking's seconds may come from another
        machine."""
        ranked = {}
        if self.run.ranking is not None:
            ranked = {
                r.backbone: r.extract_seconds / r.images
                for r in self.run.ranking.rows
                if r.images and r.extract_seconds > 0 and r.backbone in self.specs
            }
        measured = dict(self.scoring_rates)
        ratios = [measured[b] / ranked[b] for b in measured if b in ranked]
        scale = float(np.median(ratios)) if ratios else 1.0
        rates = {b: rate * scale for b, rate in ranked.items()}
        rates.update(measured)
        return rates

    def rescore_full_val(self, rate: float | None = None) -> bool:
        """Whether the pick is scored on the whole validation split at the end (the search
        validated on a sample of it): when that costs at most
        :data:`FULL_VAL_SHARE` of the time budget (or there is no time budget)."""
        if self.full_dataset is None:
            return False
        if self.budget.seconds is None:
            return True
        rate = self.closing_rate() if rate is None else rate
        return rate * len(self.full_dataset.val) <= FULL_VAL_SHARE * self.budget.seconds

    def prior_search(self) -> SearchContext:
        """The search context the plan's priors are made with now: ``step_seconds``
        estimated from the shortlist's scoring rate (x :data:`TRAIN_OVER_SCORING` x the
        batch), ``trial_seconds`` the training time a trial has (the trial limit, or what
        is left when less)."""
        rate = self.scoring_rate()
        step = TRAIN_OVER_SCORING * rate * self.batch_size if rate > 0 else None
        left, limit = self.training_left(), self.trial_limit
        trial = limit if left is None else left if limit is None else min(left, limit)
        return dataclasses.replace(self.search, step_seconds=step, trial_seconds=trial)

    def training_left(self, last_mile: bool = True) -> float | None:
        """Seconds of the budget left for training (None: no limit); may be negative.
        ``last_mile``: less the :meth:`last_mile_reserve` (the search's trials), else not
        (the last mile's own work)."""
        left = self.budget.left()
        if left is None:
            return None
        return left - self.closing_reserve() - (self.last_mile_reserve() if last_mile else 0.0)
