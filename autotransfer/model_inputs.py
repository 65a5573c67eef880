"""What a classifier accepts as images, made into 8-bit RGB PIL images.

File paths, PIL images, HWC (or HW) arrays and CHW/NCHW tensors, alone or in a list,
become one PIL image each, so that every form of the same picture goes through the same
timm evaluation transform and gets the same answer.

>>> [to_pil(x).size for x in flatten_inputs(torch.zeros(2, 3, 8, 8))]
[(8, 8), (8, 8)]
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from PIL import Image

from autotransfer.data.images import load_image, to_rgb
from autotransfer.errors import DataError


def flatten_inputs(inputs: Any) -> list[Any]:
    """One entry per image: lists are unpacked, NCHW tensors and NHWC arrays split."""
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    out: list[Any] = []
    for item in items:
        if isinstance(item, torch.Tensor) and item.ndim == 4:
            out.extend(item.unbind(0))
        elif isinstance(item, np.ndarray) and item.ndim == 4:
            out.extend(list(item))
        else:
            out.append(item)
    return out


def to_pil(item: Any, *, draft: int | None = None) -> Image.Image:
    """An 8-bit RGB PIL image from a path, PIL image, HWC array or CHW tensor.

    ``draft``: for a path, the side the image will be resized to; a large JPEG is then
    decoded at a reduced scale, as :func:`~autotransfer.data.images.load_image` does for
    training and feature extraction, so that a file gets the pixels its model learnt from.
    """
    if isinstance(item, (str, os.PathLike)):
        return load_image(item, draft=draft)
    if isinstance(item, Image.Image):
        return to_rgb(item)
    if isinstance(item, torch.Tensor):
        if item.ndim != 3:
            raise DataError(f"Image tensors must be CHW or NCHW; got shape {tuple(item.shape)}.")
        return _array_to_pil(item.detach().cpu().permute(1, 2, 0).numpy(), "tensor")
    if isinstance(item, np.ndarray):
        return _array_to_pil(item, "array")
    raise DataError(
        f"Cannot classify an input of type {type(item).__name__}. Pass file paths, PIL "
        "images, HWC uint8 arrays or CHW/NCHW tensors (uint8, or float in [0, 1]), or a "
        "list of them."
    )


def _array_to_pil(a: np.ndarray, kind: str) -> Image.Image:
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        want = "CHW with 1, 3 or 4 channels" if kind == "tensor" else "HWC with 1, 3 or 4 channels"
        shape = a.shape if kind == "array" else (a.shape[2], *a.shape[:2])
        raise DataError(f"Image {kind}s must be {want}; got shape {tuple(shape)}.")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.floating):
            raise DataError(
                f"Image {kind}s must be uint8 (0..255) or float in [0, 1]; got {a.dtype}."
            )
        lo, hi = float(a.min()), float(a.max())
        if lo < -0.01 or hi > 1.01:
            raise DataError(
                f"A float image {kind} has values from {lo:.3g} to {hi:.3g}; pass pixels in "
                "[0, 1] (not normalised: the classifier normalises them itself) or uint8."
            )
        a = np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
    a = np.ascontiguousarray(a)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[a.shape[2]]
    return to_rgb(Image.fromarray(a[:, :, 0] if mode == "L" else a, mode=mode))


LOADER_MIN_FILES = 256  # from this many files, decode them in loader worker processes


class _Prepared(torch.utils.data.Dataset):
    """Items through :func:`to_pil` and a transform (for loader workers)."""

    def __init__(self, items: list[Any], transform: Callable, draft: int | None) -> None:
        self.items, self.transform, self.draft = items, transform, draft

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> torch.Tensor:
        return _prepare(self.items[i], transform=self.transform, draft=self.draft)


def input_batches(
    items: list[Any], transform: Callable, draft: int | None, size: int, workers: int
) -> Iterator[torch.Tensor]:
    """Stacked, transformed batches of ``size`` items, decoded beside the forward pass that
    consumes them: many files in ``workers`` loader processes (as feature extraction
    reads them: on two cores 1.5x the rate of threads, which share the interpreter with
    the model); anything else in threads, one batch ahead."""
    files = all(isinstance(x, (str, os.PathLike)) for x in items)
    if files and workers > 0 and len(items) >= LOADER_MIN_FILES:
        loader = torch.utils.data.DataLoader(
            _Prepared(items, transform, draft),
            batch_size=size,
            num_workers=workers,
            prefetch_factor=4,
        )
        yield from loader
        return
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1, size))) as pool:
        prepare = functools.partial(_prepare, transform=transform, draft=draft)
        ahead = [pool.submit(prepare, x) for x in items[:size]]
        for start in range(0, len(items), size):
            batch = [f.result() for f in ahead]
            ahead = [pool.submit(prepare, x) for x in items[start + size : start + 2 * size]]
            yield torch.stack(batch)


def _prepare(item: Any, *, transform: Callable, draft: int | None) -> torch.Tensor:
    return transform(to_pil(item, draft=draft))
