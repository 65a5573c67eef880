"""What a classifier accepts as images, made into 8-bit RGB PIL images.

File paths, PIL images, HWC (or HW) arrays and CHW/NCHW tensors, alone or in a list,
become one PIL image each, so that every form of the same picture goes through the same
timm evaluation transform and gets the same answer.

>>> [to_pil(x).size for x in flatten_inputs(torch.zeros(2, 3, 8, 8))]
[(8, 8), (8, 8)]
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from PIL import Image

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
    from autotransfer.data.images import load_image, to_rgb

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
    from autotransfer.data.images import to_rgb

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
