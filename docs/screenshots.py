"""Regenerate the screenshots in docs/ from a real fit on a real dataset.

    python docs/screenshots.py                 # or: make screenshots
    python docs/screenshots.py --time-budget 5m --keep /tmp/shots

Fits ``../shared/datasets/hymenoptera`` (ants vs bees, 244 train / 153 test photos) when
it is there, else scikit-learn's handwritten digits (the data of ``autotransfer demo``),
with a short budget; runs ``autotransfer ui`` on the run folder and opens it in headless
Chromium (Selenium and chromedriver, through the browser tests' ``tests/browser/driver.py``),
expands the parent run, adds metric columns and saves ``docs/mlflow-ui-trials.png``; then
runs ``autotransfer report`` and saves the top of the page as ``docs/report.png`` and its
leaderboard and learning curves as ``docs/report-trials.png``. Every step is the real
command, as a user would run it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # the browser tests' driver, MLflow UI steps and server

from tests.browser import mlflow_ui  # noqa: E402
from tests.browser.driver import chrome, find_binaries, screenshot, wait_for  # noqa: E402
from tests.support import ServerDidNotStart, free_port, serving  # noqa: E402

HYMENOPTERA = DOCS.parent.parent / "shared" / "datasets" / "hymenoptera"
METRICS = ["val_accuracy", "val_log_loss", "epochs"]  # of each trial run
HIDDEN = ["Dataset", "Source", "Models"]  # room for the run names and the metrics
MAX_BYTES = 500_000
SHOTS = ("mlflow-ui-trials.png", "report.png", "report-trials.png")


def autotransfer(*args: str) -> list[str]:
    return [sys.executable, "-m", "autotransfer", *args]


def dataset(work: Path) -> Path:
    if HYMENOPTERA.is_dir():
        return HYMENOPTERA
    from autotransfer.data.demo import write_digits_folder

    return write_digits_folder(work / "digits")


def fit(data: Path, run_dir: Path, budget: str) -> None:
    args = ["fit", str(data), "--run-dir", str(run_dir), "--time-budget", budget]
    args += ["--resolution", "128", "--top-k", "2"]
    print("$ autotransfer", *args, flush=True)
    subprocess.run(autotransfer(*args), check=True)


def screenshot_ui(run_dir: Path, work: Path, out: Path, *, width: int, height: int) -> None:
    from mlflow import MlflowClient

    from autotransfer.tracking.store import read_record, tracking_uri_of

    record = read_record(run_dir)
    client = MlflowClient(tracking_uri_of(run_dir))
    parent = record["parent_run_id"]
    children = [
        r.info.run_id
        for r in client.search_runs(
            [record["experiment_id"]], f"tags.mlflow.parentRunId = '{parent}'"
        )
    ]
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    print(f"$ autotransfer ui {run_dir} --port {port}", flush=True)
    base = f"http://127.0.0.1:{port}"
    command = autotransfer("ui", str(run_dir), "--port", str(port))
    try:
        with serving(command, url=base, log=work / "ui.log", env=env):
            with chrome(width=width, height=height) as driver:
                driver.get(mlflow_ui.runs_url(base, record["experiment_id"]))
                mlflow_ui.wait_for_runs(driver, [parent])
                mlflow_ui.close_assistant(driver)
                mlflow_ui.expand(driver, parent, children)
                mlflow_ui.hide_columns(driver, HIDDEN)
                mlflow_ui.show_columns(driver, METRICS)
                mlflow_ui.fit_column(driver, "attributes.`Run Name`")
                time.sleep(1)  # the column's new width settles
                screenshot(driver, out)
    except ServerDidNotStart as e:
        raise SystemExit(str(e)) from None


def screenshot_report(run_dir: Path, work: Path, out: Path, *, width: int, height: int) -> None:
    html = work / "report.html"
    args = ["report", str(run_dir), "--output", str(html)]
    print("$ autotransfer", *args, flush=True)
    subprocess.run(autotransfer(*args), check=True)
    with chrome(width=width, height=height) as driver:
        driver.get(html.as_uri())
        wait_for(
            driver,
            "document.readyState === 'complete' && [...document.images].every(i => i.complete)",
        )
        screenshot(driver, out)
        # the trials: the leaderboard and the learning curves
        screenshot(driver, out.with_name("report-trials.png"), between="#leaderboard, #curves")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="default: hymenoptera, else digits")
    ap.add_argument("--time-budget", default="3m", help="the fit's budget (default 3m)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the run folder here")
    ap.add_argument("--out", type=Path, default=DOCS, help="where the PNGs go (default docs/)")
    args = ap.parse_args(argv)
    found, missing = find_binaries()
    if found is None:
        raise SystemExit(f"Cannot take screenshots: {missing}")
    work = args.keep or Path(tempfile.mkdtemp(prefix="autotransfer-screenshots-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        data = args.data or dataset(work)
        run_dir = work / data.name  # the parent run's and the experiment's name
        if not (run_dir / "model").is_dir():
            fit(data, run_dir, args.time_budget)
        shots = [args.out / name for name in SHOTS]
        screenshot_ui(run_dir, work, shots[0], width=1440, height=720)
        screenshot_report(run_dir, work, shots[1], width=1280, height=1000)
        for shot in shots:
            size = shot.stat().st_size
            print(f"{shot} ({size // 1024} KB)")
            if size > MAX_BYTES:
                print(f"  larger than {MAX_BYTES // 1000} KB: use a smaller viewport", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
