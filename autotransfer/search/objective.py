"""One trial: pick a backbone, a strategy and its hyperparameters; train; score; record.

The trial reports validation accuracy after every epoch (Optuna may prune it), is
scored on the validation split through the same preprocessing the final model uses,
and records its metrics, per-epoch history and details as Optuna user attributes, so a
resumed or parallel study sees everything that finished. Trackers hear of every step.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from autotransfer import plugins
from autotransfer.backbones.cuts import cuts_of
from autotransfer.backbones.extraction import extract_all
from autotransfer.backbones.features import concat_features
from autotransfer.backbones.spec import BackboneSpec
from autotransfer.data.sample import sample_parts, train_chunks
from autotransfer.data.types import ImageDataset
from autotransfer.errors import BudgetSpent
from autotransfer.metrics import classification_metrics
from autotransfer.model import Classifier, Preprocessing
from autotransfer.plugins import plugin_error
from autotransfer.search.budget import Budget, closing_reserve
from autotransfer.search.checkpoints import checkpoint_dir
from autotransfer.search.selection import PER_CLASS, worth_keeping
from autotransfer.search.study import FINISHED_VALUE, record_of, worker_id
from autotransfer.strategies.base import SearchContext, Strategy, TrainContext
from autotransfer.strategies.images import ImageCache
from autotransfer.tracking.base import RunContext, Tracker, TrialInfo

log = logging.getLogger(__name__)

MAX_TRACEBACK = 8000  # characters of a failed trial's traceback kept in the study
FEATURE_CHUNK = 2048  # training images per cached chunk of frozen features
# the share of a frozen-feature trial's time its training features may take; the rest is
# for the validation features and the head's fit
FEATURE_SHARE = 0.6
# ...and of the training time left, for the trial that grows the best head on a split larger
# than the ranking's sample: when reading the split's features takes more than this, a
# fine-tune (an epoch over it costs about three such reads, on any device) could not
# converge in what would be left, so the time goes to the head (benchmarks/scale.py)
GROW_SHARE = 0.85
# the most of the time budget the pick's final scoring on the whole validation split may take
FULL_VAL_SHARE = 0.1


class Prefixed:
    """An Optuna trial whose parameter names carry a prefix (``full_finetune.lr``), so that
    strategies can name their parameters freely without clashing."""

    def __init__(self, trial: optuna.Trial, prefix: str) -> None:
        self._trial, self._prefix = trial, prefix

    def suggest_float(self, name: str, *args: Any, **kwargs: Any) -> float:
        return self._trial.suggest_float(f"{self._prefix}.{name}", *args, **kwargs)

    def suggest_int(self, name: str, *args: Any, **kwargs: Any) -> int:
        return self._trial.suggest_int(f"{self._prefix}.{name}", *args, **kwargs)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._trial.suggest_categorical(f"{self._prefix}.{name}", choices)


def notify(trackers: Sequence[Tracker], method: str, *args: Any) -> None:
    """Call ``method`` on every tracker; a tracker that raises is logged, never fatal."""
    for tr in trackers:
        try:
            getattr(tr, method)(*args)
        except Exception:
            owner = plugins.registered("trackers").get(tr.name)
            log.error(
                "Tracker %r (plugin %r) failed in %s; the study goes on.\n%s",
                tr.name,
                owner.plugin if owner else "?",
                method,
                traceback.format_exc(),
            )


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
    completed: int = 0  # trials this process completed
    _features: dict[tuple[str, str], Any] = field(default_factory=dict)
    _chunks: list[ImageDataset] | None = None
    _first: int = 1  # of the chunks, those of the ranking's sample
    # seconds per image of scoring each backbone's models, measured in this process
    scoring_rates: dict[str, float] = field(default_factory=dict)

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
        import dataclasses

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

    def closing_reserve(self) -> float:
        """Seconds kept back from training for the scoring and saving that follow it
        (:func:`~autotransfer.search.budget.closing_reserve`), at the slowest rate of the
        shortlist. A backbone scored in this search has its measured rate; the others the
        ranking's forward pass, scaled as the measured ones compare with theirs: the
        ranking's seconds include loading the weights and starting the loader, which
        outweigh the images of a small split (the five of a one-shot set read as a fifth
        of a second each, ten times the real rate), and a cached ranking's seconds may
        come from another machine."""
        rate = self.scoring_rate()
        full_val = len(self.full_dataset.val) if self.rescore_full_val(rate) else 0
        return closing_reserve(rate, len(self.dataset.val), len(self.dataset.test), full_val)

    def scoring_rate(self) -> float:
        """Seconds per image of scoring a model of the shortlist, at the slowest rate."""
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
        return max(rates.values(), default=0.0)

    def rescore_full_val(self, rate: float | None = None) -> bool:
        """Whether the pick is scored on the whole validation split at the end (the search
        validated on a sample of it): when that costs at most
        :data:`FULL_VAL_SHARE` of the time budget (or there is no time budget)."""
        if self.full_dataset is None:
            return False
        if self.budget.seconds is None:
            return True
        rate = self.scoring_rate() if rate is None else rate
        return rate * len(self.full_dataset.val) <= FULL_VAL_SHARE * self.budget.seconds

    def training_left(self) -> float | None:
        """Seconds of the budget left for training (None: no limit); may be negative."""
        left = self.budget.left()
        return None if left is None else left - self.closing_reserve()


def objective(sr: SearchRun, trial: optuna.Trial) -> float:
    """Train one configuration and return its validation accuracy (the study maximises it).

    A strategy that raises fails its trial, not the study: the trial's ``error`` user
    attribute names the plugin and the hook, ``traceback`` holds the traceback, and the
    log says both. Ctrl-C during a trial (the second one; see the runner) fails it too,
    so trackers close it before the interrupt goes on.
    """
    backbone = trial.suggest_categorical("backbone", list(sr.specs))
    name = trial.suggest_categorical("strategy", list(sr.strategies))
    strategy = sr.strategies[name]
    trial.set_user_attr("worker", worker_id())
    try:
        params = strategy.suggest(Prefixed(trial, name), search=sr.search)
    except Exception as exc:
        _record_error(trial, plugin_error(name, "suggest", exc))
        raise
    info = TrialInfo(number=trial.number, backbone=backbone, strategy=name, params=dict(params))
    notify(sr.trackers, "trial_start", sr.run, info)
    log.info("trial %d: %s on %s %s", trial.number, name, backbone, params)
    history: list[dict[str, float]] = []
    prior = bool(trial.user_attrs.get("prior"))

    def report(epoch: int, metrics: Mapping[str, float]) -> None:
        m = {k: float(v) for k, v in metrics.items()}
        history.append(m)
        trial.set_user_attr("history", history)
        notify(sr.trackers, "epoch_end", sr.run, info, epoch, m)
        trial.report(m["val_accuracy"], epoch)
        # the priors run to the end of their schedule (or time limit): a slow-starting
        # recipe such as the BiT-HyperRule must not be judged by its first epochs
        if not prior and trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch}")

    start = time.monotonic()
    stage = "train"
    grow = bool(trial.user_attrs.get("grow"))
    try:
        model, outcome = train_model(
            sr, backbone, name, dict(params), trial.number, report, grow=grow
        )
        stage = "evaluate"
        metrics = _val_metrics(sr, backbone, model, outcome)
    except optuna.TrialPruned:
        _finish(sr, trial, info, "pruned", start, history)
        raise
    except KeyboardInterrupt:
        trial.set_user_attr("error", "interrupted (Ctrl-C)")
        _finish(sr, trial, info, "failed", start, history)
        raise
    except Exception as exc:
        if stage == "train":
            _record_error(trial, plugin_error(name, "train", exc))
        else:
            _record_error(trial, f"Evaluating the model failed: {type(exc).__name__}: {exc}")
        _finish(sr, trial, info, "failed", start, history)
        raise
    value = float(metrics["accuracy"])
    trial.set_user_attr("metrics", {k: float(v) for k, v in metrics.items()})
    trial.set_user_attr(
        "info", {**_jsonable(outcome.info), "train_val_accuracy": outcome.val_accuracy}
    )
    # the figure the selection reads back from the trial, so both decide alike
    per_class = round(len(sr.dataset.train) / max(1, len(sr.dataset.classes)), 2)
    trial.set_user_attr(PER_CLASS, per_class)
    if worth_keeping(trial.study, value, int(metrics.get("num_images", 0)), per_class):
        model.save(checkpoint_dir(sr.run_dir, trial.number))
    # the trial's work is done and saved: a process killed from here on leaves a trial
    # the next fit records complete with this value (see study.close_dead_trials)
    trial.set_user_attr(FINISHED_VALUE, value)
    sr.completed += 1
    _finish(sr, trial, info, "complete", start, history, value)
    return value


def _val_metrics(sr: SearchRun, backbone: str, model: Any, outcome: Any) -> dict[str, float]:
    """The trial's validation metrics: from the probabilities its training already computed
    (the frozen-feature head's, the loop's best evaluation), else from predicting the
    validation split through the model's preprocessing (and the scoring rate measured)."""

    y = [r.label for r in sr.dataset.val]
    proba = getattr(outcome, "val_proba", None)
    if proba is not None and len(proba) == len(y):
        metrics = classification_metrics(y, proba, len(sr.dataset.classes))
        metrics["num_images"] = len(y)
        return metrics
    scored = time.monotonic()
    metrics = model.evaluate(sr.dataset, split="val", device=str(sr.device))
    if y:
        sr.scoring_rates[backbone] = (time.monotonic() - scored) / len(y)
    return metrics


def train_model(
    sr: SearchRun,
    backbone: str,
    name: str,
    params: dict[str, Any],
    number: int,
    report: Any,
    *,
    deadline: float | None = None,
    grow: bool = False,
) -> tuple[Any, Any]:
    """Train trial ``number``'s configuration: the classifier and the strategy's outcome.

    The deadline is the budget's, less the time the scoring and saving after training
    take (:meth:`SearchRun.closing_reserve`), or the trial time limit from now when
    sooner (or ``deadline`` when given); the seed is the fit's plus the trial number, so
    the same trial trains the same way again. Frozen features of a training split larger
    than the ranking's sample: ``grow``, as much of it as :data:`GROW_SHARE` of the
    time left allows (the trial limit does not apply: this is the one trial that reads
    the split); else the sample and what earlier trials read.
    """

    if deadline is None:
        left = sr.training_left()
        deadline = None if left is None else time.monotonic() + left
        if sr.trial_limit is not None and not grow:
            own = time.monotonic() + sr.trial_limit
            deadline = own if deadline is None else min(deadline, own)
    ctx = TrainContext(
        dataset=sr.dataset,
        spec=sr.specs[backbone],
        params=dict(params),
        device=sr.device,
        seed=sr.seed + number,
        resolution=sr.resolution,
        batch_size=sr.batch_size,
        num_workers=sr.num_workers,
        augment=sr.augment,
        class_weights=sr.class_weights,
        deadline=deadline,
        report=report,
        features=lambda split: _features(sr, backbone, split, deadline, grow),
        images=sr.images,
        search=sr.search,
        log=log,
    )
    outcome = sr.strategies[name].train(ctx)
    model = Classifier(
        outcome.model,
        classes=sr.dataset.classes,
        preprocessing=Preprocessing(**outcome.preprocessing),
        arch=sr.specs[backbone].arch,
        metadata={
            "backbone": backbone,
            "backbone_spec": sr.specs[backbone].to_dict(),
            "strategy": name,
            "params": dict(params),
            "trial": number,
        },
    )
    return model, outcome


def _features(
    sr: SearchRun, backbone: str, split: str, deadline: float | None, grow: bool = False
) -> Any:
    """A trial's frozen features: the validation sample's first, then the training split.
    Under a time budget, where the split is larger than the ranking's sample, a ``grow``
    trial reads as much of it as :data:`GROW_SHARE` of the time left allows, the
    others the sample (and what earlier trials read); without one, all of it."""
    # a fit needs a model: the first trial's validation sample in full
    deadline_val = None if sr.completed == 0 else deadline
    if split != "train" or deadline is None:
        return sr.features(backbone, split, deadline_val if split == "val" else deadline)
    sr.features(backbone, "val", deadline_val)
    if not grow and sr.grows():
        return sr.features(backbone, "train", None, more=False)
    now = time.monotonic()
    share = GROW_SHARE if grow else FEATURE_SHARE
    return sr.features(backbone, "train", now + share * max(0.0, deadline - now))


def _record_error(trial: optuna.Trial, message: str) -> None:
    """The failure as user attributes (``error``, ``traceback``, and the traceback in
    ``info`` so that trackers see it) and in the log."""
    tb = traceback.format_exc()[-MAX_TRACEBACK:]
    trial.set_user_attr("error", message[:2000])
    trial.set_user_attr("traceback", tb)
    trial.set_user_attr("info", {"traceback": tb})
    log.warning("trial %d failed. %s\n%s", trial.number, message, tb.rstrip())


def _finish(
    sr: SearchRun,
    trial: optuna.Trial,
    info: TrialInfo,
    state: str,
    start: float,
    history: list[dict[str, float]],
    value: float | None = None,
) -> None:
    import dataclasses

    seconds = round(time.monotonic() - start, 2)
    trial.set_user_attr("seconds", seconds)
    frozen = trial.study._storage.get_trial(trial._trial_id)
    record = dataclasses.replace(
        record_of(frozen),
        state=state,
        val_accuracy=value,
        seconds=seconds,
        history=tuple(history),
    )
    notify(sr.trackers, "trial_end", sr.run, record)


def _jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, (bool, int, float, str)) or v is None:
            out[k] = v
        elif isinstance(v, np.generic):
            out[k] = v.item()
        else:
            out[k] = str(v)
    return out
