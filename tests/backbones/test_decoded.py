"""Images decoded once for the passes of several backbones (backbones/decoded.py)."""

import numpy as np
import torch

from autotransfer.api import open_folder
from autotransfer.backbones.decoded import DecodedImages, split_transform
from autotransfer.backbones.features import extract_features
from autotransfer.backbones.inputs import data_config, eval_transform
from autotransfer.backbones.load import resolve_backbones
from autotransfer.data.images import load_image


def test_the_geometry_then_the_batch_normalisation_is_timms_transform(image_folder):
    spec = resolve_backbones(["random:test_resnet"])[0]
    timm_transform = eval_transform(data_config(spec, 40))
    geometry, normalise, key = split_transform(timm_transform)
    image = load_image(next(image_folder.rglob("*.jpg")))
    crop = geometry(image)
    assert crop.dtype == torch.uint8 and crop.shape == (3, 40, 40)
    torch.testing.assert_close(normalise(crop[None])[0], timm_transform(image), atol=1e-6, rtol=0)
    assert "CenterCrop" in key and "Normalize" not in key


def test_a_second_backbone_reads_the_first_ones_crops_and_gets_the_same_features(
    image_folder, tmp_path
):
    ds = open_folder(image_folder)
    a, b = resolve_backbones(["random:test_resnet", "random:test_efficientnet"])
    opts = dict(resolution=48, batch_size=8, num_workers=0, use_cache=False)
    store = DecodedImages(max_bytes=10**8)
    extract_features(ds, a, decoded=store, **opts)
    assert store.hits == 0 and store.bytes == len(ds.train) * 3 * 48 * 48
    shared = extract_features(ds, b, decoded=store, **opts)
    assert store.hits == 1  # b decoded nothing
    alone = extract_features(ds, b, **opts)
    np.testing.assert_allclose(shared.features, alone.features, atol=1e-5)
    np.testing.assert_array_equal(shared.labels, alone.labels)
    # another geometry (resolution) is decoded again, and nothing is held past the cap
    small = DecodedImages(max_bytes=100)
    extract_features(ds, a, decoded=small, **opts)
    assert small.bytes == 0 and small.get(next(iter([""]))) is None
