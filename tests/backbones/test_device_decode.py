"""JPEGs decoded on the model's device in batches (backbones/device_decode.py).

No GPU here: the same code path runs with the CPU as the device (torchvision's batched
``decode_jpeg`` on the CPU), which is what ``jpeg_decode="device"`` selects anywhere."""

import numpy as np
import pytest
import torch
from PIL import Image

from autotransfer.api import open_folder
from autotransfer.backbones import device_decode
from autotransfer.backbones.decoded import split_transform
from autotransfer.backbones.features import extract_features
from autotransfer.backbones.inputs import data_config, eval_transform
from autotransfer.backbones.load import resolve_backbones
from autotransfer.config import ExtractionSettings
from autotransfer.data.images import load_image
from autotransfer.errors import ConfigError
from autotransfer.testing.images import class_image, make_image_folder, write_image

CPU = torch.device("cpu")


def _host_and_device(paths, resolution=48):
    spec = resolve_backbones(["random:test_resnet"])[0]
    cfg = data_config(spec, resolution)
    geometry, _, _ = split_transform(eval_transform(cfg))
    side = int(np.floor(resolution / cfg["crop_pct"]))
    items = [device_decode.FileBytes([_rec(p)], geometry, side)[0][0] for p in paths]
    on_device = device_decode.decode_batch(
        items,
        CPU,
        device_decode.DeviceGeometry(side, resolution, cfg["interpolation"]),
        geometry,
        side,
    )
    host = torch.stack([geometry(load_image(p, draft=side)) for p in paths])
    return host, on_device


def _rec(path):
    from autotransfer.data.types import ImageRecord

    return ImageRecord(str(path), 0, str(path), 0, 0, "RGB")


def test_device_crops_are_the_host_crops_within_resampling(tmp_path):
    paths = [
        write_image(tmp_path / f"{i}.jpg", class_image(i, (90 + 7 * i, 64)), quality=95)
        for i in range(3)
    ] + [write_image(tmp_path / "p.png", class_image(3, (40, 50)))]
    host, on_device = _host_and_device(paths)
    assert on_device.dtype == torch.uint8 and on_device.shape == host.shape == (4, 3, 48, 48)
    diff = (on_device.float() - host.float()).abs()
    assert diff.mean() < 4.0  # grey levels: resampling and IDCT differ, the picture does not
    assert torch.equal(on_device[3], host[3])  # the PNG went through PIL, as before


def test_exif_rotation_and_cmyk_jpegs_come_out_as_on_the_host(tmp_path):
    wide = class_image(1, (96, 48))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    rotated = write_image(tmp_path / "r.jpg", wide, exif=exif.tobytes(), quality=95)
    cmyk = write_image(tmp_path / "c.jpg", class_image(2, (60, 60)).convert("CMYK"), quality=95)
    host, on_device = _host_and_device([rotated, cmyk])
    assert (on_device.float() - host.float()).abs().mean() < 6.0


def test_extraction_with_device_decoding_matches_the_host_path(tmp_path):
    folder = make_image_folder(
        tmp_path / "d", classes=("a", "b"), per_class=8, size=(40, 40), formats=("jpg", "png")
    )
    ds = open_folder(folder)
    spec = resolve_backbones(["random:test_resnet"])[0]
    opts = dict(resolution=48, batch_size=4, num_workers=0, use_cache=False)
    host = extract_features(ds, spec, jpeg_decode="host", **opts)
    dev = extract_features(ds, spec, jpeg_decode="device", **opts)
    np.testing.assert_array_equal(host.labels, dev.labels)
    for a, b in zip(host.features, dev.features):
        assert np.corrcoef(a, b)[0, 1] > 0.98


def test_the_setting_is_checked_and_auto_means_cuda_with_jpegs():
    with pytest.raises(ConfigError, match="jpeg_decode"):
        ExtractionSettings(jpeg_decode="gpu")
    jpg, png = _rec("a.jpg"), _rec("a.png")
    cuda = torch.device("cuda")
    assert device_decode.use_device_decode("auto", cuda, [png, jpg])
    assert not device_decode.use_device_decode("auto", cuda, [png])
    assert not device_decode.use_device_decode("auto", CPU, [jpg])
    assert device_decode.use_device_decode("device", CPU, [png])
    assert not device_decode.use_device_decode("host", cuda, [jpg])
