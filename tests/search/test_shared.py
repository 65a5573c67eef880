"""Studies that span machines, on one: the shared checkpoints, and a worker that joins
through the storage alone (its own run folder, nothing of the fit's but the URLs)."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

import autotransfer
from autotransfer.errors import ConfigError
from autotransfer.search.selection import ranked
from autotransfer.search.shared_study import join

from ..support import autotransfer_cli
from .conftest import fit_tiny, study_of


def test_a_pick_kept_only_in_the_shared_folder_loads_from_it_without_training(
    folder, tmp_path, caplog
):
    shared, run = tmp_path / "shared", tmp_path / "run"
    opts = dict(n_trials=3, strategies=("feature_extraction", "partial_freeze"))
    first = fit_tiny(folder, run, shared_checkpoints=str(shared), **opts)
    best = first.best.number
    assert (shared / f"trial-{best:04d}" / "autotransfer.json").exists()
    paths = sorted(str(p) for p in folder.rglob("*.png"))
    # as if the trial had run on another machine: nothing of it in this run folder
    shutil.rmtree(run / "checkpoints")
    shutil.rmtree(run / "model")
    with caplog.at_level(logging.INFO, logger="autotransfer"):
        again = fit_tiny(folder, run, shared_checkpoints=shared.as_uri(), **opts)
    assert again.best.number == best
    assert f"Trial {best}'s model came from the shared checkpoints" in caplog.text
    assert "training it again" not in caplog.text
    np.testing.assert_allclose(again.predict_proba(paths), first.predict_proba(paths), atol=1e-5)
    assert autotransfer.load(run).best.number == best


def test_a_worker_joining_by_the_storage_alone_and_ending_last_builds_the_result(folder, tmp_path):
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    shared = tmp_path / "shared"
    fit_tiny(
        folder, run, n_trials=2, strategies=("feature_extraction",), shared_checkpoints=str(shared)
    )
    storage = f"sqlite:///{run / 'study.db'}"
    elsewhere.mkdir()
    done = autotransfer_cli("worker", "--storage", storage, "--n-trials", "4", cwd=elsewhere)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "worker ran 2 trials" in done.stdout
    own = elsewhere / "autotransfer-runs" / "autotransfer-worker"
    assert (own / "plan.json").exists() and (own / "fit_settings.json").exists()
    trials = study_of(run).get_trials()
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    # it ended after the fit, last, with trials the fit's result did not count: it built
    # the result from every trial, in its own run folder
    theirs_result = autotransfer.load(own)
    assert len(theirs_result.leaderboard) == 4
    assert theirs_result.best.number == ranked(trials)[0].number
    # its kept models went to the shared folder, none to the fit's run folder
    theirs = [t.number for t in trials[2:]]
    assert not [n for n in theirs if (run / "checkpoints" / f"trial-{n:04d}").exists()]
    kept = {p.name for p in shared.iterdir() if not p.name.startswith(".")}
    result = fit_tiny(folder, run, n_trials=4, strategies=("feature_extraction",),
                      shared_checkpoints=str(shared))  # fmt: skip
    assert f"trial-{result.best.number:04d}" in kept or result.best.number < 2


def test_joining_names_what_is_missing(tmp_path, folder):
    storage = f"sqlite:///{tmp_path / 'nothing.db'}"
    with pytest.raises(ConfigError, match="There is no study 'autotransfer' in the storage"):
        join(storage, "autotransfer", tmp_path / "w")
    with pytest.raises(ConfigError, match="the fit's run folder, or the study's --storage"):
        autotransfer.run_worker()
