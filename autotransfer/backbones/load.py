"""Finding candidate backbones and building them as timm models with their weights.

Backbone ids are ``source:arch.tag``. Besides the registered ids (``autotransfer zoo``),
:func:`resolve_backbones` accepts:

* a bare name when it is unambiguous: ``efficientnet_lite0`` -> ``package:efficientnet_lite0``
  (a pretrained candidate wins over a ``control`` of the same architecture);
* any timm pretrained name, ``resnet34.a1_in1k`` or ``timm:resnet34.a1_in1k``;
* a seeded random init of any timm architecture: ``random:resnet18``,
  ``random:resnet18#seed=3``;
* weights of any other source with the architecture after ``#``:
  ``file:/path/w.safetensors#resnet18`` or, with options,
  ``file:/path/w.pth#mobilenetv2_100,key_map=torchvision_mobilenet_v2,norm=imagenet``.
  Options: ``key_map=<name>``, ``norm=imagenet|inception`` (mean/std; default: timm's
  config of the architecture), ``input_size=<px>``, ``num_classes=<n>`` (source head size);
* any of these cut after an earlier feature stage with ``@<stage>`` at the end:
  ``efficientnet_lite0@3``, ``random:resnet18#seed=3@2`` (see :mod:`autotransfer.backbones.cuts`).

>>> spec, = resolve_backbones(["efficientnet_lite0"])   # doctest: +SKIP
>>> model = load_backbone(spec)                           # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from autotransfer import plugins
from autotransfer.backbones.cuts import cut_model, split_cut, with_cut
from autotransfer.backbones.key_maps import get_key_map
from autotransfer.backbones.spec import IMAGENET_MEAN, IMAGENET_STD, BackboneSpec, WeightsRef
from autotransfer.backbones.weight_sources import timm_pretrained_cfg
from autotransfer.backbones.zoo import random_spec
from autotransfer.errors import (
    AutoTransferError,
    ConfigError,
    PluginError,
    UnknownNameError,
    WeightsUnavailableError,
    unknown_name,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from autotransfer.backbones.weights import WeightSource

log = logging.getLogger(__name__)

HIDDEN_TAGS = ("test",)  # candidates listed only when asked for by tag or by name
NORMS = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}

__all__ = [
    "list_candidates",
    "load_backbone",
    "parse_backbone_id",
    "resolve_backbones",
]


def weight_source(spec: BackboneSpec) -> WeightSource:
    """The registered weight source of ``spec``; close matches when unknown."""
    return plugins.lookup("weight_sources", spec.weights.source)


def load_backbone(spec: BackboneSpec, *, pretrained: bool = True) -> torch.nn.Module:
    """The timm model of ``spec`` in eval mode, with its source classifier head.

    Weights come from the spec's weight source and are loaded strictly (every key, every
    shape). Weights not on this machine raise :class:`WeightsUnavailableError` with the
    source's hint, unless the source can fetch them (``can_download = True``, like
    ``timm`` with internet). ``pretrained=False`` leaves timm's (unseeded) initialisation.
    The model's ``pretrained_cfg`` carries the spec's mean/std/input size, so
    ``timm.data.resolve_data_config(model=model)`` preprocesses correctly. A spec with a
    ``cut`` gives the network cut after that stage, without a source head.

    >>> model = load_backbone(resolve_backbones("random:test_resnet")[0])
    >>> model.training
    False
    """
    import timm

    n = spec.weights.num_source_classes
    overlay = {
        "mean": tuple(spec.weights.mean),
        "std": tuple(spec.weights.std),
        "input_size": (3, spec.input_size, spec.input_size),
        "crop_pct": spec.crop_pct,
        "interpolation": spec.interpolation,
        "num_classes": n,
    }
    try:
        model = timm.create_model(
            spec.arch, pretrained=False, num_classes=n, pretrained_cfg_overlay=overlay
        )
    except RuntimeError as exc:
        raise ConfigError(f"Backbone {spec.id!r}: timm cannot build {spec.arch!r}: {exc}") from exc
    if pretrained:
        source = weight_source(spec)
        if not getattr(source, "can_download", False) and not source.is_available(spec):
            raise WeightsUnavailableError(
                f"Weights of backbone {spec.id!r} are not available on this machine "
                f"({spec.weights.source}: {spec.weights.location or spec.arch}). "
                + source.missing_hint(spec)
            )
        _load_strict(model, _state_dict(source, spec), spec)
    if spec.cut is not None:
        cut_model(model, spec.cut, spec.arch)
    return model.eval()


def _state_dict(source: WeightSource, spec: BackboneSpec) -> dict:
    """The source's state dict; errors that are not ours are re-raised naming the plugin."""
    try:
        return source.load_state_dict(spec)
    except AutoTransferError:
        raise
    except Exception as exc:
        reg = plugins.registered("weight_sources").get(spec.weights.source)
        plugin = reg.plugin if reg else "?"
        raise PluginError(
            f"Weight source {spec.weights.source!r} (plugin {plugin!r}) failed to load the "
            f"weights of {spec.id!r}: {type(exc).__name__}: {exc}"
        ) from exc


def _load_strict(model: torch.nn.Module, sd: dict, spec: BackboneSpec) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
        for k in sd
        if k in own and sd[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:

        def few(keys: list[str]) -> str:
            return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")

        problems = [
            f"{len(v)} {what}: {few(v)}"
            for what, v in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong),
            )
            if v
        ]
        raise ConfigError(
            f"Weights of backbone {spec.id!r} ({spec.weights.source}: "
            f"{spec.weights.location or spec.arch}) do not fit timm {spec.arch!r} with "
            f"key_map {spec.weights.key_map!r}: " + "; ".join(problems) + ". Check the "
            "architecture (after '#' in ad-hoc ids) and the key_map "
            "(autotransfer.backbones.key_maps.KEY_MAPS)."
        )
    model.load_state_dict(sd, strict=True)


def availability(spec: BackboneSpec) -> tuple[bool, str]:
    """(weights on this machine?, how to get them when not)."""
    try:
        source = weight_source(spec)
        if source.is_available(spec):
            return True, ""
        return False, source.missing_hint(spec)
    except (UnknownNameError, ConfigError) as exc:
        return False, str(exc)


def list_candidates(
    include_unavailable: bool = True, include_tags: Iterable[str] = ()
) -> list[BackboneSpec]:
    """Registered candidates, in registration order.

    Candidates tagged ``test`` are hidden unless ``"test"`` is in ``include_tags``;
    ``include_unavailable=False`` keeps only those whose weights are on this machine.

    >>> [s.id for s in list_candidates(include_tags=["test"]) if "test" in s.tags]
    ['random:test_resnet', 'random:test_efficientnet', 'random:test_vit']
    """
    shown = set(include_tags)
    hidden = set(HIDDEN_TAGS) - shown
    out = []
    for reg in plugins.registered("backbones").values():
        spec = reg.obj
        if hidden & set(spec.tags):
            continue
        if not include_unavailable and not availability(spec)[0]:
            continue
        out.append(spec)
    return out


def resolve_backbones(names: str | Iterable[str]) -> list[BackboneSpec]:
    """Specs for ``names`` (ids, bare names or ad-hoc ids; see the module docstring).

    A string may hold several comma-separated names. Duplicates are dropped. A name
    ending in ``@<stage>`` is the backbone cut after that stage.

    >>> [s.id for s in resolve_backbones("random:test_vit, random:resnet18#seed=3")]
    ['random:test_vit', 'random:resnet18#seed=3']
    """
    if isinstance(names, str):
        names = _split_names(names)
    registered = {r.name: r.obj for r in plugins.registered("backbones").values()}
    out: dict[str, BackboneSpec] = {}
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        spec = registered.get(name)
        if spec is None:
            base, cut = split_cut(name)
            spec = registered.get(base) or _bare(base, registered) or parse_backbone_id(base)
            spec = spec if cut is None else with_cut(spec, cut)
        out.setdefault(spec.id, spec)
    return list(out.values())


def _split_names(text: str) -> list[str]:
    # commas separate names, except inside the '#' options of one id
    parts: list[str] = []
    for piece in text.split(","):
        if parts and "#" in parts[-1] and "=" in piece and ":" not in piece.split("=")[0]:
            parts[-1] += "," + piece
        else:
            parts.append(piece)
    return parts


def _bare(name: str, registered: dict[str, BackboneSpec]) -> BackboneSpec | None:
    if ":" in name:
        return None
    hits = [s for s in registered.values() if s.id.split(":", 1)[1] == name or s.arch == name]
    if len(hits) > 1:
        preferred = [s for s in hits if not {"control", "test"} & set(s.tags)]
        hits = preferred or hits
    if len(hits) > 1:
        raise ConfigError(
            f"Backbone name {name!r} is ambiguous: {', '.join(s.id for s in hits)}. "
            "Use the full id."
        )
    return hits[0] if hits else None


def parse_backbone_id(backbone_id: str) -> BackboneSpec:
    """A spec for an ad-hoc id that is not registered (see the module docstring).

    >>> parse_backbone_id("random:resnet18#seed=3").weights.location
    '3'
    """
    import timm

    base, cut = split_cut(backbone_id)
    if cut is not None:
        return with_cut(parse_backbone_id(base), cut)
    if ":" not in backbone_id:
        if "." in backbone_id and timm_pretrained_cfg(backbone_id) is not None:
            return parse_backbone_id("timm:" + backbone_id)
        raise unknown_name(
            "backbone",
            backbone_id,
            plugins.registered("backbones"),
            hint="Outside the zoo use 'timm:<arch>.<tag>', 'random:<arch>' or "
            "'file:/path/weights.safetensors#<arch>'.",
        )
    source, _, rest = backbone_id.partition(":")
    plugins.lookup("weight_sources", source)  # an unknown source raises with close matches
    location, _, frag = rest.rpartition("#") if "#" in rest else (rest, "", "")
    opts = _options(frag, backbone_id)
    if source == "timm":
        cfg = timm_pretrained_cfg(location) if timm.is_model(location) else None
        if cfg is None:
            similar = timm.list_pretrained(location.split(".")[0] + "*")
            raise _unknown_timm("pretrained model", location, similar, backbone_id)
        return BackboneSpec(
            id=backbone_id,
            arch=location,
            weights=_ref(opts, source="timm", source_dataset=dataset_of_tag(cfg.tag), cfg=cfg),
            input_size=int(opts.get("input_size", cfg.input_size[-1])),
            crop_pct=float(cfg.crop_pct),
            interpolation=cfg.interpolation or "bicubic",
        )
    if source == "random":
        seed = opts.get("seed", "0")
        spec = random_spec(_check_arch(location, backbone_id), int(seed))
        return BackboneSpec(**{**spec.__dict__, "id": backbone_id})
    arch = opts.get("arch")
    if not arch:
        raise ConfigError(
            f"Backbone id {backbone_id!r} needs the timm architecture after '#', e.g. "
            f"'{source}:{location or '/path/weights.safetensors'}#resnet18'."
        )
    _check_arch(arch, backbone_id)
    cfg = timm_pretrained_cfg(arch)
    return BackboneSpec(
        id=backbone_id,
        arch=arch,
        weights=_ref(opts, source=source, location=location, source_dataset="unknown", cfg=cfg),
        input_size=int(opts.get("input_size", cfg.input_size[-1] if cfg else 224)),
    )


_TAG_DATASETS = (
    ("in22k", "imagenet-22k"),
    ("in21k", "imagenet-21k"),
    ("in12k", "imagenet-12k"),
    ("laion", "laion"),
    ("openai", "openai-clip"),
    ("jft", "jft"),
    ("ig1b", "instagram-1b"),
    ("yfcc", "yfcc100m"),
    ("in1k", "imagenet-1k"),
)


def dataset_of_tag(tag: str | None) -> str:
    """The pretraining dataset a timm tag names (``augreg_in21k_ft_in1k`` -> imagenet-21k).

    >>> dataset_of_tag("fb_in22k_ft_in1k")
    'imagenet-22k'
    """
    for marker, dataset in _TAG_DATASETS:
        if marker in (tag or ""):
            return dataset
    return tag or "unknown"


def _options(frag: str, backbone_id: str) -> dict[str, str]:
    allowed = {"arch", "seed", "key_map", "norm", "input_size", "num_classes"}
    opts: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in frag.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            key, value = ("seed", item) if item.isdigit() else ("arch", item)
        if key not in allowed:
            raise unknown_name(f"option in backbone id {backbone_id!r}:", key, allowed)
        opts[key] = value
    return opts


def _check_arch(arch: str, backbone_id: str) -> str:
    import timm

    if not timm.is_model(arch):
        raise _unknown_timm("architecture", arch, timm.list_models(), backbone_id)
    return arch


def _unknown_timm(kind: str, name: str, known: list[str], backbone_id: str) -> UnknownNameError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    msg = f"Unknown timm {kind} {name!r} in backbone id {backbone_id!r}."
    if close:
        msg += " Did you mean " + " or ".join(repr(c) for c in close) + "?"
    lister = "timm.list_pretrained()" if kind == "pretrained model" else "timm.list_models()"
    return UnknownNameError(msg + f" {lister} lists them all.")


def _ref(opts: dict[str, str], *, cfg: Any, **fields: Any) -> WeightsRef:
    if "norm" in opts:
        if opts["norm"] not in NORMS:
            raise unknown_name("normalisation", opts["norm"], NORMS)
        mean, std = NORMS[opts["norm"]]
    else:
        mean, std = (tuple(cfg.mean), tuple(cfg.std)) if cfg else (IMAGENET_MEAN, IMAGENET_STD)
    if "key_map" in opts:
        get_key_map(opts["key_map"])  # unknown -> error with close matches
    return WeightsRef(
        mean=mean,
        std=std,
        key_map=opts.get("key_map", ""),
        num_source_classes=int(opts.get("num_classes", 1000)),
        **fields,
    )
