import logging

import numpy as np
import pytest
import torch

from autotransfer.api import open_folder
from autotransfer.backbones.feature_cache import FeatureSet
from autotransfer.backbones.features import extract_features
from autotransfer.backbones.inputs import data_config
from autotransfer.backbones.load import load_backbone, resolve_backbones
from autotransfer.testing.images import class_image, write_image


@pytest.fixture
def spec():
    return resolve_backbones(["random:test_resnet"])[0]


def _extract(ds, spec, cache_dir, **kw):
    return extract_features(
        ds, spec, resolution=64, batch_size=8, num_workers=0, cache_dir=cache_dir, **kw
    )


def test_features_match_a_plain_forward(image_folder, spec, tmp_path):
    ds = open_folder(image_folder)
    fs = _extract(ds, spec, tmp_path)
    assert isinstance(fs, FeatureSet) and not fs.from_cache
    assert fs.features.shape[0] == len(ds.train) == fs.labels.shape[0]
    assert fs.logits.shape == (len(ds.train), spec.weights.num_source_classes)
    assert np.array_equal(fs.labels, [r.label for r in ds.train])
    # the same images through timm's eval transform and the model directly
    import timm.data

    from autotransfer.data.images import load_image

    model = load_backbone(spec).eval()
    tf = timm.data.create_transform(**data_config(spec, 64), is_training=False)
    x = torch.stack([tf(load_image(r.path)) for r in ds.train[:4]])
    with torch.inference_mode():
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        logits = model(x)
    np.testing.assert_allclose(fs.features[:4], pooled.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fs.logits[:4], logits.numpy(), rtol=1e-4, atol=1e-4)


def test_cache_hit_returns_identical_arrays(image_folder, spec, tmp_path):
    ds = open_folder(image_folder)
    first = _extract(ds, spec, tmp_path)
    second = _extract(ds, spec, tmp_path)
    assert second.from_cache and second.key == first.key
    np.testing.assert_array_equal(first.features, second.features)
    np.testing.assert_array_equal(first.logits, second.logits)
    np.testing.assert_array_equal(first.target_bn[0], second.target_bn[0])
    assert len(list((tmp_path / "features").glob("*.npz"))) == 1


def test_cache_misses_when_images_resolution_or_backbone_change(image_folder, spec, tmp_path):
    ds = open_folder(image_folder)
    base = _extract(ds, spec, tmp_path)
    other_res = extract_features(ds, spec, resolution=48, num_workers=0, cache_dir=tmp_path)
    assert not other_res.from_cache and other_res.key != base.key
    other_bb = _extract(ds, resolve_backbones(["random:test_efficientnet"])[0], tmp_path)
    assert not other_bb.from_cache
    # change one training image's bytes: the dataset fingerprint and so the key change
    path = ds.train[0].path
    write_image(path, class_image(2, (32, 32), np.random.default_rng(9)))
    changed = _extract(open_folder(image_folder), spec, tmp_path)
    assert not changed.from_cache and changed.key != base.key


@pytest.mark.parametrize("damage", ["truncate", "flip_bytes", "garbage"])
def test_corrupted_cache_file_is_recomputed(image_folder, spec, tmp_path, caplog, damage):
    ds = open_folder(image_folder)
    first = _extract(ds, spec, tmp_path)
    path = next((tmp_path / "features").glob("*.npz"))
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_bytes":  # inside the feature array: zip CRC or our checksum catches it
        for i in range(len(data) // 3, len(data) // 3 + 64):
            data[i] ^= 0xFF
    else:
        data = bytearray(b"not a cache file")
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="autotransfer"):
        again = _extract(ds, spec, tmp_path)
    assert not again.from_cache
    assert "unreadable" in caplog.text and "Recomputing" in caplog.text
    np.testing.assert_allclose(again.features, first.features, rtol=1e-5, atol=1e-6)
    assert _extract(ds, spec, tmp_path).from_cache  # the rebuilt file is good


def test_last_batchnorm_statistics_are_recorded(image_folder, spec, tmp_path):
    ds = open_folder(image_folder)
    fs = _extract(ds, spec, tmp_path)
    model = load_backbone(spec)
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)][-1]
    np.testing.assert_allclose(fs.source_bn[0], bn.running_mean.numpy())
    np.testing.assert_allclose(fs.source_bn[1], bn.running_var.numpy())
    mean, var = fs.target_bn
    assert mean.shape == var.shape == bn.running_mean.shape
    assert np.all(var >= 0) and np.isfinite(mean).all()


def test_empty_split_is_a_clear_error(image_folder, spec, tmp_path):
    from autotransfer.errors import DataError

    ds = open_folder(image_folder)
    with pytest.raises(DataError, match="'test' split"):
        extract_features(ds, spec, split="test", cache_dir=tmp_path)


def test_rank_after_every_cache_file_is_damaged_equals_the_clean_rank(
    image_folder, tmp_path, caplog
):
    """F12 of tests/search/test_faults.py: every feature file damaged in a different way, the
    score files overwritten with garbage: each is detected and recomputed, and the ranking
    is the one computed from scratch."""
    from autotransfer.api import rank
    from autotransfer.config import ExtractionSettings

    ex = ExtractionSettings(resolution=32, num_workers=0, cache_dir=tmp_path)
    backbones = ["random:test_resnet", "random:test_efficientnet"]
    clean = rank(image_folder, backbones=backbones, extraction=ex, progress=False)
    files = sorted((tmp_path / "features").glob("*.npz"))
    assert len(files) == 2
    files[0].write_bytes(files[0].read_bytes()[:100])  # cut short
    data = bytearray(files[1].read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):  # bits flipped inside an array
        data[i] ^= 0xFF
    files[1].write_bytes(bytes(data))
    for f in (tmp_path / "scores").glob("*.json"):
        f.write_text("{garbage")
    with caplog.at_level(logging.WARNING, logger="autotransfer"):
        again = rank(image_folder, backbones=backbones, extraction=ex, progress=False)
    assert caplog.text.count("Recomputing it") == 2
    assert not any(r.from_cache for r in again.rows)
    assert [r.backbone for r in again.rows] == [r.backbone for r in clean.rows]
    for a, b in zip(again.rows, clean.rows):
        assert a.scores.keys() == b.scores.keys()
        np.testing.assert_allclose(
            [a.scores[k] for k in a.scores], [b.scores[k] for k in b.scores], rtol=1e-5
        )
    assert again.shortlist == clean.shortlist
    # the rebuilt files serve the next rank
    assert all(r.from_cache for r in rank(image_folder, backbones=backbones, extraction=ex).rows)


def test_extraction_past_its_deadline_stops_and_caches_nothing(image_folder, spec, tmp_path):
    import time

    from autotransfer.backbones.feature_cache import cache_slot
    from autotransfer.errors import BudgetSpent

    ds = open_folder(image_folder)
    with pytest.raises(BudgetSpent, match="no time left"):
        _extract(ds, spec, tmp_path, deadline=time.monotonic())
    assert not cache_slot(ds, spec, "train", 64, tmp_path).cached
    got = _extract(ds, spec, tmp_path, deadline=time.monotonic() + 600)
    assert len(got) == len(ds.train) and cache_slot(ds, spec, "train", 64, tmp_path).cached
