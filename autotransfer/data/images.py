"""Reading one image file: fully decoded, oriented and converted to 8-bit RGB.

Every path that reads pixels goes through :func:`load_image`, so the validation pass
(:func:`probe_image`) and the training data loader agree on what a readable image is:

* EXIF orientation is applied (a phone photo shot in portrait comes out upright);
* grayscale (``L``, ``1``), palette (``P``, with or without transparency), ``CMYK``,
  ``YCbCr``, ``LAB``, ``HSV`` become ``RGB``; images with alpha (``RGBA``, ``LA``, ``PA``,
  a transparent palette or colour key) are composited on white;
* 16-bit and 32-bit grayscale (``I;16``, ``I;16B``, ``I``, ``F``) are *scaled* to 8 bits,
  never clipped: ``I;16*`` divides by 257, ``I`` does the same when its values fit in
  16 bits, ``F`` multiplies by 255 when its values lie in [0, 1]; anything else is
  stretched from its own min..max;
* decompression bombs (more than ``max_pixels`` pixels, 89,478,485 by default like
  Pillow) are refused with a :class:`~autotransfer.errors.DataError` that names the file;
* only regular files are read (a named pipe would block, ``/dev/zero`` never ends), and a
  file larger than 16 MiB must look like an image from its header before it is read whole
  (a video left in a class folder is not loaded into memory). A file that cannot be read
  (missing, permissions, an I/O error) raises the same error, naming it.

Pillow refuses images above twice its own ``PIL.Image.MAX_IMAGE_PIXELS`` whatever
``max_pixels`` says; raise that global too if you really need larger images.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from autotransfer.errors import DataError

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own MAX_IMAGE_PIXELS
IDENTIFY_ABOVE_BYTES = 16 * 2**20  # larger files must identify as images before a full read
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_STRICT_LOCK = threading.RLock()
_QUIET_LOCK = threading.Lock()  # guards the two below (see quiet_bomb_warnings)
_quiet_depth = 0
_quiet_block: Any = None
_BOMB_FIX = "if the image is genuine, downscale it (training reads a few hundred pixels a side)"


class UnreadableImageError(DataError):
    """A file that cannot be used as an image; ``reason`` says why in a few words."""

    def __init__(self, path: str | os.PathLike[str], reason: str, fix: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        msg = f"Cannot read image {self.path}: {reason}."
        super().__init__(msg + (" " + fix if fix else ""))


@dataclass(frozen=True)
class ImageInfo:
    """What the validation pass learns about a readable image.

    ``width`` and ``height`` are those of the upright image (after EXIF orientation);
    ``mode`` is the Pillow mode stored on disk, before conversion to RGB.
    """

    width: int
    height: int
    mode: str
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageInfo:
        return cls(**d)


def load_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft: int | None = None,
) -> Image.Image:
    """Read an image file as an upright 8-bit RGB :class:`PIL.Image.Image`.

    Raises :class:`UnreadableImageError` (a :class:`~autotransfer.errors.DataError`)
    naming the file when it is empty, not an image, corrupt, truncated or too large.
    ``draft``: the smallest side the caller will resize to; JPEGs much larger than that
    are decoded at a reduced DCT scale (never below ``draft`` pixels on either side),
    which is several times faster than decoding every pixel and then shrinking.

    >>> img = load_image("data/cat/001.png")            # doctest: +SKIP
    >>> img.mode                                        # doctest: +SKIP
    'RGB'
    """
    with quiet_bomb_warnings():
        rgb, _ = _decode(read_image_file(path), path, max_pixels, draft)
    return rgb


def probe_image(
    path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> ImageInfo:
    """Fully decode ``path`` (truncation is an error here) and describe it.

    This is the check the validation pass runs on every file; it reads the file once,
    hashes its bytes and decodes every pixel exactly as :func:`load_image` does.

    >>> info = probe_image("data/cat/001.png")          # doctest: +SKIP
    >>> info.width, info.height, info.mode              # doctest: +SKIP
    (32, 32, 'P')
    """
    with strict_decoding():
        return probe_bytes(read_image_file(path), path, max_pixels=max_pixels)


def read_image_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of ``path``, or :class:`UnreadableImageError` naming it and saying why.

    Only regular files are read: the file is opened without blocking (a named pipe with
    no writer would hang ``open``) and checked with ``fstat``, so FIFOs, sockets and
    devices (``/dev/zero`` never ends) are refused. A file above
    :data:`IDENTIFY_ABOVE_BYTES` is read whole only when Pillow identifies its header.

    >>> read_image_file("data/cat/001.png")[:4]            # doctest: +SKIP
    b'\\x89PNG'
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _os_error(path, exc) from exc
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise _os_error(path, exc) from exc
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnreadableImageError(
            path,
            f"not a regular file but {_file_kind(st.st_mode)}",
            "Remove it, or replace it with the image file itself.",
        )
    with os.fdopen(fd, "rb") as f:
        try:
            if st.st_size > IDENTIFY_ABOVE_BYTES:
                _identify_header(f, path, st.st_size)
            return f.read()
        except OSError as exc:
            raise _os_error(path, exc) from exc


def _identify_header(f: io.BufferedReader, path: str | os.PathLike[str], size: int) -> None:
    """Refuse a large file whose header Pillow does not recognise; rewind ``f``."""
    try:  # callers silence bomb warnings (process-wide: not from here, in worker threads)
        Image.open(f)  # reads the header only; ``f`` stays open (we own it)
    except UnidentifiedImageError as exc:
        raise UnreadableImageError(
            path,
            f"not an image Pillow can identify ({size / 2**20:,.0f} MiB, not read)",
            "Remove it or move it out of the folder.",
        ) from exc
    except Exception:  # a bomb or a broken header: the full decode will say which
        pass
    f.seek(0)


def _os_error(path: str | os.PathLike[str], exc: OSError) -> UnreadableImageError:
    return UnreadableImageError(
        path,
        f"cannot read file ({exc.strerror or exc})",
        "Check that it exists, is readable and its disk is healthy, or remove it.",
    )


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "a special file")


def probe_bytes(
    data: bytes, path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> ImageInfo:
    """:func:`probe_image` on bytes already read; ``path`` only names the file in errors.

    Safe to call from many threads inside one :func:`strict_decoding` block (that is how
    the validation pass runs); outside one, Pillow may also warn about large images.
    """
    with _truncation_is_an_error():
        rgb, mode = _decode(data, path, max_pixels)
    return ImageInfo(rgb.width, rgb.height, mode, hashlib.sha256(data).hexdigest())


@contextmanager
def quiet_bomb_warnings() -> Iterator[None]:
    """Silence Pillow's ``DecompressionBombWarning``: :func:`load_image` raises its own error.

    The warning filters are process-wide state, and ``warnings.catch_warnings`` blocks
    entered and left by several threads at once restore each other's filters (one thread's
    leaving turns the warning back on for the others, or leaves it off for good). So the
    blocks are counted: the first thread in installs the filter, the last one out removes
    it, and any number of decoding threads may enter it.
    """
    global _quiet_depth, _quiet_block
    with _QUIET_LOCK:
        if _quiet_depth == 0:
            _quiet_block = warnings.catch_warnings()
            _quiet_block.__enter__()
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _quiet_block is not None:
                _quiet_block.__exit__(None, None, None)
                _quiet_block = None


@contextmanager
def strict_decoding() -> Iterator[None]:
    """Decode as the validation pass does: truncated data is an error, no bomb warnings.

    ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` is False by default; if someone switched it
    on, it is off inside the block and back on afterwards.

    >>> with strict_decoding():                                 # doctest: +SKIP
    ...     infos = list(pool.map(lambda p: probe_bytes(read(p), p), paths))
    """
    with quiet_bomb_warnings(), _truncation_is_an_error():
        yield


@contextmanager
def _truncation_is_an_error() -> Iterator[None]:
    if not ImageFile.LOAD_TRUNCATED_IMAGES:  # Pillow's default: nothing to change
        yield
        return
    with _STRICT_LOCK:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = True


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a decoded image of any Pillow mode to 8-bit RGB (alpha on white).

    >>> to_rgb(Image.new("LA", (2, 2), (0, 0))).getpixel((0, 0))
    (255, 255, 255)
    """
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_scale_to_uint8(img)).convert("RGB")
    if img.mode == "P" or "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _scale_to_uint8(img: Image.Image) -> np.ndarray:
    """Scale a 16/32-bit grayscale image to 0..255 (see the module docstring)."""
    a = np.asarray(img)
    if img.mode.startswith("I;16"):
        return np.round(a.astype(np.float64) / 257.0).astype(np.uint8)
    a = a.astype(np.float64)
    finite = a[np.isfinite(a)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if img.mode == "I" and lo >= 0 and hi <= 65535:
        scaled = a / 257.0
    elif img.mode == "F" and lo >= 0 and hi <= 1:
        scaled = a * 255.0
    elif hi > lo:
        scaled = (a - lo) * (255.0 / (hi - lo))
    else:
        scaled = np.zeros_like(a)
    return np.round(np.nan_to_num(scaled, nan=0.0)).clip(0, 255).astype(np.uint8)


def _decode(
    data: bytes, path: str | os.PathLike[str], max_pixels: int | None, draft: int | None = None
) -> tuple[Image.Image, str]:
    """Decode every pixel of ``data``; return the RGB image and the on-disk mode."""
    if not data:
        raise UnreadableImageError(path, "empty file (0 bytes)", "Delete it or replace it.")
    try:
        img = Image.open(io.BytesIO(data))
        _check_pixels(img.size, path, max_pixels)
        if draft and img.format == "JPEG" and img.mode in ("RGB", "L"):
            img.draft(img.mode, (draft, draft))
        img.load()
        mode = img.mode
        try:
            img = ImageOps.exif_transpose(img)
        except Exception as exc:  # a broken EXIF block should not lose a good image
            logger.debug("ignoring unreadable EXIF orientation of %s: %s", path, exc)
        return to_rgb(img), mode
    except UnreadableImageError:
        raise
    except UnidentifiedImageError as exc:
        raise UnreadableImageError(
            path, "not an image Pillow can identify", "Remove it or move it out of the folder."
        ) from exc
    except Image.DecompressionBombError as exc:
        raise UnreadableImageError(path, f"decompression bomb ({exc}); {_BOMB_FIX}") from exc
    except Exception as exc:  # Pillow raises many types on corrupt data
        kind = "truncated" if "truncated" in str(exc) else "corrupt"
        raise UnreadableImageError(
            path, f"{kind} image data ({type(exc).__name__}: {exc})", "Re-export or remove it."
        ) from exc


def _check_pixels(
    size: tuple[int, int], path: str | os.PathLike[str], max_pixels: int | None
) -> None:
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise UnreadableImageError(
            path,
            f"decompression bomb: {width}x{height} = {width * height:,} pixels is more than "
            f"the limit of {max_pixels:,}; {_BOMB_FIX}",
        )
