"""Exactly ``n_trials`` finished trials, however many workers share the study.

Optuna's own limit (``MaxTrialsCallback``) is checked by each worker after its trial: two
workers that finish together both start another, and the study ends with more trials than
asked for. Here a worker claims a trial only under a lock that every worker of the study
shares (a PostgreSQL advisory lock, or a file lock next to a SQLite study), and only while
the finished and the running trials together are fewer than the limit. When they are not,
and some are still running, it waits: the running ones finish, or their worker dies, its
heartbeat stops, and the trial is failed and queued again (``RetryHeartbeatStaleTrialCallback``)
for this worker to run.

A failed trial that was queued again does not count: its retry does. So ``n_trials`` are
the trials that ran to an end of their own, whichever worker ran them.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import logging
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy import text

log = logging.getLogger(__name__)

FINISHED = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.PRUNED,
    optuna.trial.TrialState.FAIL,
)
WAIT_SECONDS = 1.0  # between looks at the running trials, while the limit is in reach


class TrialLimitReached(Exception):
    """No trial left to claim: the study has its trials (or the wait was called off)."""


def retried(trials: Iterable[optuna.trial.FrozenTrial]) -> set[int]:
    """The numbers of the failed trials that were queued again (their retries list them)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", ())}


def finished_trials(trials: Sequence[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials that count towards ``n_trials``: complete, pruned, or failed and not run
    again."""
    again = retried(trials)
    return [t for t in trials if t.state in FINISHED and t.number not in again]


def retry_of(trial: optuna.trial.FrozenTrial) -> int | None:
    """The number of the trial this one runs again, after its worker died (else None)."""
    history = trial.system_attrs.get("retry_history") or ()
    return int(history[-1]) if history else None


class RetryDeadTrial(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Queue again, with its parameters, a trial whose worker died (at most ``max_retry``
    times). The retry keeps what the plan said of the trial (``KEEP``), not what the dead
    worker had recorded of its run (its worker, error, history)."""

    KEEP = ("prior", "grow")

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        trial = copy.deepcopy(trial)
        trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k in self.KEEP}
        log.warning("Trial %d stopped with its worker; it is queued to run again.", trial.number)
        super().__call__(study, trial)


class BoundedStudy(optuna.Study):
    """An Optuna study whose workers together finish ``limit`` trials (None: no limit).

    :meth:`ask` claims a trial as the module doc says; it raises :class:`TrialLimitReached`
    when the limit is reached, or when ``keep_waiting()`` turns False (the time budget)
    while it waits for other workers' trials.
    """

    limit: int | None = None
    keep_waiting: Callable[[], bool] = staticmethod(lambda: True)

    def ask(self, fixed_distributions: Any = None) -> optuna.Trial:
        if self.limit is None:
            return super().ask(fixed_distributions)
        said = False
        while True:
            with claim_lock(self):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(self)  # a dead worker's trial: again
                trials = self.get_trials(deepcopy=False)
                done = len(finished_trials(trials))
                running = sum(t.state == optuna.trial.TrialState.RUNNING for t in trials)
                if done >= self.limit:
                    raise TrialLimitReached(f"{done} of {self.limit} trials finished")
                if done + running < self.limit:
                    return super().ask(fixed_distributions)
            if self._stop_flag or not self.keep_waiting():
                raise TrialLimitReached("stopped while other workers' trials ran")
            if not said:
                log.info(
                    "%d trials finished and %d running make the %d asked for; waiting for "
                    "them (a trial whose worker dies runs again here).",
                    done,
                    running,
                    self.limit,
                )
                said = True
            time.sleep(WAIT_SECONDS)


@contextlib.contextmanager
def claim_lock(study: optuna.Study) -> Iterator[None]:
    """A lock that every worker of ``study`` shares: a PostgreSQL advisory lock keyed by
    the study's name, or a file lock next to a SQLite database. Other databases: none
    (a worker then may start one trial more than asked for)."""
    storage = study._storage
    engine = getattr(getattr(storage, "_backend", storage), "engine", None)
    dialect = engine.dialect.name if engine is not None else ""
    if dialect == "postgresql":
        key = int.from_bytes(
            hashlib.sha256(study.study_name.encode()).digest()[:8], "big", signed=True
        )
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
    elif dialect == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        path = Path(f"{engine.url.database}.claims")
        with open(path, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    else:
        yield
