"""Classifier: every input kind agrees, save/load without pickle, evaluate, exports."""

from __future__ import annotations

import json
import pickle
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from autotransfer.backbones.inputs import data_config, eval_transform
from autotransfer.backbones.spec import BackboneSpec, WeightsRef
from autotransfer.data.images import load_image
from autotransfer.errors import AutoTransferError, ConfigError, DataError
from autotransfer.model import Classifier, MissingDependencyError, ModelFileError, Preprocessing
from autotransfer.testing.images import make_image_folder, write_text_as_image

CLASSES = ("cat", "dog", "owl")
PREP = Preprocessing(resolution=48, mean=(0.48, 0.46, 0.41), std=(0.23, 0.22, 0.23))


def tiny_classifier(arch: str = "test_resnet", classes=CLASSES, **kwargs) -> Classifier:
    torch.manual_seed(0)
    module = timm.create_model(arch, pretrained=False, num_classes=len(classes), **kwargs)
    with torch.no_grad():  # a sharper head, so that any change of input shows in the output
        module.get_classifier().weight.mul_(30)
    return Classifier(
        module,
        classes=classes,
        preprocessing=PREP,
        arch=arch,
        model_kwargs=kwargs,
        metadata={"backbone": f"random:{arch}"},
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("m") / "data", classes=CLASSES, per_class=4)


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return tiny_classifier()


@pytest.fixture(scope="module")
def paths(folder) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*.*"))[:5]


# ----- Preprocessing -------------------------------------------------------------------------


def test_preprocessing_round_trips_through_json():
    d = json.loads(json.dumps(PREP.to_dict()))
    assert Preprocessing.from_dict(d) == PREP
    assert PREP.timm_config() == {
        "input_size": (3, 48, 48),
        "mean": PREP.mean,
        "std": PREP.std,
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "crop_mode": "center",
    }


def test_preprocessing_from_spec_matches_the_feature_pass(folder):
    spec = BackboneSpec(
        id="random:test_resnet",
        arch="test_resnet",
        weights=WeightsRef(source="random", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        input_size=160,
        crop_pct=0.95,
        interpolation="bilinear",
    )
    p = Preprocessing.from_spec(spec, resolution=40)
    assert (p.resolution, p.mean, p.crop_pct, p.interpolation) == (
        40,
        spec.weights.mean,
        0.95,
        "bilinear",
    )
    assert Preprocessing.from_spec(spec).resolution == 160
    img = load_image(next(folder.rglob("*.png")))
    expected = eval_transform(data_config(spec, 40))(img)
    assert torch.equal(p.transform()(img), expected)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"resolution": 0}, "resolution"),
        ({"std": (0.2, 0.0, 0.2)}, "positive"),
        ({"mean": (0.5, 0.5)}, "three"),
        ({"crop_pct": 1.5}, "crop_pct"),
        ({"interpolation": "cubic"}, "bicubic"),
    ],
)
def test_preprocessing_rejects_bad_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Preprocessing(**{**PREP.to_dict(), **kwargs})


# ----- predict -------------------------------------------------------------------------------


def test_every_input_kind_gives_the_same_probabilities(clf, paths):
    expected = clf.predict_proba(paths)
    assert expected.shape == (len(paths), 3) and expected.dtype == np.float32
    np.testing.assert_allclose(expected.sum(axis=1), 1.0, rtol=1e-5)
    assert np.ptp(expected[:, 0]) > 1e-3  # the images get different answers

    pils = [load_image(p) for p in paths]
    arrays = [np.array(im) for im in pils]
    uint8 = [torch.from_numpy(a).permute(2, 0, 1) for a in arrays]
    floats = [t.float() / 255 for t in uint8]
    for name, inputs in {
        "paths as Path": [Path(p) for p in paths],
        "PIL": pils,
        "PIL RGBA": [im.convert("RGBA") for im in pils],
        "numpy HWC uint8": arrays,
        "numpy HWC float": [a / 255.0 for a in arrays],
        "numpy NHWC": np.stack(arrays),
        "uint8 CHW": uint8,
        "float CHW": floats,
        "uint8 NCHW": torch.stack(uint8),
        "float NCHW": torch.stack(floats),
    }.items():
        got = clf.predict_proba(inputs, batch_size=2)
        np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=name)
    assert clf.predict(paths) == [CLASSES[i] for i in expected.argmax(axis=1)]


def test_a_large_jpeg_file_is_decoded_as_for_training(clf, tmp_path):
    """The feature pass and fine-tuning decode a JPEG much larger than the model's input at
    a reduced DCT scale; a prediction from the file must see those pixels, not a full
    decode (the two gave trial scores 2 validation images apart on real photographs)."""
    from PIL import Image

    from autotransfer.backbones.inputs import resize_side

    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    big = Image.fromarray(coarse).resize((640, 480), Image.Resampling.BICUBIC)
    noisy = np.clip(np.asarray(big, np.int16) + rng.integers(-40, 40, (480, 640, 3)), 0, 255)
    path = tmp_path / "photo.jpg"
    Image.fromarray(noisy.astype(np.uint8)).save(path, quality=90)

    as_trained = load_image(path, draft=resize_side(PREP.timm_config()))
    assert as_trained.size[0] < 640  # decoded at a reduced scale
    expected = clf.predict_proba(as_trained)  # a PIL image: used as it is
    full = clf.predict_proba(load_image(path))
    assert not np.allclose(full, expected, atol=1e-4)  # the decodes differ visibly
    np.testing.assert_allclose(clf.predict_proba(path), expected, atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba([str(path)]), expected, atol=1e-6)


def test_a_single_item_gives_a_list_of_one(clf, paths):
    labels = clf.predict(paths[0])
    assert isinstance(labels, list) and len(labels) == 1 and labels[0] in CLASSES
    assert clf.predict_proba(load_image(paths[0])).shape == (1, 3)
    assert clf.predict_proba([]).shape == (0, 3)


def test_batch_size_does_not_change_the_answer(clf, paths):
    np.testing.assert_allclose(
        clf.predict_proba(paths, batch_size=1), clf.predict_proba(paths, batch_size=64), atol=1e-6
    )


def test_many_files_decoded_in_loader_workers_give_the_same_answer(clf, paths):
    from autotransfer.model_inputs import LOADER_MIN_FILES

    many = (paths * (LOADER_MIN_FILES // len(paths) + 1))[: LOADER_MIN_FILES + 3]
    in_workers = clf.predict_proba(many, batch_size=16)  # files: the loader's processes
    in_threads = clf.predict_proba([load_image(p) for p in many], batch_size=16)
    assert in_workers.shape == (len(many), len(CLASSES))
    np.testing.assert_allclose(in_workers, in_threads, atol=1e-5)


def test_grayscale_inputs_become_rgb(clf, paths):
    gray = load_image(paths[0]).convert("L")
    expected = clf.predict_proba(gray.convert("RGB"))
    np.testing.assert_allclose(clf.predict_proba(gray), expected, atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(np.asarray(gray)), expected, atol=1e-6)
    chw = torch.from_numpy(np.array(gray))[None]
    np.testing.assert_allclose(clf.predict_proba(chw), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (torch.randn(3, 32, 32) * 3, "not normalised"),
        (torch.zeros(32, 32), "CHW or NCHW"),
        (torch.zeros(5, 8, 8), "CHW with 1, 3 or 4 channels"),
        (np.zeros((8, 8, 3), dtype=np.int32), "uint8"),
        (b"bytes", "Cannot classify an input of type bytes"),
    ],
)
def test_bad_inputs_say_what_to_pass(clf, bad, match):
    with pytest.raises(DataError, match=match):
        clf.predict(bad)


def test_unreadable_file_is_named(clf, tmp_path):
    bad = write_text_as_image(tmp_path / "note.jpg")
    with pytest.raises(DataError, match="note.jpg"):
        clf.predict([bad])


def test_constructor_checks_what_it_is_given():
    module = timm.create_model("test_resnet", pretrained=False, num_classes=2)
    with pytest.raises(ConfigError, match="outputs 2 classes but 3"):
        Classifier(module, classes=CLASSES, preprocessing=PREP, arch="test_resnet")
    with pytest.raises(ConfigError, match="Did you mean 'test_resnet'"):
        Classifier(module, classes=("a", "b"), preprocessing=PREP, arch="test_resnt")
    with pytest.raises(ConfigError, match="num_classes"):
        Classifier(
            module,
            classes=("a", "b"),
            preprocessing=PREP,
            arch="test_resnet",
            model_kwargs={"num_classes": 2},
        )
    with pytest.raises(ConfigError, match="distinct"):
        Classifier(module, classes=("a", "a"), preprocessing=PREP, arch="test_resnet")


# ----- save and load -------------------------------------------------------------------------


def test_save_load_round_trip_without_pickle(tmp_path, paths, monkeypatch):
    clf = tiny_classifier("test_efficientnet", drop_rate=0.1)
    out = clf.save(tmp_path / "model", metadata={"strategy": "linear_probe", "when": Path("x")})
    assert sorted(p.name for p in out.iterdir()) == ["autotransfer.json", "model.safetensors"]
    for f in out.iterdir():
        assert not f.read_bytes().startswith(b"\x80"), f"{f.name} looks pickled"
    config = json.loads((out / "autotransfer.json").read_text())
    assert config["format_version"] == 1 and config["classes"] == list(CLASSES)
    assert config["model_kwargs"] == {"drop_rate": 0.1}
    assert config["metadata"] == {
        "backbone": "random:test_efficientnet",
        "strategy": "linear_probe",
        "when": "x",
    }
    assert set(config["versions"]) == {"torch", "timm", "autotransfer"}

    def no_unpickling(*args, **kwargs):
        raise AssertionError("load must not unpickle")

    monkeypatch.setattr(torch, "load", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    back = Classifier.load(out)
    assert back.classes == CLASSES and back.preprocessing == PREP
    assert back.arch == "test_efficientnet" and back.model_kwargs == {"drop_rate": 0.1}
    assert back.metadata["strategy"] == "linear_probe"
    np.testing.assert_allclose(back.predict_proba(paths), clf.predict_proba(paths), atol=1e-6)


def test_save_replaces_a_saved_model_but_not_other_folders(clf, tmp_path):
    target = clf.save(tmp_path / "m")
    (target / "fit_result.json").write_text("{}")
    clf.save(target, metadata={"again": True})
    assert Classifier.load(target).metadata["again"] is True
    assert not (target / "fit_result.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folders left

    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "holiday.jpg").write_bytes(b"...")
    with pytest.raises(ModelFileError, match="not empty"):
        clf.save(precious)
    assert (precious / "holiday.jpg").exists()


def test_pickled_checkpoint_is_refused_with_a_way_out(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    torch.save({"w": torch.zeros(1)}, folder / "model.pt")
    for where in (folder, folder / "model.pt"):
        with pytest.raises(ModelFileError, match="can execute arbitrary code") as info:
            Classifier.load(where)
        assert "weights_only=True" in str(info.value) and "model.pt" in str(info.value)


def test_missing_or_foreign_files_give_clear_errors(clf, tmp_path):
    with pytest.raises(ModelFileError, match="not a folder"):
        Classifier.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="autotransfer.json is missing"):
        Classifier.load(tmp_path / "empty")
    assert isinstance(ModelFileError("x"), (AutoTransferError, OSError))

    saved = clf.save(tmp_path / "m")
    config = json.loads((saved / "autotransfer.json").read_text())
    (saved / "autotransfer.json").write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(ModelFileError, match="format_version 99"):
        Classifier.load(saved)
    (saved / "autotransfer.json").write_text(json.dumps({**config, "classes": ["a", "b"]}))
    with pytest.raises(ModelFileError, match="Cannot rebuild"):
        Classifier.load(saved)
    (saved / "autotransfer.json").write_text(json.dumps(config))
    (saved / "model.safetensors").unlink()
    with pytest.raises(ModelFileError, match="no model.safetensors"):
        Classifier.load(saved)


# ----- evaluate ------------------------------------------------------------------------------


def test_evaluate_a_folder(clf, folder):
    m = clf.evaluate(folder, split="all")
    assert set(m) == {"accuracy", "balanced_accuracy", "macro_f1", "log_loss", "num_images"}
    assert m["num_images"] == 12
    assert 0.0 <= m["accuracy"] <= 1.0 and m["log_loss"] > 0
    assert clf.evaluate(folder, split="val")["num_images"] == 3
    with pytest.raises(DataError, match=r"'test' split .* no images \(train: 9, val: 3, test: 0\)"):
        clf.evaluate(folder, split="test")
    # by default: the test split when there is one, else every image
    assert clf.evaluate(folder)["num_images"] == 12
    with pytest.raises(ConfigError, match="'train', 'val', 'test' or 'all'"):
        clf.evaluate(folder, split="holdout")


def test_evaluate_maps_classes_by_name(folder, monkeypatch):
    clf = tiny_classifier(classes=("owl", "cat", "dog"))  # not the folder's (sorted) order

    def oracle(self, inputs, **kwargs):  # one-hot on the image's folder name, in our order
        return np.eye(3, dtype=np.float32)[
            [self.classes.index(Path(p).parent.name) for p in inputs]
        ]

    monkeypatch.setattr(Classifier, "predict_proba", oracle)
    m = clf.evaluate(folder, split="all")
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0


def test_evaluate_refuses_unknown_classes(folder):
    clf = tiny_classifier(classes=("cat", "dog", "fox"))
    with pytest.raises(DataError, match="owl.*knows: cat, dog, fox"):
        clf.evaluate(folder, split="all")


# ----- export --------------------------------------------------------------------------------


def _pixels(clf: Classifier, paths) -> torch.Tensor:
    """What the exported models take: the eval transform without its normalisation."""
    mean = torch.tensor(clf.preprocessing.mean).view(3, 1, 1)
    std = torch.tensor(clf.preprocessing.std).view(3, 1, 1)
    t = clf.preprocessing.transform()
    return torch.stack([t(load_image(p)) * std + mean for p in paths])


def _reference_logits(clf: Classifier, x: torch.Tensor) -> np.ndarray:
    p = clf.preprocessing
    mean, std = torch.tensor(p.mean).view(1, 3, 1, 1), torch.tensor(p.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        return clf.module((x - mean) / std).numpy()


def test_torchscript_export_reproduces_the_model(clf, paths, tmp_path):
    path = clf.export_torchscript(tmp_path / "m.torchscript.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.load(str(path))
    for n in (2, 3):
        x = _pixels(clf, paths[:n])
        with torch.inference_mode():
            got = traced(x).numpy()
        np.testing.assert_allclose(got, _reference_logits(clf, x), rtol=1e-4, atol=1e-4)
    probs = torch.softmax(torch.from_numpy(got), 1).numpy()
    np.testing.assert_allclose(probs, clf.predict_proba(paths[:3]), atol=1e-5)
    sidecar = json.loads(Path(f"{path}.json").read_text())
    assert sidecar["classes"] == list(CLASSES)
    assert sidecar["input"]["shape"] == ["batch", 3, 48, 48]
    assert sidecar["input"]["range"] == [0.0, 1.0]
    assert sidecar["normalization_inside"]["mean"] == list(PREP.mean)


def test_onnx_export_reproduces_the_model_with_a_dynamic_batch(clf, paths, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    path = clf.export_onnx(tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    for n in (2, 3, 1):
        x = _pixels(clf, paths[:n])
        (got,) = session.run(["logits"], {"images": x.numpy()})
        np.testing.assert_allclose(got, _reference_logits(clf, x), rtol=1e-4, atol=1e-4)
    sidecar = json.loads(Path(f"{path}.json").read_text())
    assert sidecar["format"] == "onnx" and sidecar["classes"] == list(CLASSES)


def test_onnx_export_without_onnxscript_says_what_to_install(clf, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript now fails
    with pytest.raises(MissingDependencyError, match=re.escape("autotransfer[onnx]")):
        clf.export_onnx(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_agrees_with_cpu(paths):
    clf = tiny_classifier()
    cpu = clf.predict_proba(paths, device="cpu")
    gpu = clf.predict_proba(paths, device="cuda")
    assert gpu.dtype == np.float32
    np.testing.assert_allclose(gpu, cpu, atol=0.05)
    assert (gpu.argmax(1) == cpu.argmax(1)).mean() >= 0.8
