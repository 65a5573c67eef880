"""Trial models as artifacts of their MLflow runs: through a tracking server that serves
its artifacts (``mlflow server --serve-artifacts``), every worker of a study reaches them."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from autotransfer.tracking.base import RunContext
from autotransfer.tracking.mlflow_client import open_client
from autotransfer.tracking.mlflow_tracker import NAME
from autotransfer.tracking.parent_run import find_trial_runs

log = logging.getLogger(__name__)

ARTIFACT_PATH = "checkpoint"  # under the trial's run


class MlflowCheckpoints:
    """A :class:`~autotransfer.search.checkpoints.CheckpointStore` in the trials' MLflow
    runs; needs the MLflow tracker of the same fit (its runs are found through it)."""

    def __init__(self, run: RunContext) -> None:
        self.run = run

    def __repr__(self) -> str:
        return "MlflowCheckpoints()"

    def _state(self) -> dict:
        state = self.run.state.get(NAME)
        if not state:
            raise RuntimeError(
                "shared_checkpoints='mlflow' keeps the models in the trials' MLflow runs, "
                "but this fit has no MLflow run: add 'mlflow' to its trackers."
            )
        return state

    def put(self, number: int, local: Path) -> None:
        state = self._state()
        run_id = state["trial_runs"].get(str(number))
        if run_id is None:
            found = find_trial_runs(open_client(state["tracking_uri"]), state, number)
            if not found:
                raise RuntimeError(f"trial {number} has no MLflow run to keep its model in")
            run_id = found[0]
        open_client(state["tracking_uri"]).log_artifacts(run_id, str(local), ARTIFACT_PATH)

    def get(self, number: int, local: Path) -> bool:
        state = self._state()
        client = open_client(state["tracking_uri"])
        for run_id in find_trial_runs(client, state, number):
            names = {f.path for f in client.list_artifacts(run_id)}
            if ARTIFACT_PATH not in names:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                got = Path(client.download_artifacts(run_id, ARTIFACT_PATH, tmp))
                shutil.rmtree(local, ignore_errors=True)
                local.parent.mkdir(parents=True, exist_ok=True)
                shutil.copytree(got, local)
            return True
        return False
