"""Decoded training images, kept in memory as uint8 squares and augmented on the fly.

Every image is decoded once per fit (not once per epoch): its shorter side is resized
to ``side`` and the centre square kept, the same geometry as timm's evaluation
transform (resize to ``resolution / crop_pct``, centre crop). Training crops and flips
these squares in the training process, on the training device.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from autotransfer.data.images import load_image
from autotransfer.data.types import ImageDataset, ImageRecord

log = logging.getLogger(__name__)

AUGMENTATIONS = ("crop_flip", "crop", "none")
MIN_AREA = 0.6  # smallest random crop, as a share of the image area


def square(path: str, side: int) -> np.ndarray:
    """One image as a (3, side, side) uint8 array: shorter side resized, centre square."""
    img = load_image(path, draft=side)
    w, h = img.size
    scale = side / min(w, h)
    nw, nh = max(side, round(w * scale)), max(side, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - side) // 2, (nh - side) // 2
    img = img.crop((left, top, left + side, top + side))
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


class ImageCache:
    """Decoded splits of one dataset, per square side, shared by every trial of a fit.

    >>> cache = ImageCache(dataset)                  # doctest: +SKIP
    >>> x, y = cache.split("train", side=146)         # doctest: +SKIP
    >>> x.shape, x.dtype                              # doctest: +SKIP
    (torch.Size([960, 3, 146, 146]), torch.uint8)
    """

    def __init__(
        self,
        dataset: ImageDataset,
        *,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> None:
        self.dataset = dataset
        self.progress = progress
        self._store: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def split(self, name: str, *, side: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images uint8 (N, 3, side, side), labels int64 (N,)) of one split."""
        key = (name, int(side))
        if key not in self._store:
            self._store[key] = self._decode(self.dataset.split(name), int(side), name)
        return self._store[key]

    def _decode(
        self, records: Sequence[ImageRecord], side: int, name: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = torch.empty((len(records), 3, side, side), dtype=torch.uint8)
        for i, rec in enumerate(records):
            out[i] = torch.from_numpy(square(rec.path, side))
            if self.progress is not None:
                self.progress(f"decoding {name}", i + 1, len(records))
        labels = torch.tensor([r.label for r in records], dtype=torch.int64)
        log.debug("decoded %d %s images at %d px (%.0f MB)", len(records), name, side,
                  out.numel() / 2**20)
        return out, labels


def augment_batch(
    x: torch.Tensor, resolution: int, mode: str, generator: torch.Generator
) -> torch.Tensor:
    """Random resized crops (0.6-1 of the area, aspect 3/4-4/3: about BiT's random crop of
    128 from 160) and, for ``crop_flip``, horizontal flips of a uint8 batch; ``none`` is the
    evaluation centre crop. Short fine-tuning schedules do better with mild crops.

    Runs where ``x`` is (the training device); the random draws come from ``generator``
    on the CPU, so a seed gives the same crops on any device."""
    if mode == "none":
        return center_crop(x, resolution)
    n, _, h, w = x.shape
    out = torch.empty((n, x.shape[1], resolution, resolution), dtype=x.dtype, device=x.device)
    r = torch.rand((n, 4), generator=generator).tolist()
    for i in range(n):
        area = h * w * (MIN_AREA + (1 - MIN_AREA) * r[i][0])
        log_ratio = np.log(3 / 4) + (np.log(4 / 3) - np.log(3 / 4)) * r[i][1]
        ratio = float(np.exp(log_ratio))
        cw = int(round(min(w, np.sqrt(area * ratio))))
        ch = int(round(min(h, np.sqrt(area / ratio))))
        top = int((h - ch) * r[i][2])
        left = int((w - cw) * r[i][3])
        crop = x[i : i + 1, :, top : top + ch, left : left + cw].float()
        crop = torch.nn.functional.interpolate(
            crop, size=(resolution, resolution), mode="bilinear", antialias=True,
            align_corners=False,
        )
        out[i] = crop[0].round().clamp(0, 255).to(x.dtype)
    if mode == "crop_flip":
        flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        out[flip] = out[flip].flip(-1)
    return out


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
