"""What a tracker is: an object told about the fit, each trial, each epoch and the result.

Trackers are registered like every other plugin (``autotransfer_register_trackers``);
the built-in one writes to MLflow. A fit uses the trackers named in
``FitSettings.trackers`` (default: ``("mlflow",)``). A tracker that raises is logged
with its plugin's name and traceback and the study goes on. Per-run state belongs in
``run.state[tracker.name]``, never on the tracker object: one tracker object serves
every fit of the process.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from autotransfer.plugins import registered

if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.data.descriptors import DatasetDescriptor
    from autotransfer.data.types import ImageDataset
    from autotransfer.results import FitResult
    from autotransfer.search.records import TrialRecord
    from autotransfer.transferability.ranking import Ranking

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialInfo:
    """A trial as it starts: its Optuna number, backbone, strategy and hyperparameters;
    ``retry_of``: the trial it runs again, whose worker died (None for a first run)."""

    number: int
    backbone: str
    strategy: str
    params: dict[str, Any]
    retry_of: int | None = None


@dataclass
class RunContext:
    """One fit (or one ``autotransfer worker``) on one run folder.

    ``settings`` is ``FitSettings.to_dict()``; ``is_worker`` is True for a process that
    joined a study started by ``fit``; ``stale_trials`` are the numbers of trials a
    killed process left running, now marked failed (their tracker runs should be closed
    as killed); ``recovered_trials`` are the records of trials a killed process had
    finished but not yet recorded, now complete (a tracker run of theirs left open should
    be ended with their scores). ``state`` holds per-tracker state, keyed by tracker name.
    """

    run_dir: Path
    study_name: str
    settings: dict[str, Any]
    dataset: ImageDataset
    descriptor: DatasetDescriptor | None = None
    ranking: Ranking | None = None
    is_worker: bool = False
    stale_trials: tuple[int, ...] = ()
    recovered_trials: tuple[TrialRecord, ...] = ()
    state: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Tracker(Protocol):
    """Receives the events of a fit. All methods are called from the process running trials."""

    name: str

    def fit_start(self, run: RunContext) -> None: ...

    def trial_start(self, run: RunContext, trial: TrialInfo) -> None: ...

    def epoch_end(
        self, run: RunContext, trial: TrialInfo, epoch: int, metrics: Mapping[str, float]
    ) -> None: ...

    def trial_end(self, run: RunContext, record: TrialRecord) -> None: ...

    def fit_end(self, run: RunContext, result: FitResult | None) -> None: ...


def notify(trackers: Sequence[Tracker], method: str, *args: Any) -> None:
    """Call ``method`` on every tracker; a tracker that raises is logged, never fatal."""
    for tr in trackers:
        try:
            getattr(tr, method)(*args)
        except Exception:
            owner = registered("trackers").get(tr.name)
            log.error(
                "Tracker %r (plugin %r) failed in %s; the study goes on.\n%s",
                tr.name,
                owner.plugin if owner else "?",
                method,
                traceback.format_exc(),
            )
