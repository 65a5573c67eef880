"""Tiny image folders and deliberately bad image files, for tests and plugin authors.

Every image is real (PNG or JPEG written by Pillow) and every class looks different
(its own colour and stripe direction, plus per-image noise), so even a linear probe on
frozen features separates the classes of :func:`make_image_folder`.

>>> from autotransfer.testing.images import make_image_folder, write_truncated_jpeg
>>> root = make_image_folder(tmp_path / "data", classes=("cat", "dog"))   # doctest: +SKIP
>>> write_truncated_jpeg(root / "cat" / "broken.jpg")                      # doctest: +SKIP
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "class_image",
    "make_image_folder",
    "write_16bit_png",
    "write_cmyk_jpeg",
    "write_corrupt",
    "write_decompression_bomb",
    "write_empty",
    "write_exif_rotated_jpeg",
    "write_garbage",
    "write_grayscale",
    "write_image",
    "write_palette",
    "write_rgba",
    "write_text_as_image",
    "write_truncated_jpeg",
]

_PALETTE = [
    (220, 40, 40),
    (40, 160, 60),
    (40, 70, 220),
    (230, 200, 30),
    (160, 40, 200),
    (30, 200, 200),
    (240, 130, 20),
    (120, 120, 120),
]


def class_image(
    index: int, size: tuple[int, int] = (32, 32), rng: np.random.Generator | None = None
) -> Image.Image:
    """An RGB image that looks like class ``index``: colour, stripe angle, noise.

    >>> class_image(0).size
    (32, 32)
    """
    rng = rng if rng is not None else np.random.default_rng(index)
    width, height = size
    colour = np.array(_PALETTE[index % len(_PALETTE)], dtype=np.float64)
    yy, xx = np.mgrid[0:height, 0:width]
    angle = np.pi * (index % 4) / 4 + 0.1 * (index // len(_PALETTE))
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / 8))
    pixels = colour * (0.75 + 0.25 * stripes)[..., None]
    pixels = pixels + rng.normal(0, 12, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_image(path: str | Path, img: Image.Image, **save_kwargs: object) -> Path:
    """Save ``img`` to ``path`` (format from the suffix), creating folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **save_kwargs)
    return path


def make_image_folder(
    root: str | Path,
    classes: Sequence[str] = ("a", "b"),
    per_class: int = 6,
    size: tuple[int, int] = (32, 32),
    layout: str = "class_folders",
    seed: int = 0,
    *,
    splits: Sequence[str] = ("train", "val"),
    formats: Sequence[str] = ("png", "jpg"),
) -> Path:
    """Write a small labelled image folder and return its root.

    ``layout="class_folders"`` writes ``root/<class>/<class>_<i>.<ext>`` with
    ``per_class`` images per class; ``layout="split_folders"`` writes
    ``root/<split>/<class>/...`` for each of ``splits``, ``per_class`` images per class
    in ``train`` and ``max(1, per_class // 2)`` in the others. File formats cycle
    through ``formats``. Same arguments, same bytes.

    >>> root = make_image_folder(tmp_path / "d", classes=("x", "y"), per_class=4)  # doctest: +SKIP
    >>> sorted(p.name for p in root.iterdir())                                     # doctest: +SKIP
    ['x', 'y']
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if layout == "class_folders":
        targets = [(root, per_class)]
    elif layout == "split_folders":
        targets = [
            (root / s, per_class if s == "train" else max(1, per_class // 2)) for s in splits
        ]
    else:
        raise ValueError(f"Unknown layout {layout!r}; use 'class_folders' or 'split_folders'.")
    for base, count in targets:
        for ci, name in enumerate(classes):
            for i in range(count):
                ext = formats[i % len(formats)]
                img = class_image(ci, size, rng)
                write_image(base / name / f"{name}_{i:03d}.{ext}", img)
    return root


def write_corrupt(path: str | Path, size: tuple[int, int] = (32, 32)) -> Path:
    """A PNG whose header is fine but whose pixel data is garbage."""
    buf = bytearray(_encode(class_image(0, size), "PNG"))
    start = buf.index(b"IDAT") + 4
    buf[start : start + 64] = bytes(range(64))
    return _write_bytes(path, bytes(buf))


def write_garbage(path: str | Path) -> Path:
    """A ``.jpg`` with a JPEG signature followed by bytes no decoder recognises."""
    return _write_bytes(path, b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)


def write_truncated_jpeg(path: str | Path, size: tuple[int, int] = (64, 64)) -> Path:
    """A real JPEG cut in half: the header reads, the pixels do not."""
    buf = _encode(class_image(0, size), "JPEG")
    return _write_bytes(path, buf[: len(buf) // 2])


def write_empty(path: str | Path) -> Path:
    """A zero-byte file."""
    return _write_bytes(path, b"")


def write_text_as_image(path: str | Path) -> Path:
    """A text file whose name says it is an image."""
    return _write_bytes(path, b"this is not an image, just a note someone left\n")


def write_grayscale(path: str | Path, size: tuple[int, int] = (32, 32)) -> Path:
    """An 8-bit grayscale (``L``) image."""
    return write_image(path, class_image(1, size).convert("L"))


def write_palette(
    path: str | Path, size: tuple[int, int] = (32, 32), transparency: bool = True
) -> Path:
    """A palette (``P``) PNG; with ``transparency`` palette index 0 is transparent."""
    img = Image.new("P", size, 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 255] * 254)
    img.paste(1, (0, 0, size[0] // 2, size[1]))  # left half red, right half index 0
    kwargs: dict[str, object] = {"transparency": 0} if transparency else {}
    return write_image(path, img, **kwargs)


def write_rgba(path: str | Path, size: tuple[int, int] = (32, 32)) -> Path:
    """An ``RGBA`` PNG: left half opaque red, right half fully transparent black."""
    img = Image.new("RGBA", size, (0, 0, 0, 0))
    img.paste((255, 0, 0, 255), (0, 0, size[0] // 2, size[1]))
    return write_image(path, img)


def write_cmyk_jpeg(path: str | Path, size: tuple[int, int] = (32, 32)) -> Path:
    """A ``CMYK`` JPEG."""
    return write_image(path, class_image(2, size).convert("CMYK"), format="JPEG")


def write_16bit_png(path: str | Path, size: tuple[int, int] = (32, 32)) -> Path:
    """A 16-bit grayscale PNG whose values span the whole 0..65535 range (left to right)."""
    row = np.linspace(0, 65535, size[0]).round().astype(np.uint16)
    return write_image(path, Image.fromarray(np.tile(row, (size[1], 1))))


def write_exif_rotated_jpeg(path: str | Path, size: tuple[int, int] = (40, 20)) -> Path:
    """A JPEG stored ``size`` (w, h) with EXIF orientation 6 (rotate 90° clockwise).

    The stored top-left quarter is red, the rest white; displayed upright, the image is
    ``(h, w)`` and the red block sits in the top-*right* corner.
    """
    width, height = size
    img = Image.new("RGB", size, (255, 255, 255))
    img.paste((255, 0, 0), (0, 0, width // 2, height // 2))
    exif = Image.Exif()
    exif[0x0112] = 6
    return write_image(path, img, format="JPEG", exif=exif, quality=95)


def write_decompression_bomb(path: str | Path, side: int = 30_000) -> Path:
    """A PNG that declares ``side`` x ``side`` pixels but is a few bytes on disk."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grayscale
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * (side + 1)))
        + chunk(b"IEND", b"")
    )
    return _write_bytes(path, data)


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
