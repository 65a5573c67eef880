"""Backbones cut after an earlier stage: a candidate of their own, ``<id>@<stage>``.

When the target images are far from the pretraining source, the lower-level features of
an earlier stage can transfer better than the last stage's. ``package:mobilenetv2_100@3``
is MobileNetV2 cut after its feature stage 3 (96 channels at stride 16): everything after
that stage is removed, and ``forward_features`` -> ``forward_head(pre_logits=True)`` gives
that stage's globally pooled features. Stages are timm's ``model.feature_info`` (the
``out_indices`` of ``features_only``): ResNets and EfficientNets/MobileNets have five (0 is
the stem), ViTs one per block. A negative number counts from the end as in Python (``-2``
is the stage before the last); ids always carry the non-negative number. The last stage
is the whole network, so the cuts are ``0 .. stages - 2``.

A cut model has no source-classifier head (estimators that need its logits skip it) and
no published ImageNet top-1 (the static prior skips it). The cut is applied with timm's
``prune_intermediate_layers`` after the whole network's weights are loaded.

>>> from autotransfer.backbones.load import resolve_backbones
>>> split_cut("package:efficientnet_lite0@3")
('package:efficientnet_lite0', 3)
>>> [s.id for s in with_cuts(resolve_backbones("random:test_resnet"), (2, -2))]
['random:test_resnet', 'random:test_resnet@2', 'random:test_resnet@3']
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from autotransfer.backbones.spec import BackboneSpec
from autotransfer.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

CUT_ATTR = "autotransfer_cut"  # set on a cut module, so a Classifier saves its cut
_CUT_RE = re.compile(r"^(?P<base>.+)@(?P<cut>-?\d+)$")

__all__ = ["cut_model", "cut_of", "cuts_of", "split_cut", "stage_channels", "with_cut", "with_cuts"]


def split_cut(name: str) -> tuple[str, int | None]:
    """``("source:arch.tag", stage)`` from ``source:arch.tag@stage``; no cut: ``(name, None)``.

    >>> split_cut("file:/w.pth#resnet18,norm=imagenet@-2")
    ('file:/w.pth#resnet18,norm=imagenet', -2)
    """
    m = _CUT_RE.match(name.strip())
    return (m["base"], int(m["cut"])) if m else (name, None)


@functools.lru_cache(maxsize=128)
def stage_channels(arch: str) -> tuple[int, ...]:
    """Channels of each feature stage of a timm architecture (``model.feature_info``).

    Raises :class:`ConfigError` when timm cannot cut the architecture.

    >>> stage_channels("test_resnet")
    (32, 32, 48, 192, 96)
    """
    import timm
    import torch

    model = None
    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                model = timm.create_model(arch, pretrained=False)
            break
        except Exception as exc:  # some models compute with tensors in __init__
            log.debug("building %s on %s failed: %s", arch, device, exc)
    info = getattr(model, "feature_info", None)
    if model is None or not info or not hasattr(model, "prune_intermediate_layers"):
        raise ConfigError(
            f"timm {timm.__version__} cannot cut {arch!r} after a stage: the architecture has "
            "no feature_info and prune_intermediate_layers. Use the whole network (drop the "
            "'@<stage>' of the id, or leave cuts unset) or an architecture timm can prune "
            "(ResNet, EfficientNet, MobileNet, ConvNeXt, ViT, ...)."
        )
    return tuple(int(f["num_chs"]) for f in info)


def _stage_index(arch: str, cut: int, what: str) -> int:
    """``cut`` as a non-negative stage number of ``arch``; ConfigError when out of range."""
    n = len(stage_channels(arch))
    k = cut + n if cut < 0 else cut
    if not 0 <= k <= n - 2:
        raise ConfigError(
            f"Cannot cut {what} after stage {cut}: {arch!r} has {n} feature stages "
            f"(0-{n - 1}, channels {list(stage_channels(arch))}) and the last one is the "
            f"whole network. Use a stage from 0 to {n - 2} (or -{n} to -2 from the end)."
        )
    return k


def with_cut(spec: BackboneSpec, cut: int) -> BackboneSpec:
    """``spec`` cut after feature stage ``cut`` (negative: from the end), as a candidate.

    >>> from autotransfer.backbones.load import resolve_backbones
    >>> with_cut(resolve_backbones("random:test_resnet")[0], -2).id
    'random:test_resnet@3'
    """
    if spec.cut is not None:
        raise ConfigError(
            f"Backbone {spec.id!r} is already cut; cut the whole network instead "
            f"({spec.id.rsplit('@', 1)[0]!r}@<stage>)."
        )
    k = _stage_index(spec.arch, int(cut), repr(spec.id))
    channels = stage_channels(spec.arch)[k]
    return dataclasses.replace(
        spec,
        id=f"{spec.id}@{k}",
        cut=k,
        # the published top-1 belongs to the whole network and its head
        weights=dataclasses.replace(spec.weights, imagenet_top1=None),
        description=f"{spec.description or spec.arch}, cut after stage {k} ({channels} ch)",
    )


def cuts_of(spec: BackboneSpec, specs: Iterable[BackboneSpec]) -> list[BackboneSpec]:
    """The cuts of the whole network ``spec`` among ``specs`` (none when ``spec`` is a cut).

    >>> from autotransfer.backbones.load import resolve_backbones
    >>> specs = with_cuts(resolve_backbones("random:test_resnet, random:test_vit"), (2,))
    >>> [s.id for s in cuts_of(specs[0], specs)], cuts_of(specs[1], specs)
    (['random:test_resnet@2'], [])
    """
    if spec.cut is not None:
        return []
    return [s for s in specs if s.cut is not None and split_cut(s.id)[0] == spec.id]


def with_cuts(specs: Iterable[BackboneSpec], cuts: Sequence[int]) -> list[BackboneSpec]:
    """Each spec followed by its cuts after the ``cuts`` stages (a candidate dimension).

    A stage an architecture does not have, or one that is its whole network, is skipped
    for that architecture (logged); an architecture timm cannot cut keeps only its whole
    network (logged). Specs that are already cut are kept as they are; duplicates dropped.
    """
    out: dict[str, BackboneSpec] = {}
    for spec in specs:
        out.setdefault(spec.id, spec)
        if spec.cut is not None:
            continue
        for cut in cuts:
            try:
                cut_spec = with_cut(spec, cut)
            except ConfigError as exc:
                log.info("No cut of %s after stage %s: %s", spec.id, cut, exc)
                continue
            out.setdefault(cut_spec.id, cut_spec)
    return list(out.values())


def _pool_type(model: torch.nn.Module) -> str:
    for pool in (
        getattr(model, "global_pool", None),
        getattr(getattr(model, "head", None), "global_pool", None),
    ):
        if isinstance(pool, str):
            return pool
        if isinstance(getattr(pool, "pool_type", None), str) and pool.pool_type:
            return pool.pool_type
    return "avg"


def cut_model(model: torch.nn.Module, cut: int, arch: str = "") -> torch.nn.Module:
    """Cut the timm ``model`` after feature stage ``cut``, in place; returns it.

    timm's ``prune_intermediate_layers`` removes what follows the stage (and the source
    classifier); the model keeps its pooling, so ``forward_head(pre_logits=True)`` gives
    the stage's pooled features and ``num_features`` their size. The classifier is empty
    (``reset_classifier(n)`` adds a new one).
    """
    import torch

    arch = arch or getattr(model, "default_cfg", {}).get("architecture", type(model).__name__)
    if not getattr(model, "feature_info", None) or not hasattr(model, "prune_intermediate_layers"):
        stage_channels.__wrapped__(arch)  # raises the ConfigError naming the fix
    n = len(model.feature_info)
    k = cut + n if cut < 0 else cut
    if not 0 <= k <= n - 2:
        _stage_index(arch, cut, repr(arch))  # raises, with the stages listed
    pool = _pool_type(model)
    channels = int(model.feature_info[k]["num_chs"])
    model.prune_intermediate_layers([k], prune_norm=False, prune_head=False)
    # timm 1.0.29 (and older) kept an EfficientNet's or MobileNet's conv_head and bn2 when the
    # blocks were cut; they follow the last stage and cannot take the cut's channels
    head = getattr(model, "conv_head", None)
    if isinstance(head, torch.nn.Conv2d) and head.in_channels != channels:
        model.conv_head, model.bn2 = torch.nn.Identity(), torch.nn.Identity()
        model.num_features = model.head_hidden_size = channels
    model.reset_classifier(0, pool)
    setattr(model, CUT_ATTR, k)
    return model


def cut_of(module: torch.nn.Module) -> int | None:
    """The stage ``module`` was cut after by :func:`cut_model`, or None (whole network)."""
    cut = getattr(module, CUT_ATTR, None)
    if cut is None:
        inner = getattr(module, "_orig_mod", None)  # torch.compile wrapper
        cut = getattr(inner, CUT_ATTR, None) if inner is not None else None
    return None if cut is None else int(cut)


def build_cut_model(arch: str, cut: int, num_classes: int, **kwargs) -> torch.nn.Module:
    """A timm ``arch`` cut after ``cut`` with a new ``num_classes`` head (no weights), the
    module a saved cut classifier's weights are loaded into."""
    import timm

    model = timm.create_model(arch, pretrained=False, num_classes=num_classes, **kwargs)
    cut_model(model, cut, arch)
    model.reset_classifier(num_classes)
    return model
