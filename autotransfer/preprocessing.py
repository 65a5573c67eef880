"""How images are fed to a model: resize, centre-crop, scale and normalise.

A :class:`Preprocessing` travels with a :class:`~autotransfer.model.Classifier` (and its
saved folder) and builds timm's evaluation transform, so that prediction sees images as
the model saw them when it was evaluated.

>>> Preprocessing(resolution=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)).crop_pct
0.875
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from autotransfer.backbones.inputs import eval_transform
from autotransfer.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.backbones.spec import BackboneSpec

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")


@dataclass(frozen=True)
class Preprocessing:
    """How images are fed to a model: resize the short side to ``resolution / crop_pct``
    with ``interpolation``, centre-crop ``resolution`` pixels, scale to [0, 1] and
    normalise with ``mean`` and ``std`` (RGB).

    >>> p = Preprocessing(resolution=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    >>> p.timm_config()["input_size"]
    (3, 224, 224)
    """

    resolution: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_pct: float = 0.875
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        mean, std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        if len(mean) != 3 or len(std) != 3:
            raise ConfigError(
                f"mean {mean} and std {std} need one value per RGB channel (three each)."
            )
        if min(std) <= 0:
            raise ConfigError(f"std {std} must be positive in every channel.")
        if int(self.resolution) != self.resolution or not 8 <= self.resolution <= 4096:
            raise ConfigError(
                f"resolution={self.resolution!r} must be a whole number of pixels in 8..4096."
            )
        if not 0.0 < float(self.crop_pct) <= 1.0:
            raise ConfigError(f"crop_pct={self.crop_pct!r} must lie in (0, 1], e.g. 0.875.")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"Unknown interpolation {self.interpolation!r}; use one of "
                f"{', '.join(INTERPOLATIONS)}."
            )
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "resolution", int(self.resolution))
        object.__setattr__(self, "crop_pct", float(self.crop_pct))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        return cls(**d)

    @classmethod
    def from_spec(cls, spec: BackboneSpec, resolution: int | None = None) -> Preprocessing:
        """The preprocessing of a backbone's weights, at ``resolution`` (default: its own).

        >>> Preprocessing.from_spec(lookup_backbone("random:test_resnet"), 64)  # doctest: +SKIP
        """
        return cls(
            resolution=int(resolution or spec.input_size),
            mean=tuple(spec.weights.mean),
            std=tuple(spec.weights.std),
            crop_pct=spec.crop_pct,
            interpolation=spec.interpolation,
        )

    def timm_config(self) -> dict[str, Any]:
        """timm's data config (the keyword arguments of ``timm.data.create_transform``)."""
        return {
            "input_size": (3, self.resolution, self.resolution),
            "mean": self.mean,
            "std": self.std,
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
            "crop_mode": "center",
        }

    def transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """timm's evaluation transform: PIL RGB image in, normalised CHW float tensor out."""
        return eval_transform(self.timm_config())
