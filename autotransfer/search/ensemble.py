"""An ensemble of the search's trials, chosen on their validation probabilities and served
as one :class:`~autotransfer.model.Classifier`.

Greedy ensemble selection with replacement (Caruana et al., "Ensemble selection from
libraries of models", ICML 2004): start from the best single trial, add at each round the
trial (again, possibly) whose addition gives the best validation accuracy of the averaged
probabilities, and keep the best ensemble seen on the way. Counts become weights. The
ensemble is kept only when it beats the best single trial by more than one standard error
of the paired per-image difference (:func:`autotransfer.metrics.paired_difference`): the
selection is fitted on the same validation images it is scored on, so a smaller gain is
more likely luck than a better model.

The chosen ensemble is served by :func:`ensemble_classifier` as one classifier of the
timm-registered architecture ``autotransfer_ensemble``
(:mod:`autotransfer.architectures.ensemble`): predict, save and load, TorchScript and ONNX
export and the MLflow model work as for any single model.

>>> choice = choose_ensemble({4: proba_4, 7: proba_7}, y_val)   # doctest: +SKIP
>>> choice.reason                                                         # doctest: +SKIP
'ensemble of 2 trials (#4 0.67, #7 0.33): +1.9 points over trial #4 out of fold (SE 0.6), kept'
>>> clf = ensemble_classifier([clf_4, clf_7], [0.67, 0.33])           # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import timm

from autotransfer.architectures.ensemble import ARCH, ensemble_resolution
from autotransfer.errors import ConfigError
from autotransfer.metrics import PROBA_CLIP, paired_difference
from autotransfer.model import Classifier
from autotransfer.preprocessing import Preprocessing

__all__ = ["EnsembleChoice", "choose_ensemble", "ensemble_classifier", "greedy_selection"]

log = logging.getLogger(__name__)

ROWS = 1024  # rows scored at a time: a block of the running sum stays in the CPU cache


@dataclass(frozen=True)
class EnsembleChoice:
    """The outcome of :func:`choose_ensemble`.

    ``weights``: trial number -> weight (summing to 1, largest first); ``val_accuracy``:
    the ensemble's accuracy on the recorded validation probabilities; ``best_trial`` and
    ``best_accuracy``: the best single trial; ``difference`` and ``se``: the ensemble's
    accuracy minus the best trial's and its paired standard error; ``kept``: whether the
    ensemble should replace the best trial; ``reason``: one sentence saying why.

    >>> c = EnsembleChoice({4: 0.5, 7: 0.5}, 0.9, 4, 0.85, 0.05, 0.02, True, "kept")
    >>> EnsembleChoice.from_dict(c.to_dict()) == c
    True
    """

    weights: dict[int, float]
    val_accuracy: float
    best_trial: int
    best_accuracy: float
    difference: float
    se: float
    kept: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the weights' trial numbers become strings."""
        return {**asdict(self), "weights": {str(k): v for k, v in self.weights.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EnsembleChoice:
        return cls(
            weights={int(k): float(v) for k, v in d["weights"].items()},
            val_accuracy=float(d["val_accuracy"]),
            best_trial=int(d["best_trial"]),
            best_accuracy=float(d["best_accuracy"]),
            difference=float(d["difference"]),
            se=float(d["se"]),
            kept=bool(d["kept"]),
            reason=str(d["reason"]),
        )


def greedy_selection(
    probas: Mapping[int, np.ndarray], y: Sequence[int] | np.ndarray, *, rounds: int = 25
) -> dict[int, int]:
    """How many times each trial enters the ensemble chosen by greedy forward selection
    with replacement (Caruana et al. 2004); weights are counts / total.

    ``probas``: trial number -> its (N, C) validation probabilities, rows in the order of
    the labels ``y``. Start from the best single trial (accuracy, ties by lower log-loss,
    then lower trial number); at each of ``rounds`` rounds add the trial whose addition
    gives the best accuracy of the averaged probabilities (same ties). As Caruana does,
    the selection runs all rounds even when a round does not improve, since the next may
    (one image is a large step of accuracy, so plateaus are common), and returns the best
    ensemble on the way, the smallest among equals. It stops early only at a fixed point:
    one trial alone, and adding it again is best. Scores are (accuracy, then log-loss with
    probabilities clipped at 1e-7, as :mod:`autotransfer.metrics` does).

    Cost: ``rounds x trials`` passes over N x C numbers (blocks of rows, cache-resident);
    no copy of the inputs when they are float32.

    >>> y = np.array([0, 0, 1, 1])
    >>> a = np.array([[.9, .1], [.9, .1], [.6, .4], [.6, .4]])   # right on the first half
    >>> b = np.array([[.4, .6], [.4, .6], [.1, .9], [.1, .9]])   # right on the second half
    >>> c = np.array([[.5, .5], [.5, .5], [.5, .5], [.5, .5]])
    >>> greedy_selection({3: a, 5: b, 8: c}, y)
    {3: 1, 5: 1}
    """
    trials, arrays, labels = _check(probas, y)
    counts, _ = _select(arrays, labels, int(rounds))
    return {t: c for t, c in zip(trials, counts, strict=True) if c}


def choose_ensemble(
    probas: Mapping[int, np.ndarray], y: Sequence[int] | np.ndarray, *, rounds: int = 25
) -> EnsembleChoice | None:
    """The ensemble :func:`greedy_selection` picks, scored against the best single trial;
    None with fewer than two trials.

    It is ``kept`` only when it has at least two distinct trials and beats the best single
    trial by more than one standard error of the paired per-image difference, judged out
    of fold: the images are split in two halves, and each half scores the ensemble and
    the best trial chosen on the other (``difference`` and ``se`` are these). Scored on
    the images it was chosen on, the selection flatters itself: beside a strong trial,
    three trials of pure noise passed the in-sample check in about one selection of four
    on 100-300 images. ``val_accuracy`` is the full selection's, on all the images.

    >>> y = np.array([0, 0, 1, 1] * 10)
    >>> a = np.tile([[.9, .1], [.9, .1], [.6, .4], [.6, .4]], (10, 1))
    >>> b = np.tile([[.4, .6], [.4, .6], [.1, .9], [.1, .9]], (10, 1))
    >>> choose_ensemble({3: a, 5: b}, y).reason
    'ensemble of 2 trials (#3 0.50, #5 0.50): +60.0 points over trial #3 out of fold (SE 7.8), kept'
    """
    trials, arrays, labels = _check(probas, y)
    if len(trials) < 2:
        return None
    counts, start = _select(arrays, labels, int(rounds))
    total = sum(counts)
    chosen = sorted((i for i, c in enumerate(counts) if c), key=lambda i: (-counts[i], trials[i]))
    weights = {trials[i]: counts[i] / total for i in chosen}
    right = _mix(arrays, counts).argmax(axis=1) == labels
    best = trials[start]  # the selection starts from the best single trial
    best_right = arrays[start].argmax(axis=1) == labels
    # the gain judged out of fold: each half scores what was chosen on the other half
    difference, se = paired_difference(*_cross_fitted(arrays, labels, int(rounds)))
    members = ", ".join(f"#{t} {w:.2f}" for t, w in weights.items())
    gain = f"{100 * difference:+.1f} points over trial #{best} out of fold"
    if len(weights) < 2:
        kept = False
        reason = f"not kept: greedy selection found nothing to add to trial #{best}"
    elif difference > se:
        kept = True
        reason = f"ensemble of {len(weights)} trials ({members}): {gain} (SE {100 * se:.1f}), kept"
    else:
        kept = False
        reason = (
            f"not kept: the ensemble of {len(weights)} trials ({members}) is {gain}, within "
            f"one standard error ({100 * se:.1f})"
        )
    log.info("ensemble selection: %s", reason)
    return EnsembleChoice(
        weights=weights,
        val_accuracy=float(right.mean()),
        best_trial=int(best),
        best_accuracy=float(best_right.mean()),
        difference=float(difference),
        se=float(se),
        kept=kept,
        reason=reason,
    )


def ensemble_classifier(
    members: Sequence[Classifier],
    weights: Sequence[float],
    *,
    metadata: dict[str, Any] | None = None,
    flip: bool = False,
) -> Classifier:
    """One :class:`~autotransfer.model.Classifier` that averages the probabilities of
    ``members`` with ``weights`` (normalised to sum 1), each member fed as it was trained;
    ``flip``: with each image's mirror image too (flip test-time augmentation).

    The module is the timm architecture ``autotransfer_ensemble`` with the members'
    weights copied in, so it saves, loads (strictly), exports and serves like a single
    model. Its preprocessing takes the short side to the largest side any member resizes
    to (:func:`~autotransfer.architectures.ensemble.ensemble_resolution`) with no
    normalisation; each member crops, resizes and normalises inside. The members must
    have the same classes in the same order.

    >>> clf = ensemble_classifier([clf_4, clf_7], [2, 1])       # doctest: +SKIP
    >>> clf.predict_proba("cat.jpg")                           # doctest: +SKIP
    array([[0.83, 0.17]], dtype=float32)
    """
    members = list(members)
    if not members:
        raise ConfigError("An ensemble needs at least one member classifier; got none.")
    classes = members[0].classes
    for i, m in enumerate(members[1:], start=1):
        if m.classes != classes:
            raise ConfigError(
                f"Ensemble member {i} ({m.arch}) has the classes {list(m.classes)}, member 0 "
                f"({members[0].arch}) has {list(classes)}. Members must predict the same "
                "classes in the same order: ensemble classifiers trained on the same data."
            )
    specs = [
        {
            "arch": m.arch,
            "model_kwargs": dict(m.model_kwargs),
            "cut": m.cut,
            "preprocessing": m.preprocessing.to_dict(),
        }
        for m in members
    ]
    w = [float(v) for v in weights]
    if len(w) != len(members):
        raise ConfigError(
            f"{len(members)} ensemble members need {len(members)} weights, one per member; "
            f"got {len(w)} ({w}). Pass the weights in the members' order."
        )
    total = sum(w)
    if total > 0:
        w = [v / total for v in w]
    extra = {"flip": True} if flip else {}
    module = timm.create_model(
        ARCH, pretrained=False, num_classes=len(classes), members=specs, weights=w, **extra
    )
    for i, m in enumerate(members):
        source = getattr(m.module, "_orig_mod", m.module)  # torch.compile wrapper
        module.members[i].model.load_state_dict(source.state_dict(), strict=True)
    resolution, interpolation = ensemble_resolution(specs)
    return Classifier(
        module,
        classes=classes,
        preprocessing=Preprocessing(
            resolution=resolution,
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            crop_pct=1.0,
            interpolation=interpolation,
        ),
        arch=ARCH,
        model_kwargs={"members": specs, "weights": w, **extra},
        metadata=metadata,
    )


def _check(
    probas: Mapping[int, np.ndarray], y: Sequence[int] | np.ndarray
) -> tuple[list[int], list[np.ndarray], np.ndarray]:
    """Trials in increasing order, their probabilities as float32 (N, C), labels (N,)."""
    labels = np.asarray(y)
    by_int = {int(t): p for t, p in probas.items()}
    trials = sorted(by_int)
    if not trials:
        raise ConfigError("Ensemble selection needs the probabilities of at least one trial.")
    arrays = [np.asarray(by_int[t], dtype=np.float32) for t in trials]
    shape = arrays[0].shape
    if labels.ndim != 1 or len(shape) != 2 or shape[0] != len(labels) or not len(labels):
        raise ConfigError(
            f"Ensemble selection needs (N, C) probabilities with N = the {labels.shape} labels; "
            f"trial #{trials[0]} has shape {shape}. Record every trial on the same "
            "validation images, rows in the labels' order."
        )
    bad = [t for t, p in zip(trials, arrays, strict=True) if p.shape != shape]
    if bad:
        raise ConfigError(
            f"The probabilities of trial(s) {bad} do not have the shape {shape} of trial "
            f"#{trials[0]}; every trial must be scored on the same validation images."
        )
    broken = [t for t, p in zip(trials, arrays, strict=True) if not np.isfinite(p).all()]
    if broken:
        raise ConfigError(
            f"The probabilities of trial(s) {broken} are not all finite (a diverged model); "
            "leave those trials out of the ensemble selection."
        )
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= shape[1]:
        raise ConfigError(
            f"Labels must be class indices 0..{shape[1] - 1}; got {labels.dtype} values "
            f"from {labels.min()} to {labels.max()}."
        )
    return trials, arrays, labels.astype(np.int64)


def _select(arrays: Sequence[np.ndarray], labels: np.ndarray, rounds: int) -> tuple[list[int], int]:
    """:func:`greedy_selection` on checked inputs: the count of each array (in order) and
    the index of the best single one."""
    if rounds < 0:
        raise ConfigError(f"rounds={rounds!r} must not be negative; Caruana et al. use 20-50.")
    n = len(labels)
    true_p = np.stack([p[np.arange(n), labels] for p in arrays]).astype(np.float64)  # (K, N)
    acc = np.array([np.count_nonzero(p.argmax(axis=1) == labels) / n for p in arrays])
    loss = -np.log(np.clip(true_p, PROBA_CLIP, 1.0)).mean(axis=1)
    start = _best(acc, loss)
    counts = [0] * len(arrays)
    counts[start] = 1
    total = arrays[start].astype(np.float32, copy=True)
    true_sum = true_p[start].copy()
    best_score, best_counts = (acc[start], -loss[start]), list(counts)
    for size in range(1, rounds + 1):
        acc, loss = _scores(total, true_sum, arrays, labels, true_p, size)
        k = _best(acc, loss)
        if counts[k] == size:  # one array alone, and adding it again is best: fixed point
            break
        counts[k] += 1
        total += arrays[k]
        true_sum += true_p[k]
        if (acc[k], -loss[k]) > best_score:
            best_score, best_counts = (acc[k], -loss[k]), list(counts)
    return best_counts, start


def _scores(
    total: np.ndarray,
    true_sum: np.ndarray,
    arrays: Sequence[np.ndarray],
    labels: np.ndarray,
    true_p: np.ndarray,
    size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and log-loss of ``(total + p_k) / (size + 1)`` for each candidate k, with
    ``total`` the sum of ``size`` arrays and ``true_sum`` the sum of their true-class rows."""
    n = len(labels)
    right = np.zeros(len(arrays), dtype=np.int64)
    buf = np.empty((min(ROWS, n), total.shape[1]), dtype=np.float32)
    for lo in range(0, n, ROWS):
        hi = min(lo + ROWS, n)
        block, out = total[lo:hi], buf[: hi - lo]
        for k, p in enumerate(arrays):
            np.add(block, p[lo:hi], out=out)
            right[k] += int(np.count_nonzero(out.argmax(axis=1) == labels[lo:hi]))
    mean_true = (true_sum + true_p) / (size + 1)  # (K, N): only the true class matters
    loss = -np.log(np.clip(mean_true, PROBA_CLIP, 1.0)).mean(axis=1)
    return right / n, loss


def _mix(arrays: Sequence[np.ndarray], counts: Sequence[int]) -> np.ndarray:
    mix = np.zeros_like(arrays[0])
    for p, c in zip(arrays, counts):
        if c:
            mix += p * np.float32(c)
    return mix


def _cross_fitted(
    arrays: Sequence[np.ndarray], labels: np.ndarray, rounds: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per image, whether the ensemble and whether the best single trial get it right,
    each chosen on the other half of the images (two folds, a fixed shuffle): an honest
    comparison, where scoring the selection on its own images flatters it."""
    n = len(labels)
    fold = np.zeros(n, dtype=bool)
    fold[np.random.default_rng(0).permutation(n)[: n // 2]] = True
    ens, single = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    for test in (fold, ~fold):
        fit = ~test
        if not fit.any() or not test.any():
            continue
        counts, start = _select([p[fit] for p in arrays], labels[fit], rounds)
        part = [p[test] for p in arrays]
        ens[test] = _mix(part, counts).argmax(axis=1) == labels[test]
        single[test] = part[start].argmax(axis=1) == labels[test]
    return ens, single


def _best(acc: np.ndarray, loss: np.ndarray) -> int:
    """The candidate with the best accuracy, then the lowest log-loss, then the first."""
    return int(np.lexsort((np.arange(len(acc)), loss, -acc))[0])
