"""Faults during a study. Every test injects one fault into a real fit (real timm ``test_*``
models, the SQLite study, the MLflow store, real processes and signals) and checks what the
issue asks of it, then that no trial was lost: every trial that had finished before the fault
is still there afterwards with the same state, parameters and value (:func:`trials_lost`).

FAULTS (the refused malicious pickles are in tests/test_security.py)

==  =========================================  =============================================
#   fault injected                             behaviour checked
==  =========================================  =============================================
F1  SIGKILL in the middle of a fine-tuning     ``fit`` again resumes: finished trials kept,
    trial (MLflow tracking on)                 none re-run; the killed trial FAIL in the
                                               study and KILLED (not RUNNING) in MLflow
F2  Ctrl-C (SIGINT to the process group)       the running trial finishes, no other starts,
                                               the best result so far is returned
F3  Ctrl-C twice                               the running trial stops, FAIL in the study
                                               and FAILED in MLflow; the best is returned
F4  a third-party strategy raises in train     that trial fails; its error names the plugin
                                               and the hook, its traceback is kept and
                                               logged; the study goes on
F5  a third-party strategy raises in suggest   the same
F6  a third-party strategy raises in defaults  its prior trial is skipped, logged naming the
                                               plugin; the study goes on
F7  a third-party tracker raises in every      logged naming the plugin with a traceback;
    hook                                       every trial completes
F8  CUDA out of memory in a trial              the trial retries with half the batch
F9  a trial checkpoint damaged (bytes          detected when the result is built; the trial
    flipped, cut short, weights deleted,       is trained again with its configuration and
    config garbage)                            seed: same predictions, no crash
F10 two workers on one study (concurrency)     both run trials, none twice, none lost
F11 the run folder's plan.json cut short       reported and planned again from the same
                                               settings; the study goes on
F12 feature-cache files cut short, bits        detected (zip CRC, checksums), logged and
    flipped, garbage; score files garbage      recomputed; the ranking equals the clean one
    (tests/backbones/test_features.py)
F13 SIGKILL while a finished trial is being    ``fit`` again records it complete with its
    recorded (before or after MLflow ends      value, its checkpoint serves, its MLflow run
    its run; Optuna not yet told)              is FINISHED with its scores, logged once
==  =========================================  =============================================
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
import torch

import autotransfer
from autotransfer import plugins
from autotransfer.search.checkpoints import checkpoint_dir
from autotransfer.search.study import FINISHED_VALUE
from autotransfer.strategies import loop
from autotransfer.strategies.feature_extraction import FeatureExtraction
from autotransfer.strategies.models import new_classifier, preprocessing

from .conftest import TINY, fit_tiny, study_of

COMPLETE = optuna.trial.TrialState.COMPLETE
RUNNING = optuna.trial.TrialState.RUNNING
FAIL = optuna.trial.TrialState.FAIL
PRUNED = optuna.trial.TrialState.PRUNED
WAITING = optuna.trial.TrialState.WAITING


def trials_lost(before, after) -> list[int]:
    """Numbers of the trials finished in ``before`` that are missing or changed in ``after``."""
    now = {t.number: t for t in after}

    def same(t) -> bool:
        u = now.get(t.number)
        return u is not None and (u.state, u.params, u.value) == (t.state, t.params, t.value)

    return [t.number for t in before if t.state.is_finished() and not same(t)]


def _mlflow_children(run_dir):
    """The MLflow trial runs of a run folder's store, by trial number."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{run_dir / 'mlflow.db'}")
    out: dict[int, list] = {}
    for r in client.search_runs([e.experiment_id for e in client.search_experiments()]):
        if "autotransfer.trial" in r.data.tags:
            out.setdefault(int(r.data.tags["autotransfer.trial"]), []).append(r)
    return out


@pytest.fixture
def extra_plugin():
    """Register a plugin object for one test under a given name; forget it afterwards."""

    def register(plugin, name="acme_plugin"):
        plugins.register_plugin(plugin, name=name)

    yield register
    plugins.reset_plugin_manager()


def strategies_plugin(*strategies):
    class Plugin:
        @autotransfer.hookimpl
        def autotransfer_register_strategies(self):
            return list(strategies)

    return Plugin()


class Broken:
    name = "broken"
    description = "raises in the middle of training"
    relative_cost = 0.5

    def suggest(self, space, *, search):
        return {"x": space.suggest_int("x", 0, 3)}

    def defaults(self, *, search):
        return {"x": 0}

    def train(self, ctx):
        ctx.report(0, {"val_accuracy": 0.1})
        raise RuntimeError("the strategy broke on purpose")


class BrokenSuggest(Broken):
    name = "broken_suggest"

    def suggest(self, space, *, search):
        raise ValueError("no search space today")


class BrokenDefaults(FeatureExtraction):
    """Trains well, but has no prior configuration."""

    name = "broken_defaults"

    def defaults(self, *, search):
        raise KeyError("no prior either")


class OutOfMemoryAbove4:
    """Trains the head only; its model raises CUDA's out-of-memory error on batches over 4."""

    name = "oom_above_4"
    description = "needs a small batch"
    relative_cost = 0.5

    def suggest(self, space, *, search):
        return {"lr": space.suggest_float("lr", 0.01, 0.1, log=True)}

    def defaults(self, *, search):
        return {"lr": 0.05}

    def train(self, ctx):
        def build():
            model = new_classifier(ctx)

            def guard(module, args):
                if args[0].shape[0] > 4 and torch.is_grad_enabled():
                    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 4 GiB")

            model.register_forward_pre_hook(guard)
            params = [{"params": list(model.parameters()), "lr": ctx.params["lr"]}]
            return loop.Trainable(model, params)

        return loop.train(ctx, build, loop.Schedule(epochs=1), preprocessing(ctx))


def _fit_twice(folder, run, n_first, n_total, **kw):
    """Fit ``n_first`` trials, then resume to ``n_total``: the trials finished before the
    second fit, the second fit's result and all trials after it."""
    autotransfer.fit(folder, run_dir=str(run), n_trials=n_first, **kw)
    before = study_of(run).get_trials()
    result = autotransfer.fit(folder, run_dir=str(run), n_trials=n_total, **kw)
    return before, result, study_of(run).get_trials()


# F4
def test_a_plugin_strategy_that_raises_in_train_names_the_plugin_and_the_study_goes_on(
    folder, tmp_path, extra_plugin, caplog
):
    extra_plugin(strategies_plugin(Broken()))
    with caplog.at_level(logging.WARNING, logger="autotransfer"):
        before, result, after = _fit_twice(
            folder,
            tmp_path / "run",
            4,
            8,
            trackers=(),
            strategies=("feature_extraction", "broken"),
            **TINY,
        )
    assert trials_lost(before, after) == []
    failed = [t for t in after if t.state == FAIL]
    assert failed and all(t.params["strategy"] == "broken" for t in failed)
    for t in failed:
        error = t.user_attrs["error"]
        assert "Plugin 'acme_plugin' failed in strategy 'broken'.train" in error
        assert "RuntimeError: the strategy broke on purpose" in error
        assert "in train" in t.user_attrs["traceback"]  # the frame that raised
        assert __file__ in t.user_attrs["traceback"]
    records = [r for r in result.leaderboard if r.state == "failed"]
    assert all("acme_plugin" in r.error and "Traceback" in r.info["traceback"] for r in records)
    assert "acme_plugin" in caplog.text and "Traceback (most recent call last)" in caplog.text
    assert result.best.strategy == "feature_extraction"
    assert sum(t.state == COMPLETE for t in after) >= 4
    assert len(result.leaderboard) == len(after) == 8


# F5, F6
def test_plugin_strategies_that_raise_in_suggest_or_defaults_are_named(
    folder, tmp_path, extra_plugin, caplog
):
    extra_plugin(strategies_plugin(BrokenSuggest(), BrokenDefaults()))
    run = tmp_path / "run"
    kw = dict(trackers=(), strategies=("feature_extraction", "broken_suggest", "broken_defaults"))
    with caplog.at_level(logging.WARNING, logger="autotransfer"):
        autotransfer.fit(folder, run_dir=str(run), n_trials=3, **kw, **TINY)
        before = study_of(run).get_trials()
        result = autotransfer.fit(folder, run_dir=str(run), n_trials=6, **kw, **TINY)
    after = study_of(run).get_trials()
    assert trials_lost(before, after) == []
    # defaults: the prior is skipped, the log names the plugin and the hook
    assert "Plugin 'acme_plugin' failed in strategy 'broken_defaults'.defaults" in caplog.text
    assert "KeyError: 'no prior either'" in caplog.text
    assert not any(
        t.user_attrs.get("prior") and t.params["strategy"] == "broken_defaults" for t in after
    )
    # suggest (its prior is enqueued third): the trial fails naming the plugin
    bad = [t for t in after if t.params.get("strategy") == "broken_suggest"]
    assert bad and bad[0].number == 2
    for t in bad:
        assert t.state == FAIL
        assert (
            "Plugin 'acme_plugin' failed in strategy 'broken_suggest'.suggest"
            in (t.user_attrs["error"])
        )
        assert "no search space today" in t.user_attrs["traceback"]
    # and the study went on
    assert len(after) == 6 and sum(t.state == COMPLETE for t in after) == 6 - len(bad)
    assert result.best.state == "complete"


class RaisingTracker:
    name = "raising_tracker"

    def _boom(self, *args):
        raise ConnectionError("the tracking server is down")

    fit_start = trial_start = epoch_end = trial_end = fit_end = _boom


# F7
def test_a_plugin_tracker_that_raises_is_named_and_every_trial_completes(
    folder, tmp_path, extra_plugin, caplog
):
    class Plugin:
        @autotransfer.hookimpl
        def autotransfer_register_trackers(self):
            return [RaisingTracker()]

    extra_plugin(Plugin(), name="acme_tracking")
    with caplog.at_level(logging.ERROR, logger="autotransfer"):
        before, result, after = _fit_twice(
            folder,
            tmp_path / "run",
            2,
            4,
            trackers=("raising_tracker",),
            strategies=("feature_extraction",),
            **TINY,
        )
    assert trials_lost(before, after) == []
    assert [t.state for t in after] == [COMPLETE] * 4
    for hook in ("fit_start", "trial_start", "epoch_end", "trial_end", "fit_end"):
        assert f"Tracker 'raising_tracker' (plugin 'acme_tracking') failed in {hook}" in (
            caplog.text
        )
    assert "ConnectionError: the tracking server is down" in caplog.text
    assert "Traceback (most recent call last)" in caplog.text
    assert result.best.state == "complete"


# F8
def test_cuda_out_of_memory_in_a_trial_retries_with_a_smaller_batch(folder, tmp_path, extra_plugin):
    extra_plugin(strategies_plugin(OutOfMemoryAbove4()))
    result = fit_tiny(
        folder, tmp_path / "run", n_trials=1, batch_size=16, strategies=("oom_above_4",)
    )
    (trial,) = result.leaderboard
    assert trial.state == "complete"
    assert trial.info["batch_size"] == 4  # 16 -> 8 -> 4


def _damage(path, how):
    weights = path / "model.safetensors"
    if how == "flip_bytes":
        data = bytearray(weights.read_bytes())
        for i in range(len(data) // 2, len(data) // 2 + 32):
            data[i] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif how == "truncate":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    elif how == "delete_weights":
        weights.unlink()
    else:
        (path / "autotransfer.json").write_text("{not json")


# F9
@pytest.mark.parametrize("how", ["flip_bytes", "truncate", "delete_weights", "garbage_config"])
def test_a_damaged_trial_checkpoint_is_detected_and_rebuilt(folder, tmp_path, caplog, how):
    run = tmp_path / "run"
    kw = dict(trackers=(), strategies=("feature_extraction",), **TINY)
    first = autotransfer.fit(folder, run_dir=str(run), n_trials=3, **kw)
    paths = sorted(str(p) for p in folder.rglob("*.png"))
    expected = first.predict_proba(paths)
    before = study_of(run).get_trials()
    best = first.best.number
    _damage(checkpoint_dir(run, best), how)

    with caplog.at_level(logging.WARNING, logger="autotransfer"):
        again = autotransfer.fit(folder, run_dir=str(run), n_trials=3, **kw)
    assert trials_lost(before, study_of(run).get_trials()) == []
    assert f"trial {best}" in caplog.text and "training" in caplog.text
    assert again.best.number == best
    torch.testing.assert_close(
        torch.as_tensor(again.predict_proba(paths)),
        torch.as_tensor(expected),
        rtol=1e-4,
        atol=1e-5,
    )
    # the rebuilt checkpoint and the saved model both load
    autotransfer.load(checkpoint_dir(run, best))
    assert autotransfer.load(run).predict(paths) == first.predict(paths)


FIT_SCRIPT = textwrap.dedent(
    """
    import sys, autotransfer
    cap = sys.argv[3] if len(sys.argv) > 3 else None  # "0": the images stream from disk
    autotransfer.fit(sys.argv[1], run_dir=sys.argv[2], n_trials=200, pruner="none",
                     strategies=("feature_extraction", "partial_freeze"),
                     backbones=("random:test_resnet", "random:test_efficientnet"),
                     resolution=32, time_budget=None, trial_time_limit="60s", progress=False,
                     image_cache_memory=cap)
    """
)


def _start_script(tmp_path, source, *args, **popen):
    """Start the Python ``source``, written to ``tmp_path/fit.py``, with ``args``, its stderr
    to the file ``tmp_path/child.log``: the process and that file."""
    script = tmp_path / "fit.py"
    script.write_text(source)
    log = tmp_path / "child.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script), *map(str, args)], env=os.environ, stderr=err, **popen
        )
    return proc, log


def _wait_for(predicate, timeout, poll=0.5):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(poll)
    return False


class _Watch:
    """Reads a child's study, read-only, over one storage connection opened once the
    child has created it.

    Cheap enough to poll every 0.1 s: reopening the study on each poll took up to seconds
    on a busy machine, long enough to miss every short fine-tuning trial of a run."""

    def __init__(self, run):
        self.db, self.study = run / "study.db", None

    def trials(self):
        try:
            if self.study is None:
                if not self.db.exists():
                    return None
                # read-only: a reader that creates missing tables races the child doing
                # the same ("table trial_heartbeats already exists" killed it once)
                url = f"sqlite:///file:{self.db}?mode=ro&uri=true"
                self.study = optuna.load_study(study_name="autotransfer", storage=url)
            return self.study.get_trials(deepcopy=False)
        except Exception:  # the child is creating or writing the file
            return None


CHILD_WAIT = 480  # seconds; generous, for a starved CI machine (it took 39 s on an idle one)


def _wait_for_child(proc, watch, predicate, log):
    """Wait until ``predicate()`` holds while the child runs; fail naming why: the child
    exited (its code and the end of its stderr, from the file ``log``) or the wait ran out
    (what ``watch`` reads in the study by then)."""

    held = []  # the state moves on: act on the first poll that saw it, not a second look

    def ready_or_exited():
        if predicate():
            held.append(True)
            return True
        return proc.poll() is not None

    _wait_for(ready_or_exited, CHILD_WAIT, poll=0.1)
    if held:
        return
    why = (
        f"the child exited with code {proc.returncode}"
        if proc.poll() is not None
        else f"no state to act on within {CHILD_WAIT} s"
    )
    trials = watch.trials() or []
    states = [(t.number, t.state.name, len(t.intermediate_values)) for t in trials]
    tail = Path(log).read_text(errors="replace")[-3000:] if Path(log).exists() else ""
    raise AssertionError(
        f"the study did not get going: {why}; trials {states}; child stderr:\n{tail}"
    )


def _fit_again(folder, run, before, *, more):
    """``fit`` again on the run folder of a killed fit, ``more`` trials past the ``before``
    ones: its result and the trials after it by number, none of ``before``'s lost."""
    result = autotransfer.fit(
        folder,
        run_dir=str(run),
        n_trials=len(before) + more,
        strategies=("feature_extraction", "partial_freeze"),
        trial_time_limit="20s",
        image_cache_memory=0,
        **TINY,
    )
    after = {t.number: t for t in study_of(run).get_trials()}
    assert trials_lost(before, after.values()) == []
    return result, after


# F1
def test_resume_after_the_process_is_killed_mid_study(folder, tmp_path):
    """On a streamed fit: a memory cap of 0 puts the decoded images in a memory map."""
    run = tmp_path / "run"
    proc, log = _start_script(tmp_path, FIT_SCRIPT, folder, run, "0")

    watch = _Watch(run)

    def three_done_and_one_running():
        # MLflow first (the slow query): the study's state, read last, is then fresh
        open_runs = {
            n
            for n, runs in _mlflow_children(run).items()
            for r in runs
            if r.info.status == "RUNNING"
        }
        trials = watch.trials()
        if not trials:
            return False
        done = sum(t.state == COMPLETE for t in trials)
        last = trials[-1]
        return (  # a fine-tuning trial in the middle of its epochs
            done >= 3
            and last.state == RUNNING
            and last.params.get("strategy") == "partial_freeze"
            and len(last.intermediate_values) >= 1
            # still training, not being recorded (F13 covers a kill there)
            and FINISHED_VALUE not in last.user_attrs
            and last.number in open_runs
        )

    try:
        _wait_for_child(proc, watch, three_done_and_one_running, log)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = study_of(run).get_trials()
    finished = {t.number: (t.params, t.value) for t in before if t.state == COMPLETE}
    # the kill lands a moment after the check: the trial may have finished training by then
    # (it is then recorded complete, as F13 checks); at most one trial runs at a time
    killed = [t.number for t in before if t.state == RUNNING]
    assert len(killed) == 1
    trained = FINISHED_VALUE in before[killed[0]].user_attrs
    if not trained:
        assert [r.info.status for r in _mlflow_children(run)[killed[0]]] == ["RUNNING"]

    result, after = _fit_again(folder, run, before, more=2)
    # none of the finished trials ran again
    reruns = [
        t
        for t in after.values()
        if t.number not in finished
        and t.state == COMPLETE
        and any(t.params == p for p, _ in finished.values())
    ]
    assert not reruns
    # the killed trial is marked failed, not left running, in the study and in MLflow
    children = _mlflow_children(run)
    for n in killed:
        if trained:  # it had finished training: recorded complete instead
            assert after[n].state == COMPLETE
            assert [r.info.status for r in children[n]] == ["FINISHED"]
            continue
        assert after[n].state == FAIL
        assert "died" in after[n].user_attrs["error"]
        assert [r.info.status for r in children[n]] == ["KILLED"]
        assert children[n][0].data.tags["autotransfer.state"] == "killed"
        # it ran again, with its parameters, in a run of its own that names the first
        (retry,) = [t for t in after.values() if t.system_attrs.get("retry_history") == [n]]
        assert retry.params == after[n].params and retry.state in (COMPLETE, PRUNED)
        assert "error" not in retry.user_attrs and retry.user_attrs.get("prior") == after[
            n
        ].user_attrs.get("prior")
        (retry_run,) = children[retry.number]
        assert retry_run.data.tags["autotransfer.retry_of"] == str(n)
        assert retry_run.data.tags["autotransfer.retry_of_run"] == children[n][0].info.run_id
    assert not [n for n, runs in children.items() for r in runs if r.info.status == "RUNNING"]
    for n in finished:
        assert [r.info.status for r in children[n]] == ["FINISHED"]
    # n_trials counts the retry, not the killed trial it replaces
    assert len(after) == len(before) + 2 + (0 if trained else 1)
    assert result.best.number in after and after[result.best.number].state == COMPLETE


# F10
def test_two_workers_share_one_study(folder, tmp_path):
    run = tmp_path / "run"
    fit_tiny(folder, run, n_trials=2, strategies=("feature_extraction",))
    before = study_of(run).get_trials()
    cmd = [sys.executable, "-m", "autotransfer", "-q", "worker", str(run), "--n-trials", "10"]
    workers = [subprocess.Popen(cmd, env=os.environ) for _ in range(2)]
    for w in workers:
        assert w.wait(timeout=300) == 0
    trials = study_of(run).get_trials()
    assert trials_lost(before, trials) == []
    pids = {t.user_attrs["worker"]["pid"] for t in trials[2:]}
    assert len(pids) == 2, pids  # both workers ran trials
    finished = [t for t in trials if t.state.is_finished()]
    assert 10 <= len(finished) <= 11  # a worker may start one as the other ends the last
    assert all(t.state == COMPLETE for t in finished)
    # the fit that started the study builds the result from every worker's trials
    result = fit_tiny(folder, run, n_trials=len(finished), strategies=("feature_extraction",))
    assert len(result.leaderboard) == len(finished)


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import dataclasses, sys, time, autotransfer
    from autotransfer.strategies.feature_extraction import FeatureExtraction

    class Slow:
        # a third-party strategy: epochs of 0.1 s, then a linear head on the features
        name, description, relative_cost = "slow", "sleeps between epochs", 0.5

        def suggest(self, space, *, search):
            return {"x": space.suggest_int("x", 0, 3)}

        def defaults(self, *, search):
            return {"x": 0}

        def train(self, ctx):
            for epoch in range(int(sys.argv[3])):
                time.sleep(0.1)
                ctx.report(epoch, {"val_accuracy": 0.5})
            return FeatureExtraction().train(dataclasses.replace(ctx, report=lambda e, m: None))

    class Plugin:
        @autotransfer.hookimpl
        def autotransfer_register_strategies(self):
            return [Slow()]

    autotransfer.register_plugin(Plugin(), name="slow_plugin")
    r = autotransfer.fit(sys.argv[1], run_dir=sys.argv[2], n_trials=200,
                         strategies=("feature_extraction", "slow"), pruner="none",
                         backbones=("random:test_resnet", "random:test_efficientnet"),
                         resolution=32, time_budget=None, progress=False)
    print("BEST", r.best.number, len(r.leaderboard), flush=True)
    """
)


def _ctrl_c_during_a_slow_trial(folder, tmp_path, epochs, presses):
    """Run the script in its own process group (a terminal's foreground job), press Ctrl-C
    ``presses`` times (1 s apart) during its first slow trial; the run folder, the trials
    before, the interrupted trial's number, the trials after and the script's output."""
    run = tmp_path / "run"
    proc, log = _start_script(
        tmp_path,
        CTRL_C_SCRIPT,
        folder,
        run,
        epochs,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )

    watch = _Watch(run)

    def slow_trial_under_way():
        # (the running trial, not the last: enqueued priors wait after it)
        trials = watch.trials() or []  # (None: no study yet)
        running = [t for t in trials if t.state == RUNNING]
        return (
            sum(t.state == COMPLETE for t in trials) >= 2
            and bool(running)
            and len(running[0].intermediate_values) >= 2
        )

    try:
        _wait_for_child(proc, watch, slow_trial_under_way, log)
        before = study_of(run).get_trials()
        for i in range(presses):
            if i:
                time.sleep(1.0)
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, _ = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + log.read_text(errors="replace")[-3000:]
    interrupted = next(t.number for t in before if t.state == RUNNING)
    return run, before, interrupted, study_of(run).get_trials(), out


# F2
def test_ctrl_c_stops_after_the_current_trial_and_returns_the_best(folder, tmp_path):
    run, before, interrupted, trials, out = _ctrl_c_during_a_slow_trial(
        folder, tmp_path, epochs=40, presses=1
    )
    assert trials_lost(before, trials) == []
    # the trial in progress finished normally, and no other started
    assert trials[interrupted].state == COMPLETE
    assert len(trials[interrupted].intermediate_values) == 40
    assert all(t.state == WAITING for t in trials[interrupted + 1 :])  # none started after
    best, n = out.split("BEST", 1)[1].split()
    assert trials[int(best)].state == COMPLETE and int(n) == interrupted + 1  # all that ran
    children = _mlflow_children(run)
    assert [r.info.status for r in children[interrupted]] == ["FINISHED"]


# F3
def test_ctrl_c_twice_stops_the_trial_and_closes_its_mlflow_run(folder, tmp_path):
    run, before, interrupted, trials, out = _ctrl_c_during_a_slow_trial(
        folder, tmp_path, epochs=600, presses=2
    )
    assert trials_lost(before, trials) == []
    assert trials[interrupted].state == FAIL
    assert trials[interrupted].user_attrs["error"] == "interrupted (Ctrl-C)"
    assert all(t.state == WAITING for t in trials[interrupted + 1 :])  # none started after
    best, n = out.split("BEST", 1)[1].split()
    assert trials[int(best)].state == COMPLETE and int(n) == interrupted + 1  # all that ran
    children = _mlflow_children(run)
    assert [r.info.status for r in children[interrupted]] == ["FAILED"]
    assert not [k for k, runs in children.items() for r in runs if r.info.status == "RUNNING"]


# F11
def test_a_damaged_plan_is_made_again_and_the_study_goes_on(folder, tmp_path, caplog):
    run = tmp_path / "run"
    kw = dict(trackers=(), strategies=("feature_extraction",), **TINY)
    autotransfer.fit(folder, run_dir=str(run), n_trials=2, **kw)
    before = study_of(run).get_trials()
    plan = (run / "plan.json").read_text()
    (run / "plan.json").write_text(plan[: len(plan) // 2])
    with caplog.at_level(logging.WARNING, logger="autotransfer"):
        result = autotransfer.fit(folder, run_dir=str(run), n_trials=4, **kw)
    assert "plan.json is unreadable" in caplog.text
    after = study_of(run).get_trials()
    assert trials_lost(before, after) == []
    assert [t.state for t in after] == [COMPLETE] * 4 and len(result.leaderboard) == 4
    assert (run / "plan.json").read_text() == plan


# F13
KILL_WHILE_RECORDING = textwrap.dedent(
    """
    import json, os, signal, sys, autotransfer
    from autotransfer import plugins

    class Killer:
        name = "killer"
        def fit_start(self, run): pass
        def trial_start(self, run, trial): pass
        def epoch_end(self, run, trial, epoch, metrics): pass
        def fit_end(self, run, result): pass
        def trial_end(self, run, record):
            if record.strategy == "partial_freeze" and record.state == "complete":
                with open(sys.argv[3], "w") as f:
                    json.dump({"number": record.number, "value": record.val_accuracy}, f)
                os.kill(os.getpid(), signal.SIGKILL)

    class Plugin:
        @autotransfer.hookimpl
        def autotransfer_register_trackers(self):
            return [Killer()]

    plugins.register_plugin(Plugin(), name="killer_plugin")
    trackers = ("killer", "mlflow") if sys.argv[4] == "before" else ("mlflow", "killer")
    autotransfer.fit(sys.argv[1], run_dir=sys.argv[2], n_trials=20, pruner="none",
                     strategies=("feature_extraction", "partial_freeze"), trackers=trackers,
                     backbones=("random:test_resnet", "random:test_efficientnet"),
                     resolution=32, time_budget=None, trial_time_limit="60s", progress=False)
    """
)


@pytest.mark.parametrize("mlflow_run", ["before", "after"])
def test_a_trial_killed_while_being_recorded_is_kept_complete(folder, tmp_path, mlflow_run):
    run, killed = tmp_path / "run", tmp_path / "killed.json"
    script = tmp_path / "fit.py"
    script.write_text(KILL_WHILE_RECORDING)
    proc = subprocess.run(
        [sys.executable, str(script), str(folder), str(run), str(killed), mlflow_run],
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=CHILD_WAIT,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    victim = json.loads(killed.read_text())
    n = victim["number"]
    before = study_of(run).get_trials()
    assert before[n].state == RUNNING  # Optuna was not told
    status = "RUNNING" if mlflow_run == "before" else "FINISHED"
    assert [r.info.status for r in _mlflow_children(run)[n]] == [status]

    result, after = _fit_again(folder, run, before, more=1)
    assert after[n].state == COMPLETE and after[n].value == victim["value"]
    assert "error" not in after[n].user_attrs
    runs = _mlflow_children(run)[n]
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert runs[0].data.tags["autotransfer.state"] == "complete"
    assert runs[0].data.metrics["val_accuracy"] == victim["value"]
    # its epochs were logged once, by the process that trained it
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{run / 'mlflow.db'}")
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "train_loss")]
    assert steps and len(steps) == len(set(steps))
    if result.best.number == n:
        assert autotransfer.load(checkpoint_dir(run, n)).classes == result.classes
