"""The last mile, after the search: an ensemble of its trials, and the pick refit on all the
labelled data.

**Ensemble.** From the validation probabilities each trial kept when it finished
(:mod:`autotransfer.search.val_probas`), Caruana's greedy selection with replacement
chooses a weighted ensemble of the best :data:`~autotransfer.search.selection.ENSEMBLE_POOL`
trials whose models were kept (:mod:`autotransfer.search.ensemble`); it replaces the pick
only when it beats the best trial by more than one standard error, judged out of fold.
Nothing is predicted again: it costs seconds.

**Refit.** VTAB tunes on 800 images and 200 and then trains on all 1,000; AutoGluon has
``refit_full``. The pick's configuration trains again, same seed, on the training and
validation images together: a frozen-feature head in seconds (the validation features
are cached), a trained network for the number of steps at which it was selected. It is
done only when the time left allows it by the pick's own measured pace, and kept only when
the deadline left it 90 % of its steps; otherwise the search's weights stay, and the result
says why. An ensemble's members keep the search's weights. The selection and the validation
metrics stay those of the search: the validation images are training images after it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from PIL import ImageOps

from autotransfer.backbones.feature_cache import concat_features
from autotransfer.backbones.inputs import resize_side
from autotransfer.data.images import load_image
from autotransfer.data.sample import with_split
from autotransfer.metrics import classification_metrics, paired_difference
from autotransfer.model import Classifier
from autotransfer.model_files import CONFIG_FILE, ModelFileError
from autotransfer.search.checkpoints import checkpoint_dir
from autotransfer.search.ensemble import EnsembleChoice, choose_ensemble, ensemble_classifier
from autotransfer.search.objective import train_model
from autotransfer.search.search_run import REFIT_MARGIN, SearchRun
from autotransfer.search.selection import ENSEMBLE_POOL
from autotransfer.search.study import record_of
from autotransfer.search.val_probas import load_val_probas
from autotransfer.strategies.base import transfers
from autotransfer.strategies.images import ImageCache

log = logging.getLogger(__name__)

FLIP_BATCH = 256  # validation images read and mirrored at a time
FIRST_FLIPS = 32  # ...the first time: their pace says whether the rest fits in the time
REFIT_MIN_STEPS = 0.9  # a refit the deadline compressed to fewer of its steps is dropped
WARM_IMAGES, RATE_IMAGES = 8, 64  # a pick's scoring rate: images to warm up, images timed

COMPLETE = optuna.trial.TrialState.COMPLETE


@dataclass
class Served:
    """What the fit serves, before the refit: the pick's (or the kept ensemble's) model,
    its validation probabilities and metrics, and the ensemble selection, if any."""

    model: Classifier
    proba: np.ndarray | None
    metrics: dict[str, float]
    choice: EnsembleChoice | None = None

    @property
    def is_ensemble(self) -> bool:
        return self.choice is not None and self.choice.kept


def served_model(
    study: optuna.Study, sr: SearchRun, trial: optuna.trial.FrozenTrial, model: Classifier
) -> Served:
    """The search's pick ``trial`` (``model``), or the ensemble of the best kept trials
    when one is chosen and kept (:func:`ensemble_of_study`)."""
    labels = [r.label for r in sr.dataset.val]
    proba = load_val_probas(sr.run_dir, [trial.number], n=len(labels)).get(trial.number)
    single = Served(model, proba, dict(trial.user_attrs.get("metrics", {})))
    if not sr.ensemble:
        return single
    choice, ensemble, metrics, mix, rate = ensemble_of_study(study, sr)
    if ensemble is None:
        single.choice = choice
        return single
    # each member scores the test split: the time left must hold the others too
    extra = (rate - sr.closing_rate()) * len(sr.dataset.test)
    left = sr.training_left(last_mile=False)
    if left is not None and extra > left:
        why = (
            f"{choice.reason}; but not served: its {len(choice.weights)} members would take "
            f"about {extra:.0f} s more to score the test split, and {max(0.0, left):.0f} s are left"
        )
        log.info("%s.", why)
        single.choice = dataclasses.replace(choice, kept=False, reason=why)
        return single
    sr.pick_rate = rate
    return Served(ensemble, mix, metrics, choice)


def ensemble_of_study(study: optuna.Study, sr: SearchRun) -> tuple[Any, ...]:
    """The ensemble selection of the study's best kept trials: ``(choice, classifier,
    validation metrics, validation probabilities, seconds per image of scoring)``; all but
    the choice only when it is kept. All None when fewer than two trials have both their
    probabilities and their model here."""
    labels = np.array([r.label for r in sr.dataset.val])
    done = sorted(
        (t for t in study.get_trials(deepcopy=False) if t.state == COMPLETE and t.value),
        key=lambda t: (-t.value, t.number),
    )
    kept = [t.number for t in done if _has_model(sr, t.number)]
    probas = load_val_probas(sr.run_dir, kept[:ENSEMBLE_POOL], n=len(labels))
    if len(probas) < 2 or not len(labels):
        return None, None, None, None, None
    choice = choose_ensemble(probas, labels)
    if choice is None or not choice.kept:
        return choice, None, None, None, None
    try:
        members = [Classifier.load(checkpoint_dir(sr.run_dir, t)) for t in choice.weights]
    except ModelFileError as exc:
        log.warning("The ensemble is not served: a member's model could not be read (%s).", exc)
        return choice, None, None, None, None
    trial = {t.number: t for t in done}
    rate = sum(serving_rate(sr, trial[t], m) for t, m in zip(choice.weights, members))
    mix = sum(probas[t] * w for t, w in choice.weights.items())
    metrics: dict[str, float] = classification_metrics(labels, mix, len(sr.dataset.classes))
    metrics["num_images"] = len(labels)
    model = ensemble_classifier(
        members,
        list(choice.weights.values()),
        metadata={
            "strategy": "ensemble",
            "members": [
                {"trial": t, "weight": w, **m.metadata}
                for (t, w), m in zip(choice.weights.items(), members)
            ],
        },
    )
    return choice, model, metrics, mix, rate


def serving_rate(sr: SearchRun, trial: optuna.trial.FrozenTrial, model: Classifier) -> float:
    """Seconds per image of scoring ``trial``'s ``model``: the rate the search measured
    (or estimated) for its backbone when it transfers (the backbone and a head); else
    timed now on up to :data:`RATE_IMAGES` validation images, after a few to warm up (a
    network trained from scratch, a raw-pixel model: small, their probabilities came from
    training, so no scoring of theirs was timed). The slowest of the shortlist when there
    is nothing to time it on; 0 without a time budget (nothing is priced)."""
    if sr.budget.seconds is None:
        return 0.0
    record = record_of(trial)
    strategy = sr.strategies.get(record.strategy)
    rates = sr.backbone_rates()
    if (strategy is None or transfers(strategy)) and record.backbone in rates:
        return rates[record.backbone]
    paths = [r.path for r in sr.dataset.val[: WARM_IMAGES + RATE_IMAGES]]
    if not paths:
        return sr.scoring_rate()
    warm = min(WARM_IMAGES, len(paths) // 2)
    if warm:
        model.predict_proba(paths[:warm], device=str(sr.device))
    start = time.monotonic()
    model.predict_proba(paths[warm:], device=str(sr.device))
    return (time.monotonic() - start) / (len(paths) - warm)


def decide_flip(sr: SearchRun, model: Classifier, proba: np.ndarray | None) -> dict[str, Any]:
    """Whether the pick serves with flip test-time augmentation (``on``, with ``why`` and,
    when measured, ``difference`` and ``se``). ``auto``: the pick predicts the validation
    images mirrored, once (when the time left allows); averaged with its recorded
    probabilities ``proba``, it must beat them by more than one paired standard error.
    Never where the fit's augmentation forbids flips (their label may change)."""
    if sr.flip_tta == "off":
        return {"on": False, "why": "flip TTA is off (flip_tta='off')"}
    if sr.augment != "crop_flip":
        why = f"mirror images may change the label (augment={sr.augment!r})"
        return {"on": False, "why": why}
    if sr.flip_tta == "on":
        return {"on": True, "why": "flip TTA is on (flip_tta='on')"}
    labels = np.array([r.label for r in sr.dataset.val])
    if proba is None or len(proba) != len(labels) or not len(labels):
        return {"on": False, "why": "not measured: the pick's validation probabilities are lost"}
    left = sr.training_left(last_mile=False)
    if left is not None:  # served, the mirror images double the test split's scoring too
        left -= sr.closing_rate() * len(sr.dataset.test)
    flipped = None if left is not None and left <= 0 else _mirrored_proba(sr, model, left)
    if flipped is None:
        spare = max(0.0, left or 0.0)
        why = f"not measured: mirroring the validation images would outlast the {spare:.0f} s left"
        return {"on": False, "why": why}
    both = (np.asarray(proba, dtype=np.float32) + flipped) / 2
    difference, se = paired_difference(both.argmax(1) == labels, proba.argmax(1) == labels)
    on = difference > se
    verb = "wins" if on else "does not win"
    why = f"flip TTA {verb} on validation: {100 * difference:+.1f} points (SE {100 * se:.1f})"
    log.info("%s.", why)
    return {"on": bool(on), "why": why, "difference": float(difference), "se": float(se)}


def _mirrored_proba(sr: SearchRun, model: Classifier, left: float | None) -> np.ndarray | None:
    """The model's probabilities of the validation images mirrored left to right; None
    as soon as the pace of the first ones says the rest would outlast ``left`` seconds."""
    draft = resize_side(model.preprocessing.timm_config())  # decoded as predict decodes
    val, parts, start, i = sr.dataset.val, [], time.monotonic(), 0
    while i < len(val):
        size = FIRST_FLIPS if i == 0 else FLIP_BATCH
        images = [ImageOps.mirror(load_image(r.path, draft=draft)) for r in val[i : i + size]]
        parts.append(model.predict_proba(images, device=str(sr.device)))
        i += len(images)
        pace = (time.monotonic() - start) / i
        if left is not None and pace * len(val) > left and i < len(val):
            return None
    return np.concatenate(parts)


def with_flip(model: Classifier) -> Classifier:
    """``model`` serving each image and its mirror image averaged, as one classifier."""
    return ensemble_classifier(
        [model], [1.0], metadata={**model.metadata, "flip_tta": True}, flip=True
    )


def _has_model(sr: SearchRun, number: int) -> bool:
    return (checkpoint_dir(sr.run_dir, number) / CONFIG_FILE).exists()


def refit_pick(
    sr: SearchRun, trial: optuna.trial.FrozenTrial, model: Classifier
) -> tuple[Classifier, dict[str, Any]]:
    """The pick trained again on train + validation, or ``model`` when the refit is off,
    cannot fit in the time left, or was cut short; with a record of what happened
    (``done``, ``why``, ``images``, ``seconds``)."""
    if not sr.refit:
        return model, {"done": False, "why": "refit is off (refit=False)"}
    if not sr.dataset.val:
        return model, {"done": False, "why": "there are no validation images to add"}
    record = record_of(trial)
    info = dict(trial.user_attrs.get("info") or {})
    params = dict(record.params)
    if "steps" in params and info.get("best_step"):  # the step count it was selected at
        params["steps"] = int(info["best_step"])
    pace = float(info.get("train_seconds") or record.seconds or 0.0)
    if info.get("steps_run") and "steps" in params:
        pace *= params["steps"] / max(1, int(info["steps_run"]))
    need = REFIT_MARGIN * pace
    left = sr.training_left(last_mile=False)
    if left is not None and need > left:
        why = (
            f"the refit would take about {need:.0f} s and {max(0.0, left):.0f} s of the budget "
            "are left: the search's weights are kept"
        )
        log.info("No refit: %s.", why)
        return model, {"done": False, "why": why}
    data = with_split(sr.dataset, "train", [*sr.dataset.train, *sr.dataset.val])
    images = ImageCache(
        data, device=sr.device, memory_cap=sr.images.memory_cap, jpeg_decode=sr.images.jpeg_decode
    )

    def features(split: str) -> Any:  # the cached features: what the pick read, and val
        val = sr.features(record.backbone, "val")
        if split != "train":
            return val
        return concat_features([sr.features(record.backbone, "train", None, more=False), val])

    start = time.monotonic()
    deadline = None if left is None else start + left
    log.info(
        "Refitting the pick (trial %d, %s) on %d training and validation images.",
        trial.number,
        record.strategy,
        len(data.train),
    )
    try:
        refit, outcome = train_model(
            sr,
            record.backbone,
            record.strategy,
            params,
            trial.number,
            lambda epoch, metrics: None,
            deadline=deadline,
            grow=bool(trial.user_attrs.get("grow")),
            dataset=data,
            images=images,
            features=features,
        )
    except Exception as exc:  # the search's model stands
        log.warning(
            "The refit failed (%s: %s); the search's weights are kept.", type(exc).__name__, exc
        )
        return model, {"done": False, "why": f"the refit failed: {type(exc).__name__}: {exc}"}
    finally:
        images.close()
    seconds = round(time.monotonic() - start, 2)
    planned, ran = outcome.info.get("steps_planned"), outcome.info.get("steps_run")
    if outcome.info.get("cut_by_deadline") and (not planned or ran < REFIT_MIN_STEPS * planned):
        why = (
            f"the refit ran out of time ({ran} of its {planned} steps): the search's weights "
            "are kept"
        )
        log.info("%s.", why)
        return model, {"done": False, "why": why, "seconds": seconds}
    refit.metadata.update({**model.metadata, "refit": True})
    images_seen = int(outcome.info.get("train_images") or len(data.train))
    return refit, {
        "done": True,
        "why": f"retrained on {len(data.train)} training and validation images",
        "images": images_seen,
        "seconds": seconds,
        **({"steps": params["steps"]} if "steps" in params else {}),
    }
