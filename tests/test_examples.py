"""The examples run (with tiny backbones, so that the default test run stays fast)."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_rank_a_folder_example(image_folder, tiny_backbones):
    out = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "rank_a_folder.py"),
            str(image_folder),
            "--backbones",
            ",".join(tiny_backbones),
            "--resolution",
            "48",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert "30 images, 3 classes" in out
    assert "shortlist for the search:" in out and tiny_backbones[0] in out


def _run_example(name, *args):
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout


def test_quickstart_example(image_folder, tiny_backbones, tmp_path):
    out = _run_example(
        "quickstart.py", image_folder, "--backbones", ",".join(tiny_backbones),
        "--trials", 3, "--time-budget", "20s", "--resolution", 32,
        "--run-dir", tmp_path / "run", "--no-tracking",
    )  # fmt: skip
    assert "picked: " in out and "validation accuracy" in out
    assert "feature_extraction" in out  # the leaderboard
    assert "cat/cat_000.png -> " in out and "reloaded, it predicts" in out
    assert (tmp_path / "run" / "best-model").is_dir()


def test_custom_strategy_example(image_folder, tiny_backbones, tmp_path):
    out = _run_example(
        "custom_strategy.py", image_folder, "--backbones", tiny_backbones[0],
        "--trials", 2, "--resolution", 32, "--run-dir", tmp_path / "run",
    )  # fmt: skip
    rows = [line.split() for line in out.splitlines() if " complete " in line]
    assert {row[-2] for row in rows} == {"head_only_adamw", "feature_extraction"}
    assert "picked: " in out
