"""Bad inputs end to end (issue 5): what the user sees on the command line, a real tiny fit
on a folder full of bad files, and file names a shell would execute.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import autotransfer
from autotransfer import DataError, DataWarning
from autotransfer.cli import main
from autotransfer.testing import images as ti

CLASSES = ("cat", "dog", "owl")
BAD = {  # file under the dataset folder -> what is wrong with it
    "cat/corrupt.png": ti.write_corrupt,
    "cat/truncated.jpg": ti.write_truncated_jpeg,
    "cat/empty.jpg": ti.write_empty,
    "dog/text.jpg": ti.write_text_as_image,
    "dog/notes.txt": ti.write_text_as_image,
    "dog/bomb.png": ti.write_decompression_bomb,
    "owl/pipe.jpg": os.mkfifo,
    "owl/mem.jpg": lambda p: os.symlink("/proc/self/mem", p),  # reading fails (EIO)
    "owl/gone.png": lambda p: os.symlink("/nonexistent/gone.png", p),
    "stray.png": lambda p: ti.write_image(p, ti.class_image(7)),  # not in a class folder
}
ODD = {  # usable images in other modes and shapes: converted, kept
    "cat/gray.png": ti.write_grayscale,
    "cat/deep 16-bit.png": ti.write_16bit_png,
    "dog/cmyk.jpg": ti.write_cmyk_jpeg,
    "dog/rgba.png": ti.write_rgba,
    "owl/palette.png": ti.write_palette,
    "owl/portrait ü.jpg": ti.write_exif_rotated_jpeg,
    "owl/dot.png": lambda p: ti.write_image(p, ti.class_image(2, (1, 1))),
}


def messy_folder(root: Path, per_class: int = 8) -> Path:
    ti.make_image_folder(root, classes=CLASSES, per_class=per_class)
    for name, write in {**BAD, **ODD}.items():
        write(root / name)
    return root


def test_cli_describe_shows_the_skip_count_and_names(tmp_path, capsys):
    root = messy_folder(tmp_path / "data")
    with pytest.warns(DataWarning) as caught:
        assert main(["describe", str(root), "--no-similarity"]) == 0
    out = capsys.readouterr().out
    assert f"skipped      {len(BAD)} files" in out
    (told,) = [str(w.message) for w in caught if "Skipped" in str(w.message)]
    assert told.startswith(f"Skipped {len(BAD)} files under {root} that cannot be used: ")
    first = sorted(BAD)[:5]  # five are named, then a count
    assert all(f"{name} (" in told for name in first) and "and 5 more" in told
    assert "Fix or remove them" in told and "--strict" in told
    # --strict: one error line that lists every file, and exit status 2
    assert main(["describe", str(root), "--no-similarity", "--strict"]) == 2
    err = capsys.readouterr().err
    error = err[err.index("error: ") :]  # log lines may come first
    assert error.startswith(f"error: {len(BAD)} file(s) under {root} cannot be used")
    assert all(str(root / name) in error for name in BAD)


def test_the_terminal_shows_the_skipped_files(tmp_path):
    """What a user running the command sees: stdout and stderr of a real process."""
    root = messy_folder(tmp_path / "data")
    proc = subprocess.run(
        [sys.executable, "-m", "autotransfer", "describe", str(root), "--no-similarity"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"skipped      {len(BAD)} files" in proc.stdout
    assert f"Skipped {len(BAD)} files under {root}" in proc.stderr
    for name in BAD:  # the log line lists every one with its reason
        assert f"skipped {root / name}: " in proc.stderr


def test_fit_on_a_folder_full_of_bad_files(tmp_path, capsys):
    root = messy_folder(tmp_path / "data")
    run = tmp_path / "run"
    with pytest.warns(DataWarning, match=f"Skipped {len(BAD)} files"):
        result = autotransfer.fit(
            root, run_dir=str(run), n_trials=3, trackers=(), progress=False,
            strategies=("feature_extraction", "partial_freeze"), trial_time_limit="30s",
            backbones=("random:test_resnet",), resolution=32, time_budget=None,
        )  # fmt: skip
    assert len(result.leaderboard) == 3 and result.best.state == "complete"
    assert all(r.state in ("complete", "pruned") and not r.error for r in result.leaderboard)
    assert result.descriptor.skipped_files == len(BAD)
    assert json.loads((run / "descriptor.json").read_text())["skipped_files"] == len(BAD)
    assert result.descriptor.num_images == 3 * 8 + len(ODD)
    assert set(result.descriptor.color_modes) >= {"L", "P", "RGBA", "CMYK"}
    # the odd images predict like any other
    labels = result.predict([str(root / name) for name in ODD])
    assert len(labels) == len(ODD) and set(labels) <= set(CLASSES)
    # a bad file given to predict is an error naming it, never a hang or a traceback
    for name, what in [("cat/corrupt.png", "corrupt"), ("owl/pipe.jpg", "named pipe")]:
        with pytest.raises(DataError, match=what) as err:
            result.predict([str(root / name)])
        assert str(root / name) in str(err.value)
    assert main(["predict", str(run), str(root / "owl/mem.jpg")]) == 2
    err = capsys.readouterr().err
    assert f"error: Cannot read image {root / 'owl/mem.jpg'}: cannot read file" in err


SHELL_NAMES = (
    "$(touch pwned1).jpg",
    "; rm -rf victim.png",
    "`touch pwned2`.png",
    'it\'s "quoted" & echo pwned3 > pwned3.png',
    "$HOME *.png",
    "-rf --help.png",
)
SHELL_CLASSES = ("$(touch pwned4)", "a b; touch pwned5 #")


def test_shell_metacharacters_in_file_names_are_never_executed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # where a shell would have run those commands
    (tmp_path / "victim.png").write_bytes(b"must survive")
    root = ti.make_image_folder(tmp_path / "data", classes=SHELL_CLASSES, per_class=4)
    paths = []
    for i, name in enumerate(SHELL_NAMES):
        label = SHELL_CLASSES[i % 2]
        img = ti.class_image(i % 2, rng=np.random.default_rng(100 + i))  # no duplicates
        paths.append(ti.write_image(root / label / name, img, format="PNG"))

    d = autotransfer.describe(root, similarity=False)
    assert sorted(d.class_counts) == sorted(SHELL_CLASSES) and d.num_images == 14
    result = autotransfer.fit(
        root, run_dir=str(tmp_path / "run"), n_trials=1, trackers=(), progress=False,
        strategies=("feature_extraction",), backbones=("random:test_resnet",), resolution=32,
        time_budget=None,
    )  # fmt: skip
    assert set(result.predict([str(p) for p in paths])) <= set(SHELL_CLASSES)
    assert main(["-q", "predict", str(tmp_path / "run"), *map(str, paths)]) == 0
    printed = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert printed == [str(p) for p in paths]  # verbatim: no expansion, no splitting

    assert not list(tmp_path.rglob("pwned*")) and not list(Path.cwd().glob("pwned*"))
    assert (tmp_path / "victim.png").read_bytes() == b"must survive"


def test_no_dataset_path_reaches_a_shell():
    """The package never calls a shell: no os.system, os.popen, os.exec*/spawn* or
    shell=True, and every subprocess gets an argument list, not a command string. (The one
    place that starts one: tracking/server_process.py, for the MLflow UI, given a run
    folder, host and port.)"""
    package = Path(autotransfer.__file__).parent
    spawners, offences = set(), []
    for source in sorted(package.rglob("*.py")):
        where = source.relative_to(package).as_posix()
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if any(k.arg == "shell" for k in node.keywords):
                offences.append(f"{where}: {name}(shell=...)")
            if name.startswith(("os.system", "os.popen", "os.exec", "os.spawn", "pty.")):
                offences.append(f"{where}: {name}")
            if name.startswith("subprocess.") and name[11:] in (
                "run",
                "Popen",
                "call",
                "check_call",
                "check_output",
            ):
                spawners.add(where)
                first = node.args[0] if node.args else None
                if not isinstance(first, (ast.List, ast.Name)):  # a list, or a list variable
                    offences.append(f"{where}: {name}({ast.unparse(first) if first else ''})")
    assert not offences
    assert "tracking/server_process.py" in spawners  # the one place that starts a server
    assert not any(w.startswith("data/") for w in spawners)
