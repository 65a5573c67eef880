"""What a forward pass reads: timm's data config and evaluation transform for a backbone,
the loader, and the batches of uint8 crops a pass normalises on its device.

A batch of crops comes from one of three places: a :class:`~autotransfer.backbones.decoded.
DecodedImages` store where an earlier pass at the same geometry left them; loader workers
that decode, resize and crop the files; or, for JPEGs on CUDA, the device's decoder
(:mod:`~autotransfer.backbones.device_decode`), the workers reading only the bytes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence

import timm.data
import torch
from torch.utils.data import DataLoader, Dataset

from autotransfer.backbones import device_decode
from autotransfer.backbones.decoded import DecodedImages, split_transform
from autotransfer.backbones.spec import BackboneSpec
from autotransfer.data.images import load_image
from autotransfer.data.types import ImageRecord


class ImageFiles(Dataset):
    """Records through ``load_image`` and a transform; ``draft`` speeds up JPEG decoding."""

    def __init__(
        self, records: Sequence[ImageRecord], transform: Callable, draft: int | None = None
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.draft = draft

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        rec = self.records[i]
        return self.transform(load_image(rec.path, draft=self.draft)), rec.label


def resize_side(cfg: dict) -> int:
    """The side timm's eval transform resizes to before its centre crop."""
    return int(math.floor(cfg["input_size"][-1] / cfg["crop_pct"]))


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as given, else CUDA when present, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def data_config(spec: BackboneSpec, resolution: int | None = None) -> dict:
    """timm's data config for a backbone: its weights' normalisation, crop and resolution.

    Built from the spec alone (no model needed), so a cache hit never loads weights.
    """
    res = int(resolution or spec.input_size)
    return timm.data.resolve_data_config(
        args={
            "input_size": (3, res, res),
            "mean": tuple(spec.weights.mean),
            "std": tuple(spec.weights.std),
            "interpolation": spec.interpolation,
            "crop_pct": spec.crop_pct,
            "crop_mode": "center",
        },
        use_test_size=True,
    )


def eval_transform(cfg: dict) -> Callable:
    """The evaluation preprocessing timm builds for a data config."""
    return timm.data.create_transform(**cfg, is_training=False)


def default_num_workers() -> int:
    """Loader workers: leave most cores to the model on CPU-only machines; with a GPU,
    decoding is the bottleneck, so all cores but one (16 at most) decode (on an H100 with
    16 cores, 15 workers extracted 1.6-1.8x faster than 8: benchmarks/results)."""
    cores = os.cpu_count() or 1
    if torch.cuda.is_available():
        return max(1, min(16, cores - 1))
    return max(1, min(4, cores // 2))


def default_batch_size(device: torch.device) -> int:
    """Images per forward pass: small batches are fastest on CPUs (cache-resident activations,
    measured in benchmarks/results/), large ones on GPUs."""
    return 128 if device.type == "cuda" else 8


class CropBatches:
    """``(crops, labels)`` batches of ``records`` under ``cfg``'s evaluation transform, in
    order, for one pass on ``dev``; ``normalise`` is what is left to do on the device
    (None: the transform normalises in the workers, the batches are floats).

    With ``decoded``, the crops are read from it when an earlier pass at the same geometry
    left them there, else kept for the next pass when they fit, once the pass has read
    every batch (a pass stopped early keeps nothing). With device decoding
    (``jpeg_decode``: :func:`~autotransfer.backbones.device_decode.use_device_decode`),
    the device decodes the JPEGs and nothing is kept: decoding there is cheap.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        cfg: dict,
        dev: torch.device,
        batch_size: int,
        num_workers: int,
        decoded: DecodedImages | None = None,
        jpeg_decode: str = "auto",
    ) -> None:
        self.records, self.cfg, self.dev = records, cfg, dev
        self.batch_size, self.num_workers = batch_size, num_workers
        self.transform, self.normalise, geometry = eval_transform(cfg), None, None
        if (parts := split_transform(self.transform)) is not None:
            self.transform, self.normalise, geometry = parts
        self.store = decoded if decoded is not None and geometry else None
        self.key = (
            None if self.store is None else self.store.key(geometry, [r.path for r in records])
        )
        self.held = None if self.store is None else self.store.get(self.key)
        self.on_device = (
            self.held is None
            and self.normalise is not None
            and device_decode.use_device_decode(jpeg_decode, dev, records)
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.held is not None:  # an earlier pass decoded them
            ys = torch.as_tensor([r.label for r in self.records], dtype=torch.int64)
            for i in range(0, len(self.held), self.batch_size):
                yield self.held[i : i + self.batch_size], ys[i : i + self.batch_size]
            return
        side, resize = int(self.cfg["input_size"][-1]), resize_side(self.cfg)
        fits = self.store is not None and self.store.fits(len(self.records) * 3 * side * side)
        keep: list[torch.Tensor] | None = [] if fits and not self.on_device else None
        geometry = device_decode.DeviceGeometry(
            resize, side, self.cfg.get("interpolation", "bilinear")
        )
        for x, y in self._loader(resize):
            if self.on_device:
                x = device_decode.decode_batch(x, self.dev, geometry, self.transform, resize)
            if keep is not None:
                keep.append(x)
            yield x, y
        if keep:
            self.store.keep(self.key, torch.cat(keep))

    def _loader(self, resize: int) -> DataLoader:
        cuda, workers = self.dev.type == "cuda", self.num_workers
        return DataLoader(
            device_decode.FileBytes(self.records, self.transform, resize)
            if self.on_device
            else ImageFiles(self.records, self.transform, draft=resize),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=workers,
            pin_memory=cuda and not self.on_device,
            persistent_workers=False,
            prefetch_factor=4 if workers > 0 else None,
            collate_fn=device_decode.collate if self.on_device else None,
        )
