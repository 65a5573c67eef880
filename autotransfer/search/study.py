"""The Optuna study of a run folder: storage, resume, stale trials, records.

The default storage is a SQLite file in the run folder (``study.db``); any Optuna
storage URL works (PostgreSQL or MySQL for workers on several machines). Trials carry
the host and process that ran them, so a trial left ``RUNNING`` by a killed process on
this host is closed the next time the study is opened: complete with its value when its
work was done and saved before the kill, else failed and queued again. Optuna's heartbeat
fails those of other hosts after its grace period, and queues them again too
(:mod:`autotransfer.search.trial_limit` counts the trials).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import warnings
from pathlib import Path
from typing import Any

import optuna

from autotransfer.databases import database_url
from autotransfer.search.records import TrialRecord
from autotransfer.search.selection import ranked
from autotransfer.search.trial_limit import BoundedStudy, RetryDeadTrial

log = logging.getLogger(__name__)

FINISHED_VALUE = "finished_value"  # user attribute: the trial's work is done and saved
HEARTBEAT_SECONDS = 30  # a running trial's worker says it is alive this often
GRACE_BEATS = 4  # missed beats after which its trial is failed and queued again
MAX_RETRIES = 2  # a trial runs again at most this often after its worker died
_STATES = {
    optuna.trial.TrialState.COMPLETE: "complete",
    optuna.trial.TrialState.PRUNED: "pruned",
    optuna.trial.TrialState.FAIL: "failed",
    optuna.trial.TrialState.RUNNING: "running",
    optuna.trial.TrialState.WAITING: "waiting",
}


def storage_url(run_dir: Path, storage: str | None) -> str:
    return storage or f"sqlite:///{(Path(run_dir) / 'study.db').resolve()}"


def open_study(
    run_dir: Path,
    *,
    storage: str | None,
    study_name: str,
    seed: int,
    pruner: str,
    create: bool = True,
    heartbeat: int = HEARTBEAT_SECONDS,
) -> BoundedStudy:
    """Create or load the study; ``create=False`` (workers) requires that it exists.

    Running trials send a heartbeat every ``heartbeat`` seconds; one silent for
    ``GRACE_BEATS`` beats (its worker died, on any machine) is failed and queued again
    with its parameters, at most ``MAX_RETRIES`` times, for another worker to run."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = database_url(storage_url(run_dir, storage), "storage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        rdb = optuna.storages.RDBStorage(
            url,
            heartbeat_interval=int(heartbeat),
            grace_period=int(heartbeat) * GRACE_BEATS,
            heartbeat_stale_trial_callback=RetryDeadTrial(max_retry=MAX_RETRIES),
            engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None,
        )
    pruners = {
        "median": optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
        "none": optuna.pruners.NopPruner(),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if create:
            study = optuna.create_study(
                storage=rdb,
                study_name=study_name,
                direction="maximize",
                pruner=pruners[pruner],
                load_if_exists=True,
            )
        else:
            study = optuna.load_study(storage=rdb, study_name=study_name, pruner=pruners[pruner])
        # a resumed study or a second worker must not replay the first one's random draws
        n = len(study.get_trials(deepcopy=False))
        sampler = optuna.samplers.TPESampler(
            seed=seed + n + (0 if create else os.getpid()),
            multivariate=True,
            group=True,
            n_startup_trials=4,
        )
    return BoundedStudy(study_name=study_name, storage=rdb, sampler=sampler, pruner=study.pruner)


def worker_id() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def close_dead_trials(study: optuna.Study) -> tuple[list[int], list[int]]:
    """Close the trials left running by a dead process of this host: those whose work was
    done and saved (the process died while recording them) complete with their value, the
    others fail. Returns the numbers of both: (failed, completed)."""
    host = socket.gethostname()
    out, completed = [], []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        who = t.user_attrs.get("worker") or {}
        if (
            who.get("host") != host
            or who.get("pid") == os.getpid()
            or _alive(int(who.get("pid", -1)))
        ):
            continue
        if FINISHED_VALUE in t.user_attrs:
            study.tell(t.number, float(t.user_attrs[FINISHED_VALUE]))
            completed.append(t.number)
            continue
        study._storage.set_trial_user_attr(t._trial_id, "error", "the process running it died")
        if study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL):
            retry = study._storage.get_heartbeat_stale_trial_callback()
            if retry is not None:  # queued again, as a dead worker's trial on another host
                retry(study, study._storage.get_trial(t._trial_id))
        out.append(t.number)
    if completed:
        log.warning(
            "Trials %s had finished when their process stopped; recorded complete.", completed
        )
    running = {
        t.number
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # other hosts, by heartbeat
    still = {
        t.number
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    }
    out.extend(sorted(running - still))
    if out:
        log.warning("Trials %s were left running by a stopped process; marked failed.", out)
    return out, completed


TRANSFER = "transfer"  # trial attribute: False for a strategy that does not transfer
SKIPPED = "skipped"  # trial attribute: why a pruned trial was not trained (too few steps)


def record_of(t: optuna.trial.FrozenTrial) -> TrialRecord:
    """A finished (or running) Optuna trial as a :class:`TrialRecord`."""
    strategy = str(t.params.get("strategy", ""))
    prefix = f"{strategy}."
    params = {k[len(prefix) :]: v for k, v in t.params.items() if k.startswith(prefix)}
    seconds = t.user_attrs.get("seconds")  # the trial's own time, set when it finished
    if seconds is None and t.datetime_start and t.datetime_complete:
        seconds = round((t.datetime_complete - t.datetime_start).total_seconds(), 2)
    state = _STATES.get(t.state, str(t.state).lower())
    value = t.value if t.state == optuna.trial.TrialState.COMPLETE else None
    return TrialRecord(
        number=t.number,
        backbone=str(t.params.get("backbone", "")),
        strategy=strategy,
        params=params,
        state=state,
        val_accuracy=value,
        metrics=dict(t.user_attrs.get("metrics", {})),
        history=tuple(t.user_attrs.get("history", ())),
        seconds=seconds,
        error=str(t.user_attrs.get("error", "")),
        info=dict(t.user_attrs.get("info", {})),
        transfer=bool(t.user_attrs.get(TRANSFER, True)),
        skipped=str(t.user_attrs.get(SKIPPED, "")),
    )


def best_train_seconds(study: optuna.Study) -> float:
    """Training seconds of the study's best complete trial (what its refit costs), from
    any process that ran it; 0 without one."""
    done = [
        t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE
    ]
    if not done:
        return 0.0
    best = max(done, key=lambda t: (t.value, -t.number))
    info = best.user_attrs.get("info") or {}
    return float(info.get("train_seconds") or best.user_attrs.get("seconds") or 0.0)


def leaderboard(study: optuna.Study) -> tuple[TrialRecord, ...]:
    """Every trial that ran or runs, best first (see :mod:`autotransfer.search.selection`);
    enqueued trials that never started are left out."""
    trials = [
        t for t in study.get_trials(deepcopy=False) if t.state != optuna.trial.TrialState.WAITING
    ]
    return tuple(record_of(t) for t in ranked(trials))


def save_plan(run_dir: Path, plan: dict[str, Any]) -> None:
    path = Path(run_dir) / "plan.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(plan, indent=2, default=str))
    os.replace(tmp, path)


def load_plan(run_dir: Path) -> dict[str, Any] | None:
    """The saved plan, or None when there is none or it is unreadable (the fit makes it
    again from the same settings; the study's trials are kept)."""
    path = Path(run_dir) / "plan.json"
    if not path.exists():
        return None
    try:
        plan = json.loads(path.read_text())
        if isinstance(plan, dict) and {"shortlist", "strategies", "data"} <= plan.keys():
            return plan
        raise ValueError("not a plan")
    except (OSError, ValueError) as exc:
        log.warning("%s is unreadable (%s); planning again.", path, exc)
        return None
