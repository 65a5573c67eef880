"""Progress and logging: the bars (scanning, feature extraction, the study with trials done,
best so far and time left), shown on a terminal only; ``-q`` hides bars and info lines,
``-v``/``-vv`` add debug lines; the flags work before or after the command."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

import pytest

import autotransfer
from autotransfer.cli.main import _configure_logging, _logging_flags

from .conftest import TINY

FIT = dict(TINY, trackers=(), strategies=("feature_extraction",))


def test_the_study_bar_shows_trials_done_best_so_far_and_time_left(folder, tmp_path, capsys):
    result = autotransfer.fit(
        folder,
        run_dir=str(tmp_path / "run"),
        n_trials=3,
        **{**FIT, "time_budget": "10m", "progress": True},
    )
    err = capsys.readouterr().err
    best = max(r.val_accuracy for r in result.leaderboard if r.val_accuracy is not None)
    assert "scanning" in err  # the folder's files
    assert "[1/2] random:test_resnet" in err and "[2/2] random:test_efficientnet" in err
    last = err.rsplit("trials:", 1)[1]  # the study bar's last refresh
    assert "3/3" in last and f"best={best:.4f}" in last and "left=9m" in last


def test_the_study_bar_counts_trials_without_a_trial_count(folder, tmp_path, capsys):
    autotransfer.fit(
        folder,
        run_dir=str(tmp_path / "run"),
        n_trials=None,
        **{**FIT, "time_budget": "15s", "progress": True},
    )
    last = capsys.readouterr().err.rsplit("trials:", 1)[1]
    assert "best=" in last and "left=" in last
    assert "/" not in last.split("[")[0]  # a count, no "done/total"


def test_no_bar_when_stderr_is_not_a_terminal(folder, tmp_path, capsys):
    autotransfer.fit(folder, run_dir=str(tmp_path / "run"), n_trials=2, **{**FIT, "progress": None})
    err = capsys.readouterr().err
    assert "trials:" not in err and "scanning" not in err and "best=" not in err


@pytest.mark.parametrize(
    "argv, verbose, quiet, rest",
    [
        (["fit", "data"], 0, False, ["fit", "data"]),
        (["-q", "fit", "data"], 0, True, ["fit", "data"]),
        (["fit", "data", "-q", "--n-trials", "3"], 0, True, ["fit", "data", "--n-trials", "3"]),
        (["-v", "rank", "data", "-v"], 2, False, ["rank", "data"]),
        (["-vv", "describe", "data"], 2, False, ["describe", "data"]),
        (["predict", "m", "--", "-q"], 0, False, ["predict", "m", "--", "-q"]),
    ],
)
def test_logging_flags_before_or_after_the_command(argv, verbose, quiet, rest):
    assert _logging_flags(argv) == (verbose, quiet, rest)


@pytest.mark.parametrize(
    "verbose, quiet, ours, others",
    [
        (0, True, logging.WARNING, logging.WARNING),
        (0, False, logging.INFO, logging.WARNING),
        (1, False, logging.DEBUG, logging.WARNING),
        (2, False, logging.DEBUG, logging.DEBUG),
    ],
)
def test_log_levels_of_each_mode(verbose, quiet, ours, others):
    root, lib = logging.getLogger(), logging.getLogger("autotransfer")
    saved = root.level, lib.level
    try:
        _configure_logging(verbose, quiet)
        assert (lib.level, root.level) == (ours, others)
    finally:
        root.setLevel(saved[0])
        lib.setLevel(saved[1])


def _cli_in_a_terminal(args, cwd) -> tuple[str, str]:
    """Run the command line with stderr on a pseudo-terminal (as in a shell); stdout, stderr."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 24 x 120
    proc = subprocess.Popen(
        [sys.executable, "-m", "autotransfer", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        cwd=cwd,
        env=os.environ,
    )
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the other end closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
        reader.join(timeout=10)
        os.close(master)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")
    return out.decode(), b"".join(chunks).decode(errors="replace")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_on_a_terminal_bars_and_info_lines_show_and_quiet_hides_them(folder, tmp_path):
    common = [
        "fit",
        str(folder),
        "--n-trials",
        "2",
        "--resolution",
        "32",
        "--no-tracking",
        "--backbones",
        ",".join(TINY["backbones"]),
        "--strategies",
        "feature_extraction",
    ]
    out, err = _cli_in_a_terminal([*common, "--run-dir", str(tmp_path / "a")], tmp_path)
    assert "pick: feature_extraction" in out
    assert "scanning" in err and "trials:" in err and "best=" in err
    assert "INFO autotransfer" in err and "DEBUG" not in err

    out, err = _cli_in_a_terminal([*common, "--run-dir", str(tmp_path / "b"), "-q"], tmp_path)
    assert "pick: feature_extraction" in out
    assert "scanning" not in err and "trials:" not in err and "best=" not in err
    assert "INFO" not in err
