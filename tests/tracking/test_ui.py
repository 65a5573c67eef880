"""The UI command: it opens the store the tracker wrote, on this machine only by default."""

from __future__ import annotations

import json
import sys
import urllib.parse
import urllib.request

import pytest

from autotransfer.errors import AutoTransferError, ConfigError
from autotransfer.tracking.mlflow_tracker import MLflowTracker
from autotransfer.tracking.store import tracking_uri_of, write_record
from autotransfer.tracking.ui import NoTrackingStoreError, serve_ui, ui_command, ui_environment

from ..support import free_port, serving


@pytest.fixture(scope="module")
def tracked_dir(tmp_path_factory, dataset, make_run):
    """A run folder whose fit started (and ended) with the MLflow tracker."""
    run = make_run(tmp_path_factory.mktemp("ui") / "my run #1?", dataset)
    tracker = MLflowTracker()
    tracker.fit_start(run)
    tracker.fit_end(run, None)
    return run


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_command_serves_the_run_folders_store_on_localhost(tracked_dir):
    run_dir = tracked_dir.run_dir
    args = ui_command(run_dir)
    assert args[:4] == [sys.executable, "-m", "mlflow", "server"]
    assert _option(args, "--backend-store-uri") == tracked_dir.state["mlflow"]["tracking_uri"]
    db = f"{run_dir.resolve()}/mlflow.db".replace("#", "%23").replace("?", "%3F")
    assert _option(args, "--backend-store-uri") == f"sqlite:///{db}"
    assert (run_dir / "mlflow.db").is_file()
    assert _option(args, "--default-artifact-root") == (run_dir / "mlartifacts").resolve().as_uri()
    assert _option(args, "--host") == "127.0.0.1"
    assert _option(args, "--port") == "5000"
    assert all(isinstance(a, str) for a in args)


def test_host_and_port_on_request(tracked_dir):
    args = ui_command(tracked_dir.run_dir, host="0.0.0.0", port=8080)
    assert (_option(args, "--host"), _option(args, "--port")) == ("0.0.0.0", "8080")
    with pytest.raises(ConfigError, match="port"):
        ui_command(tracked_dir.run_dir, port=70000)


def test_folder_without_store_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoTrackingStoreError, match="has no MLflow store.*autotransfer fit"):
        ui_command(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        serve_ui(tmp_path / "missing")
    assert issubclass(NoTrackingStoreError, AutoTransferError)


def test_store_recorded_by_the_fit_or_given(tmp_path):
    run_dir = tmp_path / "run"
    write_record(run_dir, {"tracking_uri": "postgresql://db/mlflow", "parent_run_id": "abc"})
    assert tracking_uri_of(run_dir) == "postgresql://db/mlflow"
    args = ui_command(run_dir)
    assert _option(args, "--backend-store-uri") == "postgresql://db/mlflow"
    assert "--default-artifact-root" not in args  # the experiments know their artifacts
    given = ui_command(tmp_path / "other", tracking_uri="sqlite:////data/mlflow.db")
    assert _option(given, "--backend-store-uri") == "sqlite:////data/mlflow.db"


def test_runs_tracked_on_a_server_have_no_store_to_serve(tmp_path):
    write_record(tmp_path, {"tracking_uri": "http://mlflow.example.com:5000"})
    with pytest.raises(NoTrackingStoreError, match="Open that server's UI"):
        ui_command(tmp_path)


def test_write_record_exclusive_keeps_the_first(tmp_path):
    assert write_record(tmp_path, {"parent_run_id": "first"}, exclusive=True)
    assert not write_record(tmp_path, {"parent_run_id": "second"}, exclusive=True)
    record = json.loads((tmp_path / "tracking" / "mlflow.json").read_text())
    assert record == {"parent_run_id": "first"}
    assert [p.name for p in (tmp_path / "tracking").iterdir()] == ["mlflow.json"]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read() or b"{}")


def test_the_ui_server_shows_the_tracked_run(tracked_dir, tmp_path):
    port = free_port()
    args = ui_command(tracked_dir.run_dir, port=port)
    base = f"http://127.0.0.1:{port}"
    with serving(args, url=base, log=tmp_path / "server.log", env=ui_environment(), timeout=90):
        name = urllib.parse.quote(tracked_dir.state["mlflow"]["experiment_name"])
        experiment = _get(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}")
        assert (
            experiment["experiment"]["experiment_id"]
            == tracked_dir.state["mlflow"]["experiment_id"]
        )
        run_id = tracked_dir.state["mlflow"]["parent_run_id"]
        run = _get(f"{base}/api/2.0/mlflow/runs/get?run_id={run_id}")
        assert run["run"]["info"]["run_name"] == "my run #1?"
        artifacts = _get(f"{base}/api/2.0/mlflow/artifacts/list?run_id={run_id}")
        assert "settings.json" in {f["path"] for f in artifacts.get("files", [])}
