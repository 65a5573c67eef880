"""JPEG files decoded on the model's device, in batches, and resized and cropped there.

With a GPU, host decoding is what bounds feature extraction (on an H100, 15 loader
workers decoded 1.6-1.8x faster than 8 and the GPU still waited:
``benchmarks/results/throughput_cuda.md``). Here the loader workers only read the
files' bytes; :func:`torchvision.io.decode_jpeg` decodes a batch of them on the device
(nvJPEG on CUDA), and timm's evaluation geometry (resize the short side, centre-crop)
runs on the decoded tensors. Files that are not JPEGs, and JPEGs the device decoder
refuses (CMYK, progressive on some nvJPEG builds), go through PIL as before, so every
file still gets its crop. The pixels differ from PIL's by its resampling (a few grey
levels), as with any GPU pipeline. torchvision 0.29 deprecates its image decoders in
favour of TorchCodec's (0.16): this module is the one place to move when it does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from autotransfer.data.images import load_image, read_image_file
from autotransfer.data.types import ImageRecord

log = logging.getLogger(__name__)

JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")


def is_jpeg(path: str) -> bool:
    return str(path).lower().endswith(JPEG_SUFFIXES)


def use_device_decode(setting: str, device: torch.device, records: Sequence[ImageRecord]) -> bool:
    """Whether to decode on ``device``: ``"device"`` always (a CPU then decodes with
    libjpeg-turbo in the main process), ``"host"`` never, ``"auto"`` on CUDA when the
    files include JPEGs.

    >>> use_device_decode("auto", torch.device("cpu"), []), use_device_decode("host", None, [])
    (False, False)
    """
    if setting == "device":
        return True
    if setting == "host" or device is None or device.type != "cuda":
        return False
    return any(is_jpeg(r.path) for r in records)


class FileBytes(Dataset):
    """For loader workers: a JPEG's bytes (``("jpeg", 1-D uint8 tensor)``), or another
    file's uint8 crop through PIL and ``geometry`` (``("crop", CHW uint8)``), with the label."""

    def __init__(self, records: Sequence[ImageRecord], geometry: Callable, draft: int) -> None:
        self.records = list(records)
        self.geometry = geometry
        self.draft = draft

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[tuple[str, torch.Tensor, str], int]:
        rec = self.records[i]
        if is_jpeg(rec.path):
            data = bytearray(read_image_file(rec.path))
            return ("jpeg", torch.frombuffer(data, dtype=torch.uint8), rec.path), rec.label
        crop = self.geometry(load_image(rec.path, draft=self.draft))
        return ("crop", crop, rec.path), rec.label


def collate(batch: list[Any]) -> tuple[list[tuple[str, torch.Tensor, str]], torch.Tensor]:
    """Items as a list (bytes have different lengths), labels as a tensor."""
    return [item for item, _ in batch], torch.as_tensor([y for _, y in batch], dtype=torch.int64)


class DeviceGeometry:
    """timm's evaluation geometry on uint8 CHW tensors: the short side resized to ``side``
    (``interpolation``, antialiased), then a centre crop of ``crop`` pixels."""

    def __init__(self, side: int, crop: int, interpolation: str) -> None:
        from torchvision.transforms import InterpolationMode

        self.side, self.crop = int(side), int(crop)
        modes = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR}
        self.mode = modes.get(str(interpolation), InterpolationMode.BILINEAR)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        resized = F.resize(image, [self.side], interpolation=self.mode, antialias=True)
        return F.center_crop(resized, [self.crop, self.crop])


def decode_batch(
    items: Sequence[tuple[str, torch.Tensor, str]],
    device: torch.device,
    geometry: DeviceGeometry,
    host_geometry: Callable,
    draft: int,
) -> torch.Tensor:
    """The batch's uint8 NCHW crops on ``device``: the JPEGs decoded there together, the
    other items' host crops moved there; a JPEG the device cannot decode goes through
    PIL (``host_geometry``) instead."""
    from torchvision.io import ImageReadMode, decode_jpeg

    out: list[torch.Tensor | None] = [None] * len(items)
    jpegs = [i for i, (kind, _, _) in enumerate(items) if kind == "jpeg"]
    decoded: list[torch.Tensor | None] = [None] * len(jpegs)
    if jpegs:
        try:
            decoded = list(
                decode_jpeg(
                    [items[i][1] for i in jpegs],
                    mode=ImageReadMode.RGB,
                    device=device,
                    apply_exif_orientation=True,
                )
            )
        except RuntimeError as exc:  # one file the decoder refuses: each on its own
            log.debug("batched device decode failed (%s); decoding one by one", exc)
            decoded = [_decode_one(items[i][1], device) for i in jpegs]
    for i, img in zip(jpegs, decoded):
        if img is None:  # not for the device decoder: PIL, as the host path does
            path = items[i][2]
            out[i] = host_geometry(load_image(path, draft=draft)).to(device)
        else:
            out[i] = geometry(img)
    for i, (kind, tensor, _) in enumerate(items):
        if kind == "crop":
            out[i] = tensor.to(device, non_blocking=True)
    return torch.stack(out)


def _decode_one(data: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)
    except RuntimeError:
        return None
