"""Images decoded once for every backbone that reads them at the same geometry.

A ranking runs one forward pass per candidate over the same sample. Decoding a file,
resizing and cropping it costs the same for every candidate whose preprocessing has the
same geometry (the four offline ImageNet networks at one resolution differ only in their
normalisation), so the first pass keeps its uint8 crops in a :class:`DecodedImages`
store, within a memory cap, and the passes after it read them from there and only
normalise: on the device the model runs on, as a GPU pipeline does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import torch


class Normalise:
    """A uint8 NCHW batch, on any device, to floats normalised by ``mean`` and ``std``: what
    timm's ``MaybeToTensor`` then ``Normalize`` compute, for a whole batch at once."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x.float().div_(255.0) - mean) / std


def split_transform(transform: Callable) -> tuple[Callable, Normalise, str] | None:
    """timm's evaluation transform as its geometry (PIL image to a uint8 CHW tensor: the
    resize and crop), its normalisation (:class:`Normalise`, for batches) and a key that
    names the geometry; None when the transform is not ``[..., ToTensor, Normalize]``.

    >>> import timm.data
    >>> t = timm.data.create_transform(input_size=(3, 32, 32), is_training=False)
    >>> geometry, normalise, key = split_transform(t)
    >>> key.split("\\n")[1].strip()
    'Resize(size=36, interpolation=bilinear, max_size=None, antialias=True)'
    """
    from torchvision import transforms as T

    steps = list(getattr(transform, "transforms", []))
    if (
        len(steps) < 2
        or type(steps[-1]).__name__ != "Normalize"
        or "ToTensor" not in type(steps[-2]).__name__
    ):
        return None
    norm = steps[-1]
    mean = [float(v) for v in torch.as_tensor(norm.mean).flatten()]
    std = [float(v) for v in torch.as_tensor(norm.std).flatten()]
    return (
        T.Compose([*steps[:-2], T.PILToTensor()]),
        Normalise(mean, std),
        repr(T.Compose(steps[:-2])),
    )


class DecodedImages:
    """uint8 crops of image lists, by geometry, within ``max_bytes`` in all.

    >>> store = DecodedImages(max_bytes=1000)
    >>> k = store.key("Resize(8)", ["a.png", "b.png"])
    >>> store.keep(k, torch.zeros(2, 3, 8, 8, dtype=torch.uint8)), store.get(k).shape
    (True, torch.Size([2, 3, 8, 8]))
    >>> store.keep(store.key("Resize(16)", ["a.png"]), torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    False
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self._held: dict[str, torch.Tensor] = {}
        self.hits = 0  # passes served from the store

    @staticmethod
    def key(geometry: str, paths: Sequence[str]) -> str:
        digest = hashlib.sha256(geometry.encode())
        for p in paths:
            digest.update(b"\0" + str(p).encode())
        return digest.hexdigest()

    def fits(self, n_bytes: int) -> bool:
        return self.bytes + n_bytes <= self.max_bytes

    def get(self, key: str) -> torch.Tensor | None:
        held = self._held.get(key)
        if held is not None:
            self.hits += 1
        return held

    def keep(self, key: str, images: torch.Tensor) -> bool:
        """Hold ``images`` under ``key``; False (nothing held) past the memory cap."""
        n = images.numel() * images.element_size()
        if key in self._held or not self.fits(n):
            return False
        self._held[key] = images
        self.bytes += n
        return True
