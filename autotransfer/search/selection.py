"""Which trial wins: the best validation accuracy, unless the difference is noise.

On a small validation split one image is several points of accuracy, and a search that
tries many configurations finds one that got lucky. So trials whose accuracy is within
one binomial standard error of the best (``sqrt(p (1 - p) / n)``, n the validation
images) count as tied, and among them the lowest validation log-loss wins: the proper
scoring rule looks at every image's probability, not only at the arg-max. With a large
validation split the tolerance shrinks and this is plain best accuracy.

Not on a few-shot training set: there a model's log-loss says more about how strongly it
was regularised than about how well it classifies (a head held near uniform has a low
log-loss). Replayed on the ground truth's trials (``benchmarks/selection_rules.py``),
preferring the log-loss within one standard error lost test accuracy on every few-shot
variant (1-10 training images per class) and gained on every VTAB-1k-style one (19-102 per
class). Below :data:`FEW_PER_CLASS` training images per class only exact ties go to the
log-loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import optuna

COMPLETE = optuna.trial.TrialState.COMPLETE
# training images per class below which accuracy alone decides (exact ties: log-loss)
FEW_PER_CLASS = 15
# the trial attribute that carries it (trials of studies made before it count as many)
PER_CLASS = "train_images_per_class"
# the best trials whose models are kept for the ensemble (search.finish) to choose from
ENSEMBLE_POOL = 8


def tolerance(accuracy: float, n: int, per_class: float | None = None) -> float:
    """One binomial standard error of an accuracy measured on ``n`` images; none when the
    model was trained on fewer than :data:`FEW_PER_CLASS` images per class.

    >>> round(tolerance(0.9, 49), 4), tolerance(1.0, 49), tolerance(0.9, 49, per_class=5)
    (0.0429, 0.0, 0.0)
    """
    if n <= 0 or (per_class is not None and per_class < FEW_PER_CLASS):
        return 0.0
    return math.sqrt(max(0.0, accuracy * (1.0 - accuracy)) / n)


def _n(t: optuna.trial.FrozenTrial) -> int:
    return int((t.user_attrs.get("metrics") or {}).get("num_images", 0))


def _per_class(t: optuna.trial.FrozenTrial) -> float | None:
    per_class = t.user_attrs.get(PER_CLASS)
    return None if per_class is None else float(per_class)


def _loss(t: optuna.trial.FrozenTrial) -> float:
    return float((t.user_attrs.get("metrics") or {}).get("log_loss", float("inf")))


def contenders(trials: Sequence[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The complete trials tied with the best within its standard error."""
    done = [t for t in trials if t.state == COMPLETE and t.value is not None]
    if not done:
        return []
    best = max(done, key=lambda t: t.value)
    floor = best.value - tolerance(best.value, _n(best), _per_class(best)) - 1e-12
    return [t for t in done if t.value >= floor]


def ranked(trials: Sequence[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """Every trial, best first: the contenders by log-loss, then the other complete trials
    by accuracy, then running, pruned and failed trials."""
    tied = {t.number for t in contenders(trials)}
    order = {"COMPLETE": 0, "RUNNING": 1, "PRUNED": 2, "FAIL": 3}

    def key(t: optuna.trial.FrozenTrial) -> tuple:
        if t.number in tied:
            return (0, 0, _loss(t), -t.value, t.number)
        acc = t.value if t.state == COMPLETE and t.value is not None else -1.0
        return (order.get(t.state.name, 4), 1, -acc, _loss(t), t.number)

    return sorted(trials, key=key)


def worth_keeping(
    study: optuna.Study, value: float, n: int, per_class: float | None = None, pool: int = 0
) -> bool:
    """Whether a trial that just scored ``value`` on ``n`` images, trained on
    ``per_class`` images per class, may end up the winner, or (``pool`` > 0) among the
    ``pool`` best so far, from which an ensemble is chosen (so its model is saved)."""
    done = [
        t.value for t in study.get_trials(deepcopy=False, states=(COMPLETE,)) if t.value is not None
    ]
    best = max([value, *done])
    if pool and sum(v > value for v in done) < pool:
        return True
    return value >= best - tolerance(best, n, per_class) - 1e-12
