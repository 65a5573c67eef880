"""Named state-dict key mappings: other libraries' parameter names to timm's.

A key map is a pure function ``state_dict -> state_dict`` that renames keys (tensors are
passed through untouched). A :class:`~autotransfer.backbones.spec.WeightsRef` names one
in ``key_map``; weight sources apply it after reading the file.

Both built-in maps infer the stage layout from the file itself (a new stage starts where
the blocks' output channel count changes), so they work for every width/depth variant
(efficientnet-lite0..4, efficientnet-b0..b7, mobilenet_v2) without a table per model.

>>> sd = apply_key_map("torchvision_mobilenet_v2", torchvision_state_dict)  # doctest: +SKIP
>>> timm.create_model("mobilenetv2_100").load_state_dict(sd, strict=True)    # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from autotransfer.errors import ConfigError, unknown_name

if TYPE_CHECKING:  # pragma: no cover
    import torch

StateDict = dict[str, "torch.Tensor"]
KeyMap = Callable[[StateDict], StateDict]

__all__ = ["KEY_MAPS", "KeyMap", "apply_key_map", "get_key_map"]


def _stage_layout(blocks: list[int], out_channels: dict[int, int]) -> dict[int, tuple[int, int]]:
    """Flat block index -> (stage, index in stage); a stage ends where out channels change."""
    layout: dict[int, tuple[int, int]] = {}
    stage, pos, prev = -1, 0, None
    for b in sorted(blocks):
        if out_channels[b] != prev:
            stage, pos, prev = stage + 1, 0, out_channels[b]
        layout[b] = (stage, pos)
        pos += 1
    return layout


def _block_key(
    source: str, key: str, m: re.Match, names: dict[str, str], layout: dict[int, tuple[int, int]]
) -> str:
    """timm's name of a block's tensor: block ``m.group(1)``'s module ``m.group(2)`` (renamed
    by ``names``) and parameter ``m.group(3)``, at its (stage, position) in ``layout``."""
    module = m.group(2)
    if module not in names:
        raise _unmapped(source, key)
    stage, pos = layout[int(m.group(1))]
    return f"blocks.{stage}.{pos}.{names[module]}.{m.group(3)}"


def _unmapped(name: str, key: str) -> ConfigError:
    return ConfigError(
        f"Key map {name!r} does not know the state-dict key {key!r}. The file is probably not "
        f"in the naming this map expects; pick another key_map (known: {', '.join(KEY_MAPS)}) "
        "or none if the file already uses timm's names."
    )


# efficientnet-pytorch (lukemelas) -> timm efficientnet / efficientnet_lite / tf_efficientnet*
_EP_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
_EP_IR = {  # block with an expansion conv -> timm InvertedResidual
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
}
_EP_DS = {  # block without expansion -> timm DepthwiseSeparableConv
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
}
_EP_BLOCK = re.compile(r"^_blocks\.(\d+)\.(_[a-z_]+\d?)\.(.+)$")


def efficientnet_pytorch(sd: StateDict) -> StateDict:
    """``efficientnet_pytorch`` / ``efficientnet_lite_pytorch`` names -> timm EfficientNet names.

    ``_conv_stem``/``_bn0`` -> ``conv_stem``/``bn1``; ``_blocks.N._expand_conv`` ->
    ``blocks.i.j.conv_pw`` (and the rest of the block); ``_conv_head``/``_bn1`` ->
    ``conv_head``/``bn2``; ``_fc`` -> ``classifier``.

    >>> sorted(efficientnet_pytorch({"_fc.bias": t}))  # doctest: +SKIP
    ['classifier.bias']
    """
    blocks = {int(m.group(1)) for k in sd if (m := _EP_BLOCK.match(k))}
    out_ch = {b: int(sd[f"_blocks.{b}._project_conv.weight"].shape[0]) for b in blocks}
    expands = {b for b in blocks if f"_blocks.{b}._expand_conv.weight" in sd}
    layout = _stage_layout(sorted(blocks), out_ch)
    out: StateDict = {}
    for key, value in sd.items():
        m = _EP_BLOCK.match(key)
        if m:
            b = int(m.group(1))
            names = _EP_IR if b in expands else _EP_DS
            out[_block_key("efficientnet_pytorch", key, m, names, layout)] = value
            continue
        module, _, rest = key.partition(".")
        if module == "_fc":
            out[f"classifier.{rest}"] = value
        elif module in _EP_TOP:
            out[f"{_EP_TOP[module]}.{rest}"] = value
        else:
            raise _unmapped("efficientnet_pytorch", key)
    return out


# torchvision mobilenet_v2 -> timm mobilenetv2_*
_TV_DS = {"conv.0.0": "conv_dw", "conv.0.1": "bn1", "conv.1": "conv_pw", "conv.2": "bn2"}
_TV_IR = {
    "conv.0.0": "conv_pw",
    "conv.0.1": "bn1",
    "conv.1.0": "conv_dw",
    "conv.1.1": "bn2",
    "conv.2": "conv_pwl",
    "conv.3": "bn3",
}
_TV_BLOCK = re.compile(r"^features\.(\d+)\.(conv\.\d(?:\.\d)?)\.([a-z_]+)$")
_TV_CONVBN = re.compile(r"^features\.(\d+)\.([01])\.([a-z_]+)$")


def torchvision_mobilenet_v2(sd: StateDict) -> StateDict:
    """torchvision ``mobilenet_v2`` names -> timm ``mobilenetv2_*`` names.

    ``features.0`` -> ``conv_stem``/``bn1``; ``features.1..17`` -> ``blocks.i.j``;
    the last ``features.N`` -> ``conv_head``/``bn2``; ``classifier.1`` -> ``classifier``.

    >>> sorted(torchvision_mobilenet_v2({"classifier.1.bias": t}))  # doctest: +SKIP
    ['classifier.bias']
    """
    blocks = {int(m.group(1)) for k in sd if (m := _TV_BLOCK.match(k))}
    expand_one = {b for b in blocks if f"features.{b}.conv.3.weight" not in sd}
    out_ch = {
        b: int(sd[f"features.{b}.conv.{1 if b in expand_one else 2}.weight"].shape[0])
        for b in blocks
    }
    layout = _stage_layout(sorted(blocks), out_ch)
    convbn = {int(m.group(1)) for k in sd if (m := _TV_CONVBN.match(k))}
    head = max(convbn) if len(convbn) > 1 else None
    out: StateDict = {}
    for key, value in sd.items():
        if m := _TV_BLOCK.match(key):
            b = int(m.group(1))
            names = _TV_DS if b in expand_one else _TV_IR
            out[_block_key("torchvision_mobilenet_v2", key, m, names, layout)] = value
        elif m := _TV_CONVBN.match(key):
            n, layer, param = int(m.group(1)), m.group(2), m.group(3)
            if n == 0:
                out[f"{'conv_stem' if layer == '0' else 'bn1'}.{param}"] = value
            elif n == head:
                out[f"{'conv_head' if layer == '0' else 'bn2'}.{param}"] = value
            else:
                raise _unmapped("torchvision_mobilenet_v2", key)
        elif key.startswith("classifier.1."):
            out["classifier." + key.removeprefix("classifier.1.")] = value
        else:
            raise _unmapped("torchvision_mobilenet_v2", key)
    return out


KEY_MAPS: dict[str, KeyMap] = {
    "efficientnet_pytorch": efficientnet_pytorch,
    "torchvision_mobilenet_v2": torchvision_mobilenet_v2,
}


def get_key_map(name: str) -> KeyMap:
    """The key map called ``name``; close matches when unknown.

    >>> get_key_map("efficientnet_pytorch").__name__
    'efficientnet_pytorch'
    """
    if name not in KEY_MAPS:
        raise unknown_name("key map", name, KEY_MAPS)
    return KEY_MAPS[name]


def apply_key_map(name: str, sd: StateDict) -> StateDict:
    """``sd`` renamed with the key map ``name``; ``""`` returns ``sd`` unchanged.

    >>> apply_key_map("", {"a": 1})
    {'a': 1}
    """
    return get_key_map(name)(sd) if name else sd
