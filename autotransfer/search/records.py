"""The record of one trial of the study, as :func:`autotransfer.fit` reports it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

TRIAL_STATES = ("complete", "pruned", "failed", "running")


@dataclass(frozen=True)
class TrialRecord:
    """One trial of the study as it ended.

    ``state`` is one of ``complete``, ``pruned``, ``failed`` or ``running``;
    ``val_accuracy`` is the selection score (best epoch); ``metrics`` holds the
    validation metrics of the kept weights (accuracy, balanced_accuracy, macro_f1,
    log_loss); ``history`` one dict per epoch; ``error`` the failure, when failed;
    ``transfer`` False for a no-transfer baseline (raw pixels, from scratch), whose
    ``backbone`` is the study's parameter but was not used; ``skipped`` why a pruned
    trial was not trained (its time could not give its schedule enough steps).
    """

    number: int
    backbone: str
    strategy: str
    params: dict[str, Any]
    state: str
    val_accuracy: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    history: tuple[dict[str, float], ...] = ()
    seconds: float | None = None
    error: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    transfer: bool = True
    skipped: str = ""

    @property
    def source(self) -> str:
        """The backbone the model started from, or ``none`` (no transfer)."""
        return self.backbone if self.transfer else "none"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["history"] = list(self.history)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialRecord:
        return cls(**{**d, "history": tuple(d.get("history", ()))})
