"""The demo's real dataset: scikit-learn's bundled handwritten digits as an image folder.

``sklearn.datasets.load_digits`` ships with scikit-learn (no download): 1,797 real 8x8
scans of handwritten digits with 17 grey levels (0..16), ten classes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

DIGITS_COUNT = 1797
DIGITS_SIZE = 32  # side of the written images, in pixels


def write_digits_folder(dest: str | os.PathLike[str]) -> Path:
    """Write the digits as ``dest/<digit>/<index>.png`` and return ``dest``.

    Each image is an 8-bit grayscale PNG: grey levels 0..16 are scaled to 0..255 and the
    8x8 scan is upscaled to 32x32 with nearest-neighbour (every original pixel becomes a
    4x4 block, no information is invented). 32 pixels is the smallest input many
    backbones accept and makes the files viewable; the data loader resizes anyway.
    ``<index>`` is the row in ``load_digits()``, zero-padded to four digits.

    Idempotent: files already present are kept, missing ones are written (atomically, so
    an interrupted run never leaves a half-written PNG behind).

    >>> root = write_digits_folder(tmp_path / "digits")         # doctest: +SKIP
    >>> sorted(p.name for p in root.iterdir())                  # doctest: +SKIP
    ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']
    """
    dest = Path(dest)
    from sklearn.datasets import load_digits

    digits = load_digits()
    targets = [dest / str(int(t)) / f"{i:04d}.png" for i, t in enumerate(digits.target)]
    if all(p.is_file() for p in targets):
        return dest
    scale = DIGITS_SIZE // digits.images.shape[1]
    for path, image in zip(targets, digits.images):
        if path.is_file():
            continue
        grey = np.round(image * (255.0 / 16.0)).astype(np.uint8)
        big = np.kron(grey, np.ones((scale, scale), dtype=np.uint8))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")  # hidden: ignored by open_dataset
        Image.fromarray(big).save(tmp, format="PNG")
        os.replace(tmp, path)
    return dest
