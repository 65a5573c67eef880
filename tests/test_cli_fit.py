"""The fit-family commands end to end: fit, predict, evaluate, strategies, and the demo."""

from __future__ import annotations

import json

from autotransfer.cli import main

TINY = ["--backbones", "random:test_resnet,random:test_efficientnet", "--resolution", "32"]


def test_fit_then_predict_and_evaluate(image_folder, tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(
        [
            "-q",
            "fit",
            str(image_folder),
            *TINY,
            "--n-trials",
            "3",
            "--run-dir",
            str(run),
            "--strategies",
            "feature_extraction",
            "--no-tracking",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith("pick: feature_extraction on random:test_")
    assert "validation: accuracy" in out and "state" in out and "complete" in out
    assert f"autotransfer ui {run}" in out

    images = sorted(image_folder.rglob("*.png"))[:3]
    assert main(["predict", str(run), *map(str, images), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in rows] == [str(p) for p in images]
    assert all(r["label"] in ("cat", "dog", "owl") and 0 < r["confidence"] <= 1 for r in rows)
    # a folder is expanded to its images
    assert main(["predict", str(run), str(image_folder / "cat")]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 10

    assert main(["evaluate", str(run), str(image_folder), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["num_images"] == 30  # no test split: every image
    assert set(metrics) >= {"accuracy", "balanced_accuracy", "macro_f1", "log_loss"}


def test_fit_errors_are_one_line(image_folder, tmp_path, capsys):
    rc = main(
        [
            "-q",
            "fit",
            str(image_folder),
            "--augment",
            "crop",
            "--n-trials",
            "1",
            "--backbones",
            "nonexistent_net_xyz",
            "--run-dir",
            str(tmp_path / "r"),
        ]
    )
    assert rc == 2
    assert capsys.readouterr().err.startswith("error: ")
    rc = main(
        [
            "-q",
            "fit",
            str(image_folder),
            "--rank-share",
            "2",
            "--n-trials",
            "1",
            "--run-dir",
            str(tmp_path / "r"),
        ]
    )
    assert rc == 2 and "rank_share" in capsys.readouterr().err


def test_strategies_lists_the_builtins_with_their_distribution(capsys):
    assert main(["strategies", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for name in ("feature_extraction", "partial_freeze", "full_finetune", "discriminative_lr"):
        assert rows[name]["distribution"] == "autotransfer"
        assert rows[name]["description"]


def test_demo_describes_ranks_and_fits_the_digits(tmp_path, capsys):
    rc = main(
        [
            "-q",
            "demo",
            "--dest",
            str(tmp_path / "digits"),
            "--backbones",
            "random:test_resnet",
            "--resolution",
            "32",
            "--time-budget",
            "20s",
            "--run-dir",
            str(tmp_path / "run"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "$ autotransfer describe" in out and "$ autotransfer rank" in out
    assert "$ autotransfer fit" in out and "pick: " in out and "complete" in out
