"""A network's cuts read from its own forward pass give what a pass of each cut gives."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import autotransfer
from autotransfer.backbones.cut_taps import extract_group
from autotransfer.backbones.features import extract_features
from autotransfer.backbones.load import resolve_backbones
from autotransfer.config import ExtractionSettings
from autotransfer.testing.images import make_image_folder

KW = dict(resolution=32, num_workers=0, batch_size=4)


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("taps")
    folder = make_image_folder(root / "data", classes=("cat", "dog", "owl"), per_class=6)
    return autotransfer.open_folder(folder)


def _specs(whole: str, *stages: int):
    return resolve_backbones([whole, *(f"{whole}@{k}" for k in stages)])


def _same(a, b) -> None:
    assert a.features.shape == b.features.shape
    np.testing.assert_allclose(a.features, b.features, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a.labels, b.labels)
    for x, y in ((a.target_bn, b.target_bn), (a.source_bn, b.source_bn)):
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_allclose(x[0], y[0], rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(x[1], y[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ["test_resnet", "test_efficientnet"])
def test_cuts_from_the_whole_pass_equal_their_own_pass(ds, tmp_path, arch):
    whole, *cuts = _specs(f"random:{arch}", 1, 2, 3)
    got = extract_group(ds, whole, cuts, cache_dir=tmp_path / "group", **KW)
    assert list(got) == [whole.id] + [c.id for c in cuts]
    _same(got[whole.id], extract_features(ds, whole, use_cache=False, **KW))
    assert got[whole.id].logits is not None
    for cut in cuts:
        fs = got[cut.id]
        assert fs.meta["pass"] == whole.id and fs.seconds == got[whole.id].seconds
        assert fs.logits is None and not fs.from_cache
        _same(fs, extract_features(ds, cut, use_cache=False, **KW))


def test_the_cache_serves_each_cut_of_a_shared_pass(ds, tmp_path):
    whole, cut = _specs("random:test_resnet", 2)
    first = extract_group(ds, whole, [cut], cache_dir=tmp_path, **KW)
    again = extract_features(ds, cut, cache_dir=tmp_path, **KW)
    assert again.from_cache and again.key == first[cut.id].key
    np.testing.assert_array_equal(again.features, first[cut.id].features)
    both = extract_group(ds, whole, [cut], cache_dir=tmp_path, **KW)
    assert all(fs.from_cache for fs in both.values())


def test_a_cut_after_a_cached_whole_network_gets_its_own_pass(ds, tmp_path):
    whole, cut = _specs("random:test_efficientnet", 2)
    extract_features(ds, whole, cache_dir=tmp_path, **KW)
    got = extract_group(ds, whole, [cut], cache_dir=tmp_path, **KW)
    assert got[whole.id].from_cache
    assert "pass" not in got[cut.id].meta and not got[cut.id].from_cache


def test_a_vit_keeps_its_final_norm_so_its_cut_gets_its_own_pass(ds, tmp_path):
    # a ViT cut keeps the final norm after the cut block: the block's output is not it
    whole, cut = _specs("random:test_vit", 3)
    got = extract_group(ds, whole, [cut], cache_dir=tmp_path, **KW)
    assert "pass" not in got[cut.id].meta
    _same(got[cut.id], extract_features(ds, cut, use_cache=False, **KW))


def test_only_a_whole_network_and_its_own_cuts(ds):
    whole, cut = _specs("random:test_resnet", 2)
    (other,) = resolve_backbones(["random:test_efficientnet@2"])
    with pytest.raises(ValueError, match="a whole network and its cuts"):
        extract_group(ds, whole, [other])
    with pytest.raises(ValueError, match="a whole network and its cuts"):
        extract_group(ds, cut, [])


def test_rank_reads_the_cuts_from_the_whole_pass(ds, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="autotransfer")
    r = autotransfer.rank(
        ds,
        backbones=["random:test_resnet", "random:test_efficientnet"],
        cuts=(2,),
        top_k=4,
        extraction=ExtractionSettings(cache_dir=tmp_path, **KW),
        time_limit=600,
        progress=False,
    )
    assert len(r.rows) == 4
    passes = [m for m in caplog.messages if "features from the pass of" in m]
    assert len(passes) == 2, caplog.messages
    rows = {row.backbone: row for row in r.rows}
    cut, whole = rows["random:test_resnet@2"], rows["random:test_resnet"]
    assert cut.extract_seconds == whole.extract_seconds  # the shared pass
