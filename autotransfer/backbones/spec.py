"""What a candidate backbone is: a timm architecture plus where its weights come from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class WeightsRef:
    """Where one set of weights lives, how to feed it and where it came from.

    ``source`` names a registered weight source (``timm``, ``file``, ``package``,
    ``random``, ...); ``location`` means what that source says (a hub tag, a file
    path, ``module:relative/file``). ``key_map`` names a key mapping applied to the
    state dict when its names differ from timm's. ``imagenet_top1`` is the published
    ImageNet-1k top-1 accuracy of these weights (the zero-cost static prior).
    """

    source: str
    location: str = ""
    key_map: str = ""
    source_dataset: str = "imagenet-1k"
    imagenet_top1: float | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_source_classes: int = 1000
    citation: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WeightsRef:
        d = dict(d)
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)


@dataclass(frozen=True)
class BackboneSpec:
    """A candidate backbone. ``id`` is ``source:arch.tag`` (``package:efficientnet_lite0``),
    with ``@<stage>`` when the network is cut (``package:efficientnet_lite0@3``).

    ``arch`` is the timm architecture name passed to ``timm.create_model``;
    ``input_size`` is the default square input resolution (pixels); ``cut`` is the
    feature stage after which the network is cut, None for the whole network (see
    :mod:`autotransfer.backbones.cuts`).
    """

    id: str
    arch: str
    weights: WeightsRef
    input_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    description: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)  # e.g. ("control",) for random init
    cut: int | None = None

    @property
    def name(self) -> str:  # registries key objects by ``name``
        return self.id

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["weights"] = self.weights.to_dict()
        d["tags"] = list(self.tags)
        if self.cut is None:  # whole networks keep the dict (and cache keys) they had
            del d["cut"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BackboneSpec:
        d = dict(d)
        d["weights"] = WeightsRef.from_dict(d["weights"])
        d["tags"] = tuple(d.get("tags", ()))
        return cls(**d)
