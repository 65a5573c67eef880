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
