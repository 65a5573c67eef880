"""When to transfer, end to end: the no-transfer baselines in the study, picked where they
win, and the verdict in the result, the CLI, the saved result, MLflow and the report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autotransfer.cli import main
from autotransfer.data.demo import write_digits_folder
from autotransfer.model import Classifier
from autotransfer.results import FitResult
from autotransfer.search.checkpoints import checkpoint_dir


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """scikit-learn's real digits (1,797 images of 32 px): raw pixels classify them well,
    the features of a randomly initialised network carry nothing learnt."""
    return write_digits_folder(tmp_path_factory.mktemp("digits") / "digits")


def test_raw_pixels_are_picked_where_they_win_and_the_verdict_says_so(digits, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["fit", str(digits), "--run-dir", str(run), "--backbones", "random:test_resnet"]
    argv += ["--strategies", "feature_extraction,raw_pixels", "--n-trials", "2"]
    assert main([*argv, "--resolution", "32"]) == 0  # tracked in MLflow, refit, ensemble
    out = capsys.readouterr().out
    assert "pick: raw_pixels (no transfer)" in out
    assert "verdict:    transfer does not help on this data" in out
    result = FitResult.load(run)
    best = result.best
    assert best.strategy == "raw_pixels" and not best.transfer and best.source == "none"
    assert best.val_accuracy > 0.9
    v = result.verdict
    assert v is not None and v.paired and v.outcome == "hurts"
    assert (v.baseline_trial, v.transfer_trial) == (best.number, 1 - best.number)
    assert v.difference == pytest.approx(v.transfer_accuracy - v.baseline_accuracy, abs=1e-3)
    assert "transfer does not help on this data" in v.sentence
    # the pick is the raw-pixel model, a torch module: predicting the validation split
    # through its own preprocessing gives the accuracy the trial was selected with
    assert result.model.arch == "autotransfer_pixels"
    searched = Classifier.load(checkpoint_dir(run, best.number))
    assert searched.evaluate(digits, split="val")["accuracy"] == pytest.approx(
        best.val_accuracy, abs=1e-9
    )
    # refit on train + validation (1,797 images), the selection and its figures kept
    assert result.refit["done"] and result.refit["images"] == 1797
    assert result.val_metrics["accuracy"] == best.val_accuracy
    assert result.model.metadata["refit"] and result.model.metadata["trial"] == best.number
    assert not np.array_equal(searched.module.head.weight, result.model.module.head.weight)
    # the verdict is kept with the result, in MLflow and in the report
    assert FitResult.load(run).verdict == v
    from mlflow.tracking import MlflowClient

    parent = MlflowClient(result.tracking["tracking_uri"]).get_run(result.tracking["parent_run_id"])
    assert parent.data.tags["autotransfer.verdict"] == v.sentence
    assert parent.data.tags["autotransfer.verdict_outcome"] == "hurts"
    assert parent.data.metrics["transfer_gain"] == pytest.approx(v.difference)
    html = result.report(log_to_mlflow=False).read_text()
    assert "Transfer verdict" in html and "transfer does not help on this data" in html
    # and it saves, loads and exports like any pick
    paths = [str(p) for p in sorted(digits.glob("*/00*.png"))[:6]]
    proba = result.predict_proba(paths)
    loaded = Classifier.load(result.model.save(tmp_path / "saved"))
    np.testing.assert_array_equal(loaded.predict_proba(paths), proba)
    onnx = pytest.importorskip("onnxruntime")
    path = loaded.export_onnx(tmp_path / "pixels.onnx")
    res = loaded.preprocessing.resolution
    x = np.random.default_rng(0).random((3, 3, res, res), dtype=np.float32)
    got = onnx.InferenceSession(str(path)).run(None, {"images": x})[0]
    with torch.no_grad():
        want = loaded.module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
