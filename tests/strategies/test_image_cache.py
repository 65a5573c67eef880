"""The decoded-image cache at scale: lazy decoding, the memory cap, memory maps on disk
(strategies/images.py, strategies/image_store.py)."""

from __future__ import annotations

import doctest
import gc
import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch

from autotransfer import memory
from autotransfer.config import FitSettings
from autotransfer.errors import ConfigError, DataError
from autotransfer.strategies import image_store
from autotransfer.strategies.image_store import LazyImages
from autotransfer.strategies.images import ImageCache, center_crop, square
from autotransfer.units import parse_size


def _truth(dataset, name: str, side: int, crop: int) -> torch.Tensor:
    return torch.stack(
        [torch.from_numpy(square(r.path, side, crop=crop)) for r in dataset.split(name)]
    )


def test_doctests():
    assert doctest.testmod(image_store).failed == 0


def test_only_the_images_indexed_are_decoded_once_each(dataset, tmp_path):
    cache = ImageCache(dataset, memory_cap="1GB", disk_dir=tmp_path)
    x, y = cache.split("train", side=20, crop=16)
    truth = _truth(dataset, "train", 20, 16)
    assert isinstance(x, LazyImages) and x.decoded == 0 and len(x) == len(y) == len(truth)
    assert tuple(x.shape) == (len(truth), 3, 16, 16)

    batch = x[torch.tensor([5, 2, 5])]
    assert batch.dtype == torch.uint8 and torch.equal(batch, truth[[5, 2, 5]])
    assert x.decoded == 2 and cache.decoded == 2
    assert torch.equal(x[1:4], truth[1:4]) and x.decoded == 4  # 2 was decoded already
    assert torch.equal(x[-1], truth[-1]) and torch.equal(x[np.int64(0)], truth[0])
    assert x.decoded == 6
    x[torch.tensor([1, 2, 3])]
    assert x.decoded == 6  # nothing new
    assert torch.equal(center_crop(x, 8), truth[..., 4:12, 4:12])  # x[..., a:b, c:d]: all
    assert x.decoded == len(truth) and cache.decoded == len(truth)
    with pytest.raises(IndexError):
        x[torch.tensor([len(truth)])]


def test_fill_decodes_the_rest_on_threads_and_reports_each_image(dataset, tmp_path):
    seen = []
    cache = ImageCache(
        dataset, memory_cap="1GB", disk_dir=tmp_path, progress=lambda *a: seen.append(a)
    )
    x, _ = cache.split("val", side=24)
    x[torch.tensor([0])]
    x.fill()
    n = len(x)
    assert seen == [("decoding val", i, n) for i in range(1, n + 1)]
    assert x.decoded == n and torch.equal(x[:], _truth(dataset, "val", 24, 24))


def test_memory_stays_under_the_cap_and_the_rest_is_memory_mapped(dataset, tmp_path):
    n_val, n_train = len(dataset.split("val")), len(dataset.split("train"))
    assert n_val < n_train
    cap = n_val * 3 * 16 * 16  # room for the validation split at 16 px, not the training one
    maps = tmp_path / "maps"
    cache = ImageCache(dataset, memory_cap=cap, disk_dir=maps)
    x_tr, _ = cache.split("train", side=20, crop=16)
    x_va, _ = cache.split("val", side=20, crop=16)
    assert x_tr.on_disk and not x_va.on_disk
    assert cache.memory_bytes == cap and cache.disk_bytes == x_tr.nbytes
    for side in (18, 22, 26):  # more splits: all of them go to disk now
        assert cache.split("val", side=side, crop=16)[0].on_disk
        assert cache.memory_bytes <= cap
    # the memory map gives the pixels an in-memory cache gives
    reference, _ = ImageCache(dataset, memory_cap="1GB").split("train", side=20, crop=16)
    idx = torch.randperm(n_train, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x_tr[idx], reference[idx])
    assert torch.equal(x_tr[:], _truth(dataset, "train", 20, 16))
    assert list(maps.iterdir()) == []  # the mapped file has no name: nothing to leave behind
    assert _mapped_from(maps)

    cache.close()
    gc.collect()
    assert not _mapped_from(maps)  # closing frees the map (and its disk space)
    with pytest.raises(RuntimeError, match="closed"):
        x_tr[0]


def _mapped_from(directory: Path) -> bool:
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("needs /proc/self/maps")
    return str(directory) in maps.read_text()


def test_a_disk_too_small_for_the_memory_map_is_a_clear_error(dataset, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    cache = ImageCache(dataset, memory_cap=0, disk_dir=tmp_path / "maps")
    with pytest.raises(DataError) as err:
        cache.split("train", side=20, crop=16)
    msg = str(err.value)
    for words in ("train images", "GB on disk", str(tmp_path / "maps"), "image_cache_memory"):
        assert words in msg
    assert "AUTOTRANSFER_CACHE" in msg


def test_the_default_cap_is_a_quarter_of_the_available_memory(dataset, monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: 8 * 10**9)
    assert ImageCache(dataset).memory_cap == 2 * 10**9
    monkeypatch.setattr(memory, "available_memory", lambda: None)
    assert ImageCache(dataset).memory_cap == 2 * 2**30
    assert ImageCache(dataset, memory_cap="500MB").memory_cap == 500 * 10**6


def test_available_memory_reads_this_machine():
    available = memory.available_memory()
    assert available is None or available > 0


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, None),
        (0, 0),
        (2e9, 2 * 10**9),
        ("2GB", 2 * 10**9),
        ("500 mib", 500 * 2**20),
        ("1e9", 10**9),
    ],
)
def test_parse_size(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("bad", ["lots", "2 GBs", "-1GB", -5, True, float("inf"), "GB"])
def test_image_cache_memory_is_validated_naming_the_setting(bad):
    with pytest.raises(ConfigError, match="image_cache_memory"):
        FitSettings(image_cache_memory=bad)


def test_image_cache_memory_round_trips():
    s = FitSettings(image_cache_memory="2GB")
    assert FitSettings.from_dict(s.to_dict()).image_cache_memory == "2GB"
    assert FitSettings().image_cache_memory is None


def test_a_cap_beyond_the_machines_memory_is_lowered_with_a_warning_naming_the_setting(
    tmp_path, caplog
):
    import autotransfer
    from autotransfer.memory import available_memory
    from autotransfer.strategies.images import ImageCache
    from autotransfer.testing.images import make_image_folder

    available = available_memory()
    if available is None:
        pytest.skip("this machine does not say how much memory it has")
    ds = autotransfer.open_folder(make_image_folder(tmp_path / "d", per_class=3))
    with caplog.at_level("WARNING"):
        cache = ImageCache(ds, memory_cap=100 * available)
    assert cache.memory_cap < available  # half of what is available (which moves a little)
    assert (
        "image_cache_memory" in caplog.text
        and "set image_cache_memory lower" in caplog.text.lower()
    )


def _photos(tmp_path):
    """JPEGs and PNGs of odd sizes, and a CMYK JPEG (which decoders handle differently)."""
    from autotransfer.data.ingest import open_folder
    from autotransfer.testing.images import class_image, make_image_folder, write_image

    root = make_image_folder(
        tmp_path / "photos", classes=("a", "b"), per_class=8, size=(52, 40), formats=("jpg", "png")
    )
    cmyk = class_image(2, (60, 44)).convert("CMYK")
    write_image(root / "a" / "cmyk.jpg", cmyk, quality=95)
    return open_folder(root, progress=False)


def test_jpegs_decoded_on_the_device_are_the_host_squares_within_resampling(tmp_path):
    """``jpeg_decode="device"`` decodes each access's JPEGs in one batch on the device (here
    the CPU: torchvision's decoder, the code path CUDA takes) and resizes them there."""
    ds = _photos(tmp_path)
    host, _ = ImageCache(ds, jpeg_decode="host", device="cpu").split("train", side=36, crop=32)
    seen = []
    cache = ImageCache(ds, jpeg_decode="device", device="cpu", progress=lambda *a: seen.append(a))
    x, _ = cache.split("train", side=36, crop=32)
    truth = host[:]
    first = x[torch.tensor([3, 0, 3])]
    assert first.dtype == torch.uint8 and first.shape == (3, 3, 32, 32)
    assert x.decoded == 2 and seen == [("decoding train", 1, len(x)), ("decoding train", 2, len(x))]
    got = x[:]
    assert x.decoded == len(x) == len(truth)
    jpeg = torch.tensor([r.path.endswith(".jpg") for r in ds.split("train")])
    assert jpeg.any() and (~jpeg).any()
    assert torch.equal(got[~jpeg], truth[~jpeg])  # PNGs through PIL, as before
    diff = (got[jpeg].float() - truth[jpeg].float()).abs()
    assert diff.mean() < 4.0  # grey levels: the decoders and resamplers differ, not the picture
    assert not torch.equal(got[jpeg], truth[jpeg])  # another decoder did decode them
    assert torch.equal(got[torch.tensor([3, 0])], first[:2])


def test_auto_decodes_on_the_host_without_cuda_and_device_decoding_fills_a_memory_map(
    tmp_path,
):
    ds = _photos(tmp_path)
    host, _ = ImageCache(ds, jpeg_decode="host", device="cpu").split("val", side=30, crop=24)
    auto, _ = ImageCache(ds, device="cpu").split("val", side=30, crop=24)
    assert torch.equal(auto[:], host[:])  # "auto" on a CPU: PIL, to the pixel
    mapped = ImageCache(ds, jpeg_decode="device", device="cpu", memory_cap=0, disk_dir=tmp_path)
    x, _ = mapped.split("val", side=30, crop=24)
    assert x.on_disk and (x[:].float() - host[:].float()).abs().mean() < 4.0
