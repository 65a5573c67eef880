import json

import pytest

import autotransfer
from autotransfer import plugins
from autotransfer.data.descriptors import DatasetDescriptor, describe_dataset
from autotransfer.data.statistics import bit_hyperrule
from autotransfer.testing.images import make_image_folder


def test_statistics_of_an_imbalanced_folder(tmp_path):
    root = make_image_folder(tmp_path / "a", classes=("x",), per_class=20, size=(40, 30))
    make_image_folder(tmp_path / "a", classes=("y",), per_class=5, size=(40, 30), seed=1)
    d = autotransfer.describe(root, similarity=False)
    assert d.num_images == 25 and d.num_classes == 2
    assert d.class_counts == {"x": 20, "y": 5}
    assert sum(d.split_sizes.values()) == 25 and d.split_sizes["test"] == 0
    assert d.train_per_class["max"] == 16 and d.train_per_class["min"] == 4
    assert d.imbalance_ratio == pytest.approx(4.0)
    assert d.image_size["width_median"] == 40 and d.image_size["height_median"] == 30
    assert d.image_size["aspect_median"] == pytest.approx(40 / 30, abs=1e-3)
    assert sum(d.color_modes.values()) == 25 and d.channels == {"3": 25}
    assert d.regime["regime"] == "small" and d.regime["crop"] == 128  # 30 px images


def test_bit_hyperrule_boundaries():
    assert bit_hyperrule(19_999, 500)["regime"] == "small"
    assert bit_hyperrule(20_000, 500) | {} == {
        "regime": "medium",
        "schedule_steps": 10_000,
        "mixup_alpha": 0.1,
        "resize": 448,
        "crop": 384,
    }
    assert bit_hyperrule(500_000, 95)["regime"] == "large"
    assert bit_hyperrule(500_000, 95)["crop"] == 128


def test_similarity_and_json_round_trip(image_folder, tiny_backbones):
    d = autotransfer.describe(
        image_folder,
        backbones=tiny_backbones,
        extraction=autotransfer.ExtractionSettings(resolution=48, num_workers=0),
    )
    assert set(d.source_similarity) == set(tiny_backbones)
    for sim in d.source_similarity.values():
        assert 0.0 <= sim.head_entropy <= 1.0 and 0.0 < sim.head_confidence <= 1.0
        assert sim.bn_kl is not None and sim.bn_kl >= 0.0
        assert sim.images == d.split_sizes["train"]
    again = DatasetDescriptor.from_dict(json.loads(d.to_json()))
    assert again == d


class _Brightness:
    name = "brightness"
    needs_features = False

    def compute(self, *, dataset, features):
        return {"num_classes": len(dataset.classes), "mean_width": 32.0}


class _Plugin:
    @autotransfer.hookimpl
    def autotransfer_register_descriptors(self):
        return [_Brightness()]


def test_a_plugin_descriptor_fills_fields_and_extra(image_folder):
    plugins.register_plugin(_Plugin(), name="brightness_plugin")
    try:
        d = describe_dataset(autotransfer.open_folder(image_folder))
        assert d.num_classes == 3
        assert d.extra == {"brightness": {"mean_width": 32.0}}
    finally:
        plugins.reset_plugin_manager()
