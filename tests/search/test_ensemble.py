"""Greedy ensemble selection (Caruana et al. 2004) and the ensemble served as one
Classifier: members fed as they were trained, save/load, TorchScript, ONNX, MLflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from autotransfer.architectures.ensemble import ARCH
from autotransfer.backbones.cuts import build_cut_model
from autotransfer.data.images import load_image
from autotransfer.errors import ConfigError
from autotransfer.model import Classifier, Preprocessing
from autotransfer.search.ensemble import (
    EnsembleChoice,
    choose_ensemble,
    ensemble_classifier,
    greedy_selection,
)

CLASSES = ("cat", "dog", "owl")
# two members fed differently: the first sets the ensemble's input (32 px, no crop)
PREP_A = Preprocessing(
    resolution=32,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    crop_pct=1.0,
    interpolation="bicubic",
)
PREP_B = Preprocessing(
    resolution=24, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=0.875, interpolation="bilinear"
)
WEIGHTS = (0.6, 0.4)


# ----- selection on recorded probabilities ------------------------------------------------


def _rows(p_true: list[float], y: np.ndarray, k: int) -> np.ndarray:
    """(N, k) probabilities: ``p_true`` on the true class, the rest on the next class."""
    n = len(y)
    p = np.full((n, k), 0.0)
    p[np.arange(n), y] = p_true
    p[np.arange(n), (y + 1) % k] += 1.0 - np.asarray(p_true)
    return p


def _complementary(n: int = 200, seed: int = 0) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Trials 4 and 7 are each right on a different half, confidently, and a close second
    on the other half; trial 2 is weaker everywhere; trial 9 is noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    first = np.arange(n) < n // 2
    a = _rows(np.where(first, 0.8, 0.4), y, 3)
    b = _rows(np.where(first, 0.4, 0.8), y, 3)
    weak = _rows(np.where(rng.random(n) < 0.4, 0.6, 0.3), y, 3)
    noise = rng.dirichlet(np.ones(3), n)
    return {4: a, 7: b, 2: weak, 9: noise}, y


def test_complementary_trials_make_a_kept_ensemble():
    probas, y = _complementary()
    choice = choose_ensemble(probas, y)
    assert choice is not None and choice.kept
    assert set(choice.weights) == {4, 7}
    assert choice.weights[4] == pytest.approx(0.5) and choice.weights[7] == pytest.approx(0.5)
    assert choice.best_trial == 4  # 4 and 7 tie on accuracy and log-loss: lower number
    assert choice.best_accuracy == 0.5 and choice.val_accuracy == 1.0
    assert choice.difference > choice.se > 0  # judged out of fold
    assert choice.reason.startswith("ensemble of 2 trials (#4 0.50, #7 0.50): +")
    assert choice.reason.endswith("kept")
    assert EnsembleChoice.from_dict(json.loads(json.dumps(choice.to_dict()))) == choice


def test_one_dominant_trial_is_not_worth_an_ensemble():
    # trials 1, 5 and 6 are trial 3 with noise on top: they add nothing but noise
    rng = np.random.default_rng(1)
    n = 300
    y = rng.integers(0, 3, n)
    strong = _rows(np.where(rng.random(n) < 0.9, 0.9, 0.2), y, 3)
    probas = {3: strong, **{t: (strong + rng.dirichlet(np.ones(3), n)) / 2 for t in (1, 5, 6)}}
    choice = choose_ensemble(probas, y)
    assert choice is not None and not choice.kept
    assert choice.reason.startswith("not kept")
    if len(choice.weights) == 1:  # nothing helped at all
        assert choice.weights == {choice.best_trial: 1.0}
        assert "nothing to add" in choice.reason
    else:
        assert choice.difference <= choice.se


def test_a_gain_within_one_standard_error_is_not_kept():
    # per row, the true-class probability of trial 1 and of trial 2 (two classes)
    kinds = {
        (0.9, 0.9): 80,  # both right
        (0.9, 0.2): 8,  # 1 right, 2 wrong, the mean right
        (0.36, 0.9): 3,  # 1 wrong, the mean right: the ensemble gains 3 images
        (0.61, 0.1): 2,  # 1 right, the mean wrong: the ensemble loses 2
        (0.3, 0.3): 7,  # both wrong
    }
    pairs = [pair for pair, count in kinds.items() for _ in range(count)]
    y = np.arange(len(pairs)) % 2
    probas = {1: _rows([a for a, _ in pairs], y, 2), 2: _rows([b for _, b in pairs], y, 2)}
    choice = choose_ensemble(probas, y)
    assert choice is not None and set(choice.weights) == {1, 2}
    assert choice.best_trial == 1 and choice.best_accuracy == 0.9
    assert choice.val_accuracy == pytest.approx(0.91)
    # in sample +1 point (3 images gained, 2 lost of 100); out of fold, no more than that
    assert choice.difference <= 0.01 and choice.difference <= choice.se
    assert not choice.kept
    assert choice.reason.startswith("not kept") and "within one standard error" in choice.reason


def test_fewer_than_two_trials_give_none():
    probas, y = _complementary()
    assert choose_ensemble({4: probas[4]}, y) is None


def test_selection_is_deterministic_and_ties_go_to_the_lower_trial():
    probas, y = _complementary()
    first = greedy_selection(probas, y)
    shuffled = {t: probas[t] for t in (9, 2, 7, 4)}
    assert greedy_selection(shuffled, y) == first == {4: 1, 7: 1}
    assert choose_ensemble(shuffled, y) == choose_ensemble(probas, y)
    # two copies of one trial: the lower number, alone (the selection stops at once)
    assert greedy_selection({5: probas[4], 2: probas[4]}, y) == {2: 1}


def _reference(probas: dict[int, np.ndarray], y: np.ndarray, rounds: int) -> dict[int, int]:
    """Caruana's selection written plainly: every round, every trial, best prefix."""

    def score(p: np.ndarray) -> tuple[float, float]:
        loss = -np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1.0)).mean()
        return float((p.argmax(1) == y).mean()), -float(loss)

    trials = sorted(probas)
    start = max(trials, key=lambda t: (score(probas[t]), -t))
    counts = {start: 1}
    best = (score(probas[start]), dict(counts))
    for _ in range(rounds):
        size = sum(counts.values())
        total = sum(probas[t] * c for t, c in counts.items())
        pick = max(trials, key=lambda t: (score((total + probas[t]) / (size + 1)), -t))
        counts[pick] = counts.get(pick, 0) + 1
        mixed = score(sum(probas[t] * c for t, c in counts.items()) / (size + 1))
        if mixed > best[0]:
            best = (mixed, dict(counts))
    return best[1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_selection_matches_a_plain_implementation(seed):
    rng = np.random.default_rng(seed)
    n, k = 150, 4
    y = rng.integers(0, k, n)
    probas = {}
    for t in range(6):  # trials of varied quality, a different signal each
        logits = rng.normal(size=(n, k))
        logits[np.arange(n), y] += rng.uniform(0.3, 1.5)
        e = np.exp(logits)
        probas[10 + t] = (e / e.sum(1, keepdims=True)).astype(np.float32)
    assert greedy_selection(probas, y, rounds=12) == _reference(probas, y, 12)


def test_selection_refuses_mismatched_probabilities():
    probas, y = _complementary()
    with pytest.raises(ConfigError, match="same validation images"):
        greedy_selection({**probas, 3: probas[4][:-1]}, y)
    with pytest.raises(ConfigError, match="class indices"):
        greedy_selection(probas, y + 5)
    with pytest.raises(ConfigError, match=r"trial\(s\) \[9\] are not all finite"):
        greedy_selection({**probas, 9: np.full_like(probas[9], np.nan)}, y)


# ----- the ensemble served as one Classifier ---------------------------------------------


def _member(arch: str, prep: Preprocessing, seed: int, cut: int | None = None, classes=CLASSES):
    torch.manual_seed(seed)
    if cut is None:
        module = timm.create_model(arch, pretrained=False, num_classes=len(classes))
    else:
        module = build_cut_model(arch, cut, len(classes))
    with torch.no_grad():  # a sharper head, so that any change of input shows in the output
        module.get_classifier().weight.mul_(10)
    return Classifier(module, classes=classes, preprocessing=prep, arch=arch)


@pytest.fixture(scope="module")
def members() -> list[Classifier]:
    # the second is cut after stage 2, so the ensemble also rebuilds a cut network
    return [_member("test_resnet", PREP_A, 0), _member("test_resnet", PREP_B, 1, cut=2)]


@pytest.fixture(scope="module")
def ensemble(members) -> Classifier:
    return ensemble_classifier(members, WEIGHTS, metadata={"trials": [4, 7]})


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> list[str]:
    """Real image files of several sizes: smooth colour fields, so that what a crop or a
    normalisation changes shows more than resampling does."""
    root = tmp_path_factory.mktemp("ensemble-images")
    rng = np.random.default_rng(0)
    out = []
    sizes = [(48, 48), (64, 64), (40, 40), (56, 56), (30, 30), (64, 48)]
    for i, size in enumerate(sizes):
        small = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
        path = root / f"{i}.{'jpg' if i == len(sizes) - 1 else 'png'}"
        small.resize(size, Image.BICUBIC).save(path)
        out.append(str(path))
    return out


def _pixels(clf: Classifier, paths: list[str]) -> torch.Tensor:
    """The ensemble's input: its preprocessing (no normalisation) of the files."""
    transform = clf.preprocessing.transform()
    return torch.stack([transform(load_image(p)) for p in paths])


def test_the_ensemble_is_a_plain_classifier(ensemble):
    assert ensemble.arch == ARCH and ensemble.classes == CLASSES and ensemble.cut is None
    # the input is what the first member resizes to (32 / 1.0 > floor(24 / 0.875) = 27)
    assert ensemble.preprocessing == Preprocessing(
        resolution=32, mean=(0, 0, 0), std=(1, 1, 1), crop_pct=1.0, interpolation="bicubic"
    )
    kwargs = json.loads(json.dumps(ensemble.model_kwargs))
    assert kwargs["weights"] == pytest.approx(list(WEIGHTS))
    assert [(m["arch"], m["cut"]) for m in kwargs["members"]] == [
        ("test_resnet", None),
        ("test_resnet", 2),
    ]
    assert kwargs["members"][1]["preprocessing"] == PREP_B.to_dict()
    with pytest.raises(ConfigError, match="no single classifier head"):
        ensemble.module.get_classifier()
    with pytest.raises(ConfigError, match="cannot take a new classifier head"):
        ensemble.module.reset_classifier(5)


def test_each_member_sees_the_images_as_its_own_preprocessing_does(ensemble, members, paths):
    x = _pixels(ensemble, paths)
    with torch.inference_mode():
        own = [m(x).exp().numpy() for m in ensemble.module.members]
    alone = [m.predict_proba(paths) for m in members]
    # the member that sets the input size: the same pixels, so the same answer
    np.testing.assert_allclose(own[0], alone[0], atol=1e-5)
    # the other is resampled from the ensemble's 32 px (28 px centre crop -> 24 px) instead
    # of from the file: measured max |diff| 0.007 (a missing crop: 0.03, A's mean/std: 0.26)
    np.testing.assert_allclose(own[1], alone[1], atol=0.015)
    mean = WEIGHTS[0] * alone[0] + WEIGHTS[1] * alone[1]
    proba = ensemble.predict_proba(paths)
    np.testing.assert_allclose(proba, mean, atol=0.01)  # measured 0.003
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    assert ensemble.predict(paths) == [CLASSES[i] for i in proba.argmax(1)]


def test_save_and_load_give_the_same_predictions(ensemble, paths, tmp_path):
    folder = ensemble.save(tmp_path / "ensemble")
    assert sorted(p.name for p in folder.iterdir()) == ["autotransfer.json", "model.safetensors"]
    loaded = Classifier.load(folder)
    assert loaded.arch == ARCH and loaded.preprocessing == ensemble.preprocessing
    assert loaded.metadata["trials"] == [4, 7]
    np.testing.assert_array_equal(loaded.predict_proba(paths), ensemble.predict_proba(paths))


def test_a_fresh_process_loads_the_saved_ensemble(ensemble, paths, tmp_path):
    folder = ensemble.save(tmp_path / "ensemble")
    code = (
        "import sys, numpy as np; from autotransfer.model import Classifier; "
        "clf = Classifier.load(sys.argv[1]); np.save(sys.argv[2], clf.predict_proba(sys.argv[3:]))"
    )
    out = tmp_path / "proba.npy"
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder), str(out), *paths[:2]],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(out), ensemble.predict_proba(paths[:2]), atol=1e-6)


def _logits(clf: Classifier, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return clf.module(x).numpy()


def test_torchscript_export_is_one_module_with_the_members_inside(ensemble, paths, tmp_path):
    path = ensemble.export_torchscript(tmp_path / "ensemble.torchscript.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.load(str(path))
    for n in (1, 3):
        x = _pixels(ensemble, paths[:n])
        with torch.inference_mode():
            got = traced(x).numpy()
        np.testing.assert_allclose(got, _logits(ensemble, x), rtol=1e-4, atol=1e-4)
    probs = torch.softmax(torch.from_numpy(got), 1).numpy()
    np.testing.assert_allclose(probs, ensemble.predict_proba(paths[:3]), atol=1e-5)


def test_onnx_export_with_a_dynamic_batch(ensemble, paths, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    path = ensemble.export_onnx(tmp_path / "ensemble.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 3):
        x = _pixels(ensemble, paths[:n])
        (got,) = session.run(["logits"], {"images": x.numpy()})
        np.testing.assert_allclose(got, _logits(ensemble, x), rtol=1e-4, atol=1e-4)
    sidecar = json.loads(Path(f"{path}.json").read_text())
    assert sidecar["arch"] == ARCH and sidecar["input"]["shape"] == ["batch", 3, 32, 32]


@pytest.mark.filterwarnings("ignore:.*input example was not provided")
def test_the_mlflow_pyfunc_model_predicts_like_the_ensemble(ensemble, paths, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    from autotransfer.tracking.logged_model import PYFUNC_CODE

    saved = ensemble.save(tmp_path / "classifier")
    local = tmp_path / "mlflow_model"
    # what autotransfer.tracking.logged_model.log_model_files writes, without a store
    mlflow.pyfunc.save_model(
        path=str(local),
        python_model=str(PYFUNC_CODE),
        artifacts={"model": str(saved)},
        signature=ModelSignature(
            inputs=Schema([ColSpec("string")]),
            outputs=Schema([ColSpec("string")]),
            params=ParamSchema([ParamSpec("proba", "boolean", False)]),
        ),
        pip_requirements=["autotransfer", "mlflow", "torch", "timm"],  # inferring them is slow
    )
    loaded = mlflow.pyfunc.load_model(str(local))
    assert loaded.predict(pd.DataFrame({"path": paths})) == ensemble.predict(paths)
    proba = loaded.predict(pd.DataFrame({"path": paths}), params={"proba": True})
    assert list(proba.columns) == list(CLASSES)
    np.testing.assert_allclose(proba.to_numpy(), ensemble.predict_proba(paths), atol=1e-6)


# ----- clear errors -------------------------------------------------------------------------


def test_members_with_other_classes_are_refused(members):
    other = _member("test_resnet", PREP_A, 2, classes=("cat", "owl", "dog"))
    with pytest.raises(ConfigError, match="same classes in the same order"):
        ensemble_classifier([members[0], other], [1, 1])


def test_weights_must_match_the_members(members):
    with pytest.raises(ConfigError, match="need 2 weights"):
        ensemble_classifier(members, [1.0])
    with pytest.raises(ConfigError, match="positive"):
        ensemble_classifier(members, [1.0, -1.0])


def test_the_architecture_has_no_pretrained_weights():
    with pytest.raises(ConfigError, match="no pretrained weights"):
        timm.create_model(ARCH, pretrained=True, num_classes=3, members=[], weights=[])
