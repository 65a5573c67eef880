"""Decoded training images, kept as uint8 squares and augmented on the fly.

Every image is decoded at most once per fit (not once per epoch), when a batch first
needs it, on every core (see :mod:`autotransfer.strategies.image_store` for where the
pixels live and the memory cap), as timm's
evaluation transform does it, with torchvision's own resize and crop: the shorter side
resized to ``side`` (``resolution / crop_pct``) with the weights' interpolation, then the
centre square kept (training crops and flips it, on the training device) or, for
validation, the centre ``resolution`` crop: the very pixels :meth:`Classifier.predict`
gives the model.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autotransfer.backbones.device_decode import (
    DeviceGeometry,
    FileBytes,
    decode_batch,
    use_device_decode,
)
from autotransfer.backbones.inputs import resolve_device
from autotransfer.cache import resolve_cache_dir
from autotransfer.data.images import load_image
from autotransfer.data.types import ImageDataset, ImageRecord
from autotransfer.memory import available_memory, default_memory_cap
from autotransfer.strategies.image_store import LazyImages, disk_images
from autotransfer.units import parse_size

log = logging.getLogger(__name__)

MIN_AREA = 0.6  # smallest random crop, as a share of the image area
DEVICE_DECODE_BATCH = 256  # JPEGs decoded on the device in one call


def square(
    path: str, side: int, *, interpolation: str = "bicubic", crop: int | None = None
) -> np.ndarray:
    """One image as a (3, crop, crop) uint8 array (``crop`` default ``side``): shorter side
    resized to ``side``, centre crop; the geometry and interpolation of timm's
    evaluation transform, by the same torchvision functions."""
    return pil_square(load_image(path, draft=side), side, interpolation, crop)


def pil_square(img: Any, side: int, interpolation: str, crop: int | None) -> np.ndarray:
    """:func:`square` of a decoded PIL image."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    img = F.resize(img, side, interpolation=InterpolationMode(interpolation))
    img = F.center_crop(img, crop or side)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


class DeviceSquares:
    """:func:`square` for many images at once, the JPEGs decoded on ``device`` in one call
    (nvJPEG on CUDA; :func:`torchvision.io.decode_jpeg`) and resized and cropped there,
    the squares brought back to the host for the cache. Threads read the files' bytes
    (and decode, through PIL, the files that are not JPEGs); a JPEG the device decoder
    refuses goes through PIL too. The pixels differ from PIL's resampling by a few grey
    levels, as in :mod:`autotransfer.backbones.device_decode`, which this shares."""

    def __init__(
        self,
        records: Sequence[ImageRecord],
        side: int,
        interpolation: str,
        crop: int,
        device: torch.device,
        threads: int,
    ) -> None:
        self.device = device
        self.threads = threads
        self.side = side
        self.geometry = DeviceGeometry(side, crop, interpolation)
        self._host = _HostSquare(side, interpolation, crop)
        self._files = FileBytes(records, self._host, draft=side)

    def __call__(self, idx: np.ndarray) -> torch.Tensor:
        """The (len(idx), 3, crop, crop) uint8 squares of images ``idx``, on the host."""
        out = []
        for start in range(0, len(idx), DEVICE_DECODE_BATCH):
            part = [int(i) for i in idx[start : start + DEVICE_DECODE_BATCH]]
            with ThreadPoolExecutor(max(1, min(self.threads, len(part)))) as pool:
                items = [item for item, _ in pool.map(self._files.__getitem__, part)]
            crops = decode_batch(items, self.device, self.geometry, self._host, self.side)
            out.append(crops.cpu())
        return torch.cat(out)


class _HostSquare:
    """A PIL image's square as a CHW uint8 tensor (for non-JPEGs and refused JPEGs)."""

    def __init__(self, side: int, interpolation: str, crop: int) -> None:
        self.side, self.interpolation, self.crop = side, interpolation, crop

    def __call__(self, img: Any) -> torch.Tensor:
        return torch.from_numpy(pil_square(img, self.side, self.interpolation, self.crop))


def decode_threads() -> int:
    """Threads that decode a batch's new images: every core (16 at most)."""
    return max(1, min(16, os.cpu_count() or 1))


def _within_memory(cap: int) -> int:
    """``cap``, or half the available memory when ``cap`` is more than the machine has
    (an out-of-memory kill would lose the trial in progress), with a warning."""
    available = available_memory()
    if available is None or cap <= available // 2:
        return cap
    log.warning(
        "image_cache_memory asks for %.1f GB of decoded images in memory, but this machine has "
        "%.1f GB available; keeping at most %.1f GB in memory and the rest in a memory map on "
        "disk. Set image_cache_memory lower to choose the split yourself.",
        cap / 1e9,
        available / 1e9,
        available / 2e9,
    )
    return available // 2


class ImageCache:
    """Decoded splits of one dataset, per square side, shared by every trial of a fit.

    Images are decoded when first indexed (see :class:`LazyImages`); the splits held in
    memory together stay under ``memory_cap`` bytes (``"2GB"``; None: a quarter of the
    available memory), the others are memory-mapped from unnamed files in ``disk_dir``
    (None: ``images`` in the autotransfer cache folder). :meth:`close` frees both.
    ``jpeg_decode`` (``"auto"``, ``"device"``, ``"host"``: as for extraction,
    :func:`~autotransfer.backbones.device_decode.use_device_decode`) says whether JPEGs
    are decoded on ``device`` (None: CUDA when present), in batches (:class:`DeviceSquares`),
    or through PIL on threads.

    >>> cache = ImageCache(dataset, memory_cap="2GB")  # doctest: +SKIP
    >>> x, y = cache.split("train", side=146)         # doctest: +SKIP
    >>> x.shape, x[torch.tensor([0, 5])].dtype         # doctest: +SKIP
    (torch.Size([960, 3, 146, 146]), torch.uint8)
    """

    def __init__(
        self,
        dataset: ImageDataset,
        *,
        progress: Callable[[str, int, int], None] | None = None,
        memory_cap: str | float | None = None,
        disk_dir: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = None,
        jpeg_decode: str = "auto",
    ) -> None:
        self.dataset = dataset
        self.device = resolve_device(device)
        self.jpeg_decode = jpeg_decode
        self.progress = progress
        cap = parse_size(memory_cap, "memory_cap")
        self.memory_cap = default_memory_cap() if cap is None else _within_memory(cap)
        self.disk_dir = disk_dir
        # (split, side, interpolation, crop) -> (images, labels)
        self._store: dict[tuple, tuple[LazyImages, torch.Tensor]] = {}

    @property
    def memory_bytes(self) -> int:
        """Bytes of the splits held in memory (reserved in full when a split is made)."""
        return sum(x.nbytes for x, _ in self._store.values() if not x.on_disk)

    @property
    def disk_bytes(self) -> int:
        """Bytes of the splits memory-mapped from disk."""
        return sum(x.nbytes for x, _ in self._store.values() if x.on_disk)

    @property
    def decoded(self) -> int:
        """Images decoded so far, all splits together."""
        return sum(x.decoded for x, _ in self._store.values())

    def split(
        self,
        name: str,
        *,
        side: int,
        interpolation: str = "bicubic",
        crop: int | None = None,
    ) -> tuple[LazyImages, torch.Tensor]:
        """(images uint8 (N, 3, c, c), labels int64 (N,)) of one split, ``c`` = ``crop``
        or ``side`` (see :func:`square`); the images are decoded when first indexed."""
        key = (name, int(side), interpolation, crop)
        if key not in self._store:
            records = self.dataset.split(name)
            self._store[key] = self._make(records, int(side), interpolation, crop, name)
        return self._store[key]

    def close(self) -> None:
        """Drop every split: memory is freed and memory maps' files go."""
        for x, _ in self._store.values():
            x.release()
        self._store.clear()

    def __enter__(self) -> ImageCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _make(
        self,
        records: Sequence[ImageRecord],
        side: int,
        interpolation: str,
        crop: int | None,
        name: str,
    ) -> tuple[LazyImages, torch.Tensor]:
        c = int(crop or side)
        shape = (len(records), 3, c, c)
        nbytes = math.prod(shape)
        on_disk = self.memory_bytes + nbytes > self.memory_cap
        if on_disk:
            directory = Path(self.disk_dir or resolve_cache_dir(None) / "images")
            what = f"{name} images ({len(records)} at {c} px)"
            storage = disk_images(directory, shape, what, self.memory_cap)
        else:
            storage = torch.empty(shape, dtype=torch.uint8)

        def decode(i: int) -> np.ndarray:
            return square(records[i].path, side, interpolation=interpolation, crop=c)

        threads = decode_threads()
        on_device = use_device_decode(self.jpeg_decode, self.device, records)
        images = LazyImages(
            decode,
            storage,
            decode_many=DeviceSquares(records, side, interpolation, c, self.device, threads)
            if on_device
            else None,
            threads=threads,
            progress=self.progress,
            label=f"decoding {name}",
            on_disk=on_disk,
        )
        labels = torch.tensor([r.label for r in records], dtype=torch.int64)
        log.log(
            logging.INFO if on_disk else logging.DEBUG,
            "%d %s images at %d px (%.0f MB) decode%s into %s",
            len(records),
            name,
            c,
            nbytes / 2**20,
            f" on {self.device}" if on_device else "",
            f"a memory map (the {self.memory_cap / 2**20:.0f} MB cap on memory is reached)"
            if on_disk
            else "memory",
        )
        return images, labels


def augment_batch(
    x: torch.Tensor, resolution: int, mode: str, generator: torch.Generator
) -> torch.Tensor:
    """Random resized crops (0.6-1 of the area, aspect 3/4-4/3: about BiT's random crop of
    128 from 160) and, for ``crop_flip``, horizontal flips of a uint8 batch; ``none`` is the
    evaluation centre crop. Short fine-tuning schedules do better with mild crops.

    All crops of the batch are resampled in one ``roi_align`` call (bilinear, averaging
    2x2 samples per output pixel where a crop is shrunk), where ``x`` is: on the training
    device. The random draws come from ``generator`` on the CPU, so a seed gives the same
    crops on any device.

    >>> g = torch.Generator().manual_seed(0)
    >>> augment_batch(torch.zeros(2, 3, 40, 40, dtype=torch.uint8), 32, "crop_flip", g).shape
    torch.Size([2, 3, 32, 32])
    """
    if mode == "none":
        return center_crop(x, resolution)
    from torchvision.ops import roi_align

    n, _, h, w = x.shape
    r = torch.rand((n, 4), generator=generator, dtype=torch.float64)
    area = h * w * (MIN_AREA + (1 - MIN_AREA) * r[:, 0])
    ratio = torch.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * r[:, 1])
    cw = torch.sqrt(area * ratio).round().clamp(1, w)
    ch = torch.sqrt(area / ratio).round().clamp(1, h)
    top, left = ((h - ch) * r[:, 2]).floor(), ((w - cw) * r[:, 3]).floor()
    boxes = torch.stack([torch.arange(n, dtype=torch.float64), left, top, left + cw, top + ch], 1)
    out = roi_align(
        x.float(),
        boxes.to(x.device, torch.float32),
        output_size=resolution,
        sampling_ratio=2,
        aligned=True,
    )
    if mode == "crop_flip":
        flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        out = torch.where(flip.view(-1, 1, 1, 1), out.flip(-1), out)
    return out.round_().clamp_(0, 255).to(x.dtype)


def center_crop(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """The centre ``resolution`` square of a batch (the evaluation view)."""
    h, w = x.shape[-2:]
    top, left = (h - resolution) // 2, (w - resolution) // 2
    return x[..., top : top + resolution, left : left + resolution]


def normalize(
    x: torch.Tensor, mean: Sequence[float], std: Sequence[float], device: torch.device
) -> torch.Tensor:
    """uint8 batch -> float, scaled to [0, 1] and normalised with the weights' mean/std."""
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    return (x.to(device, non_blocking=True).float() / 255.0 - m) / s
