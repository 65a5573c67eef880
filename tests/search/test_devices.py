"""One worker per device, tested on CPU "devices": the fit trains on the first and starts
an `autotransfer worker` process on each other one, on the same study."""

from __future__ import annotations

import os
import time

import pytest

from autotransfer.config import FitSettings
from autotransfer.errors import ConfigError

from .conftest import fit_tiny, study_of


def test_a_fit_on_two_devices_runs_trials_in_two_processes_within_its_budget(folder, tmp_path):
    run = tmp_path / "run"
    start = time.monotonic()
    result = fit_tiny(
        folder,
        run,
        devices=["cpu", "cpu"],
        time_budget="24s",
        strategies=("feature_extraction", "partial_freeze"),
        trial_time_limit="4s",
    )
    elapsed = time.monotonic() - start
    trials = [t for t in study_of(run).get_trials() if t.state.is_finished()]
    pids = {t.user_attrs["worker"]["pid"] for t in trials}
    assert os.getpid() in pids and len(pids) == 2, pids  # the fit, and the worker it started
    assert elapsed < 24 + 12  # the worker had the fit's time left, and the fit waited for it
    log = run / "logs" / "worker-cpu.log"
    assert log.exists()
    assert result.best.state == "complete" and len(result.leaderboard) == len(trials)


def test_devices_are_checked():
    assert FitSettings(n_trials=1, devices=["cuda:0", "cuda:1"]).device == "cuda:0"
    assert FitSettings(n_trials=1, devices="cpu").devices == ("cpu",)
    with pytest.raises(ConfigError, match="give devices alone"):
        FitSettings(n_trials=1, device="cuda:1", devices=["cuda:0"])
    with pytest.raises(ConfigError, match="devices must name"):
        FitSettings(n_trials=1, devices=[])
    s = FitSettings(n_trials=1, devices=["cuda:0", "cuda:1"])
    assert FitSettings.from_dict(s.to_dict()) == s
