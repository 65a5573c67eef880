"""When to transfer: does the best pretrained model beat the best model without transfer?

The study runs no-transfer baselines beside the transfer strategies (raw pixels, a small
network from scratch: strategies with ``transfers = False``). The verdict compares the
best trial of each kind, as the selection ranks them
(:func:`~autotransfer.search.selection.ranked`), on the validation split: the
difference in accuracy and its standard error, paired image by image when both trials'
probabilities were kept (:mod:`autotransfer.search.val_probas`), else from the two
binomial errors. Within one standard error there is no evidence either way.

>>> v = TransferVerdict(3, "feature_extraction", 0.95, 5, "raw_pixels", 0.83, 0.12, 0.011, True)
>>> v.sentence
'transfer helps: +12.0 points (SE 1.1) over the best model without transfer (raw_pixels, trial 5)'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import optuna

from autotransfer.metrics import paired_difference
from autotransfer.search.selection import ranked


@dataclass(frozen=True)
class TransferVerdict:
    """The best transfer trial against the best no-transfer trial, on validation.

    ``difference`` is transfer minus no transfer, in accuracy (0..1); ``se`` its
    standard error; ``paired`` whether it was computed image by image.
    """

    transfer_trial: int
    transfer_strategy: str
    transfer_accuracy: float
    baseline_trial: int
    baseline_strategy: str
    baseline_accuracy: float
    difference: float
    se: float
    paired: bool

    @property
    def outcome(self) -> str:
        """``helps``, ``hurts`` or ``tie`` (within one standard error)."""
        if self.difference > self.se:
            return "helps"
        if -self.difference > self.se:
            return "hurts"
        return "tie"

    @property
    def sentence(self) -> str:
        """The verdict in one sentence, for the CLI, the report and the MLflow run."""
        points, se = 100 * self.difference, 100 * self.se
        baseline = f"{self.baseline_strategy}, trial {self.baseline_trial}"
        if self.outcome == "helps":
            return (
                f"transfer helps: {points:+.1f} points (SE {se:.1f}) over the best model "
                f"without transfer ({baseline})"
            )
        if self.outcome == "hurts":
            return (
                f"transfer does not help on this data: the best model without transfer "
                f"({baseline}) is {-points:.1f} points better (SE {se:.1f})"
            )
        return (
            f"no evidence that transfer helps on this data: the best model without transfer "
            f"({baseline}) is within one SE ({points:+.1f} points, SE {se:.1f})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "outcome": self.outcome, "sentence": self.sentence}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TransferVerdict:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def transfer_verdict(
    trials: Sequence[optuna.trial.FrozenTrial],
    baselines: set[str],
    probas: Mapping[int, np.ndarray] | None = None,
    labels: Sequence[int] | np.ndarray | None = None,
) -> TransferVerdict | None:
    """The verdict of a study's ``trials``; ``baselines`` names the strategies that do not
    transfer. ``probas`` (trial number -> validation probabilities) and ``labels`` (the
    validation labels) give the paired standard error. None unless a trial of each kind
    is complete.
    """
    best = [t for t in ranked(trials) if t.state == optuna.trial.TrialState.COMPLETE]
    tr = next((t for t in best if t.params.get("strategy") not in baselines), None)
    base = next((t for t in best if t.params.get("strategy") in baselines), None)
    if tr is None or base is None:
        return None
    a, b = float(tr.value), float(base.value)
    probas = probas or {}
    paired = labels is not None and tr.number in probas and base.number in probas
    if paired:
        y = np.asarray(labels)
        right = [probas[t.number].argmax(1) == y for t in (tr, base)]
        difference, se = paired_difference(*right)
    else:
        n = max(1, _n(tr)), max(1, _n(base))
        difference = a - b
        se = math.sqrt(a * (1 - a) / n[0] + b * (1 - b) / n[1])
    return TransferVerdict(
        transfer_trial=tr.number,
        transfer_strategy=str(tr.params.get("strategy")),
        transfer_accuracy=a,
        baseline_trial=base.number,
        baseline_strategy=str(base.params.get("strategy")),
        baseline_accuracy=b,
        difference=float(difference),
        se=float(se),
        paired=bool(paired),
    )


def _n(t: optuna.trial.FrozenTrial) -> int:
    return int((t.user_attrs.get("metrics") or {}).get("num_images", 0))
