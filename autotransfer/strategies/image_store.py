"""Where decoded training images live: lazily filled, in memory up to a cap, else on disk.

A split's images (N, 3, c, c) uint8 are a :class:`LazyImages`: indexing it decodes the
images not seen before (on threads) and keeps them, so a trial that trains on 5,000 of
48,000 images decodes about 5,000. Its storage is an in-memory tensor while the
:class:`~autotransfer.strategies.images.ImageCache` stays under its memory cap, else a
uint8 memory map of an unnamed file (nothing is left on disk, even after a crash): the
kernel pages it in and out, so memory never grows past the cap with N.

The default cap is :func:`autotransfer.memory.default_memory_cap`.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autotransfer.errors import DataError

log = logging.getLogger(__name__)

DISK_HEADROOM = 256 * 2**20  # left free on the disk of a memory map
CACHE_ENV = "AUTOTRANSFER_CACHE"  # see autotransfer.cache.default_cache_dir


def disk_images(
    directory: Path, shape: tuple[int, ...], what: str, memory_cap: int
) -> torch.Tensor:
    """A zeroed uint8 tensor of ``shape`` backed by a memory map of an unnamed file in
    ``directory`` (gone when the tensor is); a :class:`DataError` when the disk is too small.
    """
    directory.mkdir(parents=True, exist_ok=True)
    need = math.prod(shape)
    free = shutil.disk_usage(directory).free
    if need + DISK_HEADROOM > free:
        raise DataError(
            f"The decoded {what} need {need / 1e9:.2f} GB on disk in {directory}, which has "
            f"{free / 1e9:.2f} GB free (memory holds at most image_cache_memory = "
            f"{memory_cap / 1e9:.2f} GB of images). Free space there, point the cache at a "
            f"larger disk with the {CACHE_ENV} environment variable, raise the "
            f"image_cache_memory setting if the machine has the memory, or lower the "
            f"resolution."
        )
    with tempfile.TemporaryFile(dir=directory) as f:  # unnamed: never left behind
        array = np.memmap(f, dtype=np.uint8, mode="w+", shape=shape)
    return torch.from_numpy(array)


class LazyImages:
    """uint8 images (N, 3, c, c) of one split, each decoded on first access and then kept.

    Indexing gives tensors as a tensor would: ``x[idx]`` (int64 tensor), ``x[a:b]``,
    ``x[i]``, ``x[..., t:b, l:r]``. ``decoded`` counts the images decoded (and kept) so far:
    each is decoded once. ``decode(i)`` gives one image, on ``threads`` threads;
    ``decode_many(indices)``, when given, gives all the images an access needs at once
    (a batch decoded on a GPU) and is used instead.

    >>> def decode(i):
    ...     return np.full((3, 2, 2), i, np.uint8)
    >>> x = LazyImages(decode, torch.empty((5, 3, 2, 2), dtype=torch.uint8))
    >>> x[torch.tensor([4, 1])][:, 0, 0, 0].tolist(), x.decoded, x.shape
    ([4, 1], 2, torch.Size([5, 3, 2, 2]))
    """

    def __init__(
        self,
        decode: Callable[[int], np.ndarray],
        storage: torch.Tensor,
        *,
        decode_many: Callable[[np.ndarray], torch.Tensor] | None = None,
        threads: int = 1,
        progress: Callable[[str, int, int], None] | None = None,
        label: str = "decoding",
        on_disk: bool = False,
    ) -> None:
        self._decode = decode
        self._decode_many = decode_many
        self._storage: torch.Tensor | None = storage
        self._shape = storage.shape
        self._filled = np.zeros(len(storage), dtype=bool)
        self._lock = threading.Lock()
        self.threads = threads
        self.progress = progress
        self.label = label
        self.on_disk = on_disk
        self.decoded = 0
        self.decode_seconds = 0.0  # wall time spent decoding, for callers that time epochs

    @property
    def shape(self) -> torch.Size:
        return self._shape

    @property
    def dtype(self) -> torch.dtype:
        return torch.uint8

    @property
    def nbytes(self) -> int:
        return math.prod(self._shape)

    def __len__(self) -> int:
        return self._shape[0]

    def __repr__(self) -> str:
        where = "disk" if self.on_disk else "memory"
        return f"LazyImages(shape={tuple(self._shape)}, decoded={self.decoded}, in {where})"

    def __getitem__(self, key: Any) -> torch.Tensor:
        if not isinstance(key, tuple):
            return self._rows(key)
        if not key:
            return self._rows(slice(None))
        first, rest = key[0], key[1:]
        if first is Ellipsis:  # x[..., a:b, c:d]: every row unless the rest names all 4 dims
            return self._rows(slice(None))[key] if len(rest) < 4 else self[rest]
        rows = self._rows(first)
        if not rest:
            return rows
        return rows[rest] if _is_int(first) else rows[(slice(None), *rest)]

    def fill(self, chunk: int = 1024) -> LazyImages:
        """Decode every image not decoded yet (``progress`` reports each)."""
        for start in range(0, len(self), chunk):
            self._ensure(np.arange(start, min(len(self), start + chunk)))
        return self

    def release(self) -> None:
        """Drop the storage (a memory map's file goes with it); indexing then raises."""
        with self._lock:
            self._storage = None

    def _rows(self, key: Any) -> torch.Tensor:
        n = len(self)
        if _is_int(key):
            i = int(key)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for {n} images")
            i %= n
            self._ensure(np.array([i]))
            return self._store()[i]
        if isinstance(key, slice):
            self._ensure(np.arange(*key.indices(n)))
            return self._store()[key]
        idx = torch.as_tensor(key, device="cpu")
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        idx = idx.long()
        if idx.numel() and not (-n <= int(idx.min()) and int(idx.max()) < n):
            raise IndexError(f"an index is out of bounds for {n} images")
        rows = np.remainder(idx.numpy(), n) if n else idx.numpy()
        self._ensure(rows)
        # numpy's take copies whole rows: 25x faster than a tensor's x[idx] on uint8 images
        return torch.from_numpy(np.take(self._store().numpy(), rows, axis=0))

    def _store(self) -> torch.Tensor:
        if self._storage is None:
            raise RuntimeError("These images were released: their ImageCache was closed.")
        return self._storage

    def _ensure(self, idx: np.ndarray) -> None:
        if idx.size == 0 or self._filled[idx].all():
            return
        with self._lock:
            start = time.perf_counter()
            store = self._store()
            need = np.unique(idx[~self._filled[idx]])

            def one(i: int) -> int:
                store[i] = torch.from_numpy(self._decode(int(i)))
                return int(i)

            if self._decode_many is not None:
                store[torch.from_numpy(need)] = self._decode_many(need)
                self._mark(need)
            elif len(need) == 1 or self.threads <= 1:
                self._mark(map(one, need))
            else:  # Pillow releases the GIL while it decodes and resizes
                with ThreadPoolExecutor(min(self.threads, len(need))) as pool:
                    self._mark(pool.map(one, need))
            self.decode_seconds += time.perf_counter() - start

    def _mark(self, done: Any) -> None:
        for i in done:
            self._filled[i] = True
            self.decoded += 1
            if self.progress is not None:
                self.progress(self.label, self.decoded, len(self))


def _is_int(key: Any) -> bool:
    if isinstance(key, torch.Tensor):
        return key.ndim == 0 and not key.is_floating_point() and key.dtype != torch.bool
    if isinstance(key, np.ndarray):
        return key.ndim == 0 and np.issubdtype(key.dtype, np.integer)
    return isinstance(key, (int, np.integer)) and not isinstance(key, bool)
