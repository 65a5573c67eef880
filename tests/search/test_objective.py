"""What the trials of one search share (search/search_run.SearchRun)."""

from __future__ import annotations

import autotransfer
from autotransfer.config import FitSettings
from autotransfer.search import runner
from autotransfer.search.budget import Budget
from autotransfer.search.plan import make_plan

BACKBONE = "random:test_resnet"
CUT = f"{BACKBONE}@2"


def test_a_trials_features_bring_its_networks_shortlisted_cuts(folder, tmp_path):
    # one pass of the whole network gives the validation features of its cut too
    s = FitSettings(backbones=(BACKBONE, CUT), strategies=("feature_extraction",),
                    resolution=32, trackers=(), time_budget=600)  # fmt: skip
    ds = autotransfer.open_folder(folder)
    plan = make_plan(ds, s, None, [BACKBONE, CUT])
    (tmp_path / "run").mkdir()
    _, sr = runner.prepare(tmp_path / "run", ds, s, plan, budget=Budget.start(600))
    whole = sr.features(BACKBONE, "val")
    got = sr.features(CUT, "val")
    assert got.meta["pass"] == BACKBONE
    assert len(got) == len(whole) == len(ds.val) > 0
