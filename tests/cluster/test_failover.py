"""A fit and two `autotransfer worker` processes on one PostgreSQL study, tracking to an
MLflow tracking server; one worker is killed mid-trial and another runs its trial again.

Real servers (tests/cluster/conftest.py), real processes, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import optuna
import pytest

import autotransfer
from autotransfer.databases import database_url
from autotransfer.search.selection import ranked
from autotransfer.testing.images import make_image_folder

N_TRIALS = 6
HEARTBEAT = 1  # seconds: a dead worker's trial is run again after 4 missed beats


def _cli(*args: str, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "autotransfer", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _wait(predicate, procs, logs, timeout=240.0, every=0.1):
    deadline = time.monotonic() + timeout
    while not predicate():
        dead = [p for p in procs if p.poll() not in (None, 0)]
        ended = all(p.poll() is not None for p in procs)
        if dead or ended or time.monotonic() > deadline:
            raise AssertionError(
                ("a process failed" if dead else "all ended first" if ended else "timed out")
                + "".join(f"\n--- {log.name}\n{open(log.name).read()[-3000:]}" for log in logs)
            )
        time.sleep(every)


@pytest.mark.timeout(600)
def test_a_killed_workers_trial_runs_again_and_no_finished_trial_is_lost(
    tmp_path, postgres_url, tracking_server
):
    folder = make_image_folder(tmp_path / "data", classes=("cat", "dog", "owl"), per_class=12)
    run = tmp_path / "run"
    experiment = f"failover-{uuid.uuid4().hex[:8]}"
    logs = [open(tmp_path / f"{name}.log", "w") for name in ("fit", "worker-a", "worker-b")]
    # the fit makes the study (ranking, plan, one trial) and its result; then two workers
    # run the rest: which process claims which trial is then theirs alone to decide
    fit = _cli(
        "-q", "fit", str(folder), "--run-dir", str(run), "--storage", postgres_url,
        "--tracking-uri", tracking_server, "--experiment", experiment,
        "--n-trials", "1", "--strategies", "partial_freeze,feature_extraction",
        "--backbones", "random:test_resnet,random:test_efficientnet", "--resolution", "32",
        "--trial-time-limit", "30s", "--heartbeat", str(HEARTBEAT), log=logs[0],
    )  # fmt: skip
    procs = [fit]
    try:
        assert fit.wait(timeout=300) == 0, open(logs[0].name).read()[-3000:]
        workers = [
            _cli("-q", "worker", str(run), "--n-trials", str(N_TRIALS), log=log) for log in logs[1:]
        ]
        procs += workers
        victim = workers[0]

        def victim_mid_trial():
            return any(
                t.state == optuna.trial.TrialState.RUNNING
                and (t.user_attrs.get("worker") or {}).get("pid") == victim.pid
                and t.intermediate_values  # an evaluation done, more to come
                and "seconds" not in t.user_attrs  # not yet ending (its MLflow run closing)
                for t in _trials(run, postgres_url)
            )

        # freeze the victim, then look: a frozen process writes nothing more, so a trial
        # still RUNNING under its pid is killed mid-trial (a trial that ended between the
        # look and the signal is let go, and the next one waited for)
        while True:
            _wait(victim_mid_trial, procs, logs)
            victim.send_signal(signal.SIGSTOP)
            time.sleep(0.5)  # what it had already sent reaches the database
            if victim_mid_trial():
                break
            victim.send_signal(signal.SIGCONT)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        before = _trials(run, postgres_url)
        killed = [
            t.number
            for t in before
            if t.state == optuna.trial.TrialState.RUNNING
            and (t.user_attrs.get("worker") or {}).get("pid") == victim.pid
        ]
        assert len(killed) == 1, [(t.number, t.state) for t in before]
        finished = {t.number: t.value for t in before if t.state.is_finished()}
        assert workers[1].wait(timeout=300) == 0, open(logs[2].name).read()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for log in logs:
            log.close()

    trials = _trials(run, postgres_url)
    by_number = {t.number: t for t in trials}
    (dead,) = killed
    # no finished trial lost, none run twice
    assert {n: by_number[n].value for n in finished} == finished
    # the killed trial failed and ran again, with its parameters, on another worker
    assert by_number[dead].state == optuna.trial.TrialState.FAIL
    (retry,) = [t for t in trials if t.system_attrs.get("retry_history") == [dead]]
    assert retry.params == by_number[dead].params
    assert retry.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    # exactly n_trials ran to an end of their own: the killed one is replaced, not counted
    ended = [t for t in trials if t.state.is_finished() and t.number != dead]
    assert len(ended) == N_TRIALS
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    # the other worker ran the retry
    assert retry.user_attrs["worker"]["pid"] == workers[1].pid

    # the tracking server lists every trial's run, in the right state
    from mlflow import MlflowClient

    client = MlflowClient(tracking_server)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    trial_runs: dict[int, list] = {}
    for r in runs:
        if "autotransfer.trial" in r.data.tags:
            trial_runs.setdefault(int(r.data.tags["autotransfer.trial"]), []).append(r)
    assert [r.info.status for r in trial_runs[dead]] == ["KILLED"]
    (retry_run,) = trial_runs[retry.number]
    assert retry_run.info.status == "FINISHED"
    assert retry_run.data.tags["autotransfer.retry_of"] == str(dead)
    assert retry_run.data.tags["autotransfer.retry_of_run"] == trial_runs[dead][0].info.run_id
    for t in ended:
        assert [r.info.status for r in trial_runs[t.number]] == ["FINISHED"], t.number
    assert set(trial_runs) == {t.number for t in trials if t.state.is_finished()}

    # the worker that ended last, after the fit, built the result from every trial: the
    # pick loads from the run folder, whichever process trained it
    loaded = autotransfer.load(run)
    assert len(loaded.leaderboard) == len([t for t in trials if t.state.is_finished()])
    assert loaded.best.number == ranked(trials)[0].number
    assert len(loaded.predict([str(next(folder.rglob("*.png")))])) == 1


_STORAGES: dict[str, optuna.storages.RDBStorage] = {}


def _trials(run, storage):
    """The study's trials (none before the fit makes it), through one storage per URL."""
    if storage not in _STORAGES:
        _STORAGES[storage] = optuna.storages.RDBStorage(database_url(storage, "storage"))
    try:
        return optuna.load_study(study_name="autotransfer", storage=_STORAGES[storage]).get_trials()
    except KeyError:
        return []
