"""Faults during a study: a killed process, a strategy that raises, CUDA out of memory, and
two workers on one study. Nothing that finished is lost or run again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import optuna
import pytest
import torch

import autotransfer
from autotransfer import plugins
from autotransfer.search.study import open_study
from autotransfer.strategies import loop
from autotransfer.strategies.models import new_classifier, preprocessing

from .conftest import TINY

COMPLETE = optuna.trial.TrialState.COMPLETE


def _study(run_dir):
    return open_study(run_dir, storage=None, study_name="autotransfer", seed=0, pruner="median")


@pytest.fixture
def extra_strategies():
    """Register strategies for one test; forget them afterwards."""

    def register(*strategies):
        class Plugin:
            @autotransfer.hookimpl
            def autotransfer_register_strategies(self):
                return list(strategies)

        plugins.register_plugin(Plugin(), name="test_strategies")

    yield register
    plugins.reset_plugin_manager()


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


def test_a_strategy_that_raises_is_a_failed_trial_and_the_study_goes_on(
    folder, tmp_path, extra_strategies
):
    extra_strategies(Broken())
    result = autotransfer.fit(
        folder, run_dir=str(tmp_path / "run"), n_trials=5, trackers=(),
        strategies=("feature_extraction", "broken"), **TINY,
    )
    failed = [r for r in result.leaderboard if r.state == "failed"]
    assert failed and all(r.strategy == "broken" for r in failed)
    assert all("the strategy broke on purpose" in r.error for r in failed)
    assert result.best.strategy == "feature_extraction"
    assert sum(r.state == "complete" for r in result.leaderboard) >= 2
    assert len(result.leaderboard) == 5


def test_cuda_out_of_memory_in_a_trial_retries_with_a_smaller_batch(
    folder, tmp_path, extra_strategies
):
    extra_strategies(OutOfMemoryAbove4())
    result = autotransfer.fit(
        folder, run_dir=str(tmp_path / "run"), n_trials=1, trackers=(), batch_size=16,
        strategies=("oom_above_4",), **TINY,
    )
    (trial,) = result.leaderboard
    assert trial.state == "complete"
    assert trial.info["batch_size"] == 4  # 16 -> 8 -> 4


FIT_SCRIPT = textwrap.dedent(
    """
    import sys, autotransfer
    autotransfer.fit(sys.argv[1], run_dir=sys.argv[2], n_trials=200, trackers=(), pruner="none",
                     strategies=("feature_extraction", "partial_freeze"),
                     backbones=("random:test_resnet", "random:test_efficientnet"),
                     resolution=32, time_budget=None, trial_time_limit="60s", progress=False)
    """
)


def _wait_for(predicate, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_resume_after_the_process_is_killed_mid_study(folder, tmp_path):
    run = tmp_path / "run"
    script = tmp_path / "fit.py"
    script.write_text(FIT_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(folder), str(run)], env=os.environ)

    def three_done_and_one_running():
        if not (run / "study.db").exists():
            return False
        try:
            trials = _study(run).get_trials()
        except Exception:
            return False
        if not trials:
            return False
        done = sum(t.state == COMPLETE for t in trials)
        last = trials[-1]
        return (  # a fine-tuning trial in the middle of its epochs
            done >= 3
            and last.state == optuna.trial.TrialState.RUNNING
            and last.params.get("strategy") == "partial_freeze"
            and len(last.intermediate_values) >= 1
        )

    try:
        assert _wait_for(three_done_and_one_running, 240), "the study did not get going"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = _study(run).get_trials()
    finished = {t.number: (t.params, t.value) for t in before if t.state == COMPLETE}
    killed = [t.number for t in before if t.state == optuna.trial.TrialState.RUNNING]
    assert killed

    result = autotransfer.fit(
        folder, run_dir=str(run), n_trials=len(before) + 2, trackers=(),
        strategies=("feature_extraction", "partial_freeze"), trial_time_limit="20s", **TINY,
    )
    after = {t.number: t for t in _study(run).get_trials()}
    # finished trials are kept as they were, and none of them ran again
    for number, (params, value) in finished.items():
        assert after[number].params == params and after[number].value == value
    reruns = [t for t in after.values() if t.number not in finished and t.state == COMPLETE
              and any(t.params == p for p, _ in finished.values())]
    assert not reruns
    # the killed trial is marked failed, not left running
    for n in killed:
        assert after[n].state == optuna.trial.TrialState.FAIL
        assert "died" in after[n].user_attrs["error"]
    assert len(after) == len(before) + 2
    assert result.best.number in after and after[result.best.number].state == COMPLETE


def test_two_workers_share_one_study(folder, tmp_path):
    run = tmp_path / "run"
    autotransfer.fit(folder, run_dir=str(run), n_trials=2, trackers=(),
                     strategies=("feature_extraction",), **TINY)
    cmd = [sys.executable, "-m", "autotransfer", "-q", "worker", str(run), "--n-trials", "10"]
    workers = [subprocess.Popen(cmd, env=os.environ) for _ in range(2)]
    for w in workers:
        assert w.wait(timeout=300) == 0
    trials = _study(run).get_trials()
    pids = {t.user_attrs["worker"]["pid"] for t in trials[2:]}
    assert len(pids) == 2, pids  # both workers ran trials
    finished = [t for t in trials if t.state.is_finished()]
    assert 10 <= len(finished) <= 11  # a worker may start one as the other ends the last
    assert all(t.state == COMPLETE for t in finished)
    # the fit that started the study builds the result from every worker's trials
    result = autotransfer.fit(folder, run_dir=str(run), n_trials=len(finished), trackers=(),
                              strategies=("feature_extraction",), **TINY)
    assert len(result.leaderboard) == len(finished)


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import sys, autotransfer
    r = autotransfer.fit(sys.argv[1], run_dir=sys.argv[2], n_trials=200, trackers=(),
                         strategies=("partial_freeze",), pruner="none",
                         backbones=("random:test_resnet",), top_k=1,
                         resolution=32, time_budget=None, progress=False)
    print("BEST", r.best.number, len(r.leaderboard), flush=True)
    """
)


def test_ctrl_c_stops_after_the_current_trial_and_returns_the_best(folder, tmp_path):
    run = tmp_path / "run"
    script = tmp_path / "fit.py"
    script.write_text(CTRL_C_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(folder), str(run)],
                            env=os.environ, stdout=subprocess.PIPE, text=True)

    def second_trial_under_way():
        try:
            trials = _study(run).get_trials()
        except Exception:
            return False
        return len(trials) >= 2 and trials[-1].state == optuna.trial.TrialState.RUNNING

    try:
        assert _wait_for(second_trial_under_way, 240)
        interrupted = _study(run).get_trials()[-1].number
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    trials = _study(run).get_trials()
    # the trial in progress finished normally, and no other started
    assert trials[interrupted].state == COMPLETE
    assert len(trials) == interrupted + 1
    assert "BEST" in out
