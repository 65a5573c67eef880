"""Building the model a strategy trains: the pretrained backbone with a new classifier."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from autotransfer.backbones.load import load_backbone
from autotransfer.strategies.base import TrainContext


def new_classifier(ctx: TrainContext) -> torch.nn.Module:
    """The backbone of ``ctx.spec`` with its weights and a new head for the data's classes.

    The head starts at zero, as in BiT: the first updates then move the head, not the
    pretrained features, which a random head's large gradients would disturb.
    """
    torch.manual_seed(ctx.seed)
    model = load_backbone(ctx.spec)
    model.reset_classifier(len(ctx.dataset.classes))
    head = model.get_classifier()
    with torch.no_grad():
        for param in head.parameters():
            param.zero_()
    return model


def preprocessing(ctx: TrainContext, resolution: int | None = None) -> dict[str, Any]:
    """How the trained model is fed: the weights' mean/std at the fit's resolution."""
    spec = ctx.spec
    return {
        "resolution": int(resolution or ctx.resolution),
        "mean": tuple(spec.weights.mean),
        "std": tuple(spec.weights.std),
        "crop_pct": spec.crop_pct,
        "interpolation": spec.interpolation,
    }


def set_linear_head(model: torch.nn.Module, weight: np.ndarray, bias: np.ndarray) -> None:
    """Copy a (classes, features) linear classifier into the model's head."""
    head = model.get_classifier()
    if not isinstance(head, torch.nn.Linear):
        raise TypeError(
            f"{type(model).__name__}'s classifier is {type(head).__name__}, not a Linear layer; "
            "the feature-extraction strategy needs a linear head on pooled features."
        )
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))


def bn_modules(modules: list[torch.nn.Module] | torch.nn.Module) -> list[torch.nn.Module]:
    """The BatchNorm layers among (or inside) ``modules``."""
    mods = [modules] if isinstance(modules, torch.nn.Module) else modules
    out = []
    for m in mods:
        out.extend(x for x in m.modules() if isinstance(x, torch.nn.modules.batchnorm._BatchNorm))
    return out


# Below this running variance (plus eps) a BatchNorm layer is not frozen under trained
# weights: in eval mode it multiplies every change of its input by 1 / sqrt(var + eps),
# and MobileNetV2's near-dead channels (variance ~1e-6, eps 1e-5: x300) turn the first
# updates of the convolution above into a collapse (aerial scenes, batch 8, lr 0.003:
# validation 0.065 frozen, 0.72 with batch statistics). TensorFlow's eps is 1e-3.
MIN_FROZEN_VARIANCE = 1e-3


def freezable_bn(modules: list[torch.nn.Module] | torch.nn.Module) -> list[torch.nn.Module]:
    """The BatchNorm layers among ``modules`` that can keep their running statistics while
    the weights around them train: those whose every channel has ``running_var + eps`` of
    at least :data:`MIN_FROZEN_VARIANCE`. The others use batch statistics, which
    renormalise whatever the updates do.

    >>> bn = torch.nn.BatchNorm2d(2)
    >>> len(freezable_bn(bn))
    1
    >>> _ = bn.running_var.fill_(1e-6)
    >>> freezable_bn(bn)
    []
    """
    out = []
    for bn in bn_modules(modules):
        var = getattr(bn, "running_var", None)
        if var is None or float((var + bn.eps).min()) >= MIN_FROZEN_VARIANCE:
            out.append(bn)
    return out
