"""The ensemble served as one model: several trained classifiers, each fed as it was
trained, their class probabilities averaged with weights.

``autotransfer_ensemble`` is registered with timm, so an ensemble is a plain
:class:`~autotransfer.model.Classifier` whose ``model_kwargs`` describe its members: it
saves to safetensors and JSON, loads strictly, traces, exports to ONNX and serves through
MLflow like any single model. Its input is what the ensemble's classifier preprocessing
gives (the short side resized to :func:`ensemble_resolution`, centre-cropped, pixels in
[0, 1], no normalisation); inside, each member takes the centre crop its own
preprocessing would take (``crop_pct``), resizes it to its resolution (antialiased, as
PIL resizes), normalises it with its own mean and std and runs; the output is the log of
the weighted mean of the members' softmax, so that its softmax is that mean.

>>> import timm
>>> prep = {"resolution": 16, "mean": [0.5] * 3, "std": [0.5] * 3, "crop_pct": 1.0,
...         "interpolation": "bilinear"}
>>> member = {"arch": "test_resnet", "model_kwargs": {}, "cut": None, "preprocessing": prep}
>>> m = timm.create_model("autotransfer_ensemble", num_classes=3,
...                       members=[member, member], weights=[3, 1])
>>> m.weights.tolist(), m(torch.rand(2, 3, 16, 16)).exp().sum(1).round(decimals=4).tolist()
([0.75, 0.25], [1.0, 1.0])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.models import register_model

from autotransfer.backbones.cuts import build_cut_model
from autotransfer.backbones.inputs import resize_side
from autotransfer.errors import ConfigError

ARCH = "autotransfer_ensemble"
PREPROCESSING_KEYS = ("resolution", "mean", "std", "crop_pct", "interpolation")
# PIL filters without a torch counterpart are replaced by the closest one
_MODES = {"bicubic": "bicubic", "lanczos": "bicubic"}

__all__ = ["ARCH", "EnsembleModule", "autotransfer_ensemble", "ensemble_resolution"]


def _scale_side(prep: Mapping[str, Any]) -> int:
    """The side a member's own eval transform resizes the short side to (timm's floor)."""
    return resize_side({"input_size": (3, int(prep["resolution"])), "crop_pct": prep["crop_pct"]})


def ensemble_resolution(members: Sequence[Mapping[str, Any]]) -> tuple[int, str]:
    """``(side, interpolation)`` of the ensemble's input: the largest side any member
    resizes images to before its centre crop (``floor(resolution / crop_pct)``, as timm
    computes it), and the interpolation of that member. The member that sets the side sees
    exactly the pixels its own preprocessing gives; the others are resampled from them.

    >>> p = {"mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear"}
    >>> ensemble_resolution([
    ...     {"preprocessing": {**p, "resolution": 24, "crop_pct": 0.875}},
    ...     {"preprocessing": {**p, "resolution": 32, "crop_pct": 1.0, "interpolation": "bicubic"}},
    ... ])
    (32, 'bicubic')
    """
    if not members:
        raise ConfigError("An ensemble needs at least one member; got none.")
    sides = [(_scale_side(m["preprocessing"]), -i) for i, m in enumerate(members)]
    side, neg = max(sides)  # the first member wins a tie
    return side, str(members[-neg]["preprocessing"]["interpolation"])


class _Member(torch.nn.Module):
    """One member: centre crop of the ensemble input, resize, normalise, run, log-softmax."""

    def __init__(self, module: torch.nn.Module, prep: Mapping[str, Any], side: int) -> None:
        super().__init__()
        self.model = module
        res = int(prep["resolution"])
        # the member keeps res of floor(res / crop_pct) pixels of the short side
        crop = max(1, min(side, round(side * res / _scale_side(prep))))
        self.top = int(round((side - crop) / 2.0))  # as torchvision's centre crop rounds
        self.crop, self.res = crop, res
        self.mode = _MODES.get(str(prep["interpolation"]), "bilinear")
        mean = torch.tensor([float(v) for v in prep["mean"]]).view(1, 3, 1, 1)
        std = torch.tensor([float(v) for v in prep["std"]]).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, c = self.top, self.crop
        x = x[:, :, t : t + c, t : t + c]
        if c != self.res:
            # antialias: torch's filter is PIL's (bicubic a=-0.5), and ONNX Resize has it
            x = F.interpolate(
                x, size=(self.res, self.res), mode=self.mode, align_corners=False, antialias=True
            )
            x = x.clamp(0.0, 1.0)  # PIL clips the overshoot of bicubic to 8 bits
        logits = self.model((x - self.mean) / self.std)
        return torch.log_softmax(logits.float(), dim=1)


class EnsembleModule(torch.nn.Module):
    """Members' probabilities averaged with ``weights``, as one module.

    ``members`` (an ``nn.ModuleList``) holds one module per member: it takes the
    ensemble's input and returns that member's log-probabilities, its network is
    ``members[i].model``. ``weights`` is a buffer summing to 1 (rebuilt from the config,
    not saved), ``resolution`` the side of the input it takes. ``forward`` returns
    ``log(sum_i w_i softmax_i)`` (computed as a ``logsumexp``, exact where the probabilities
    underflow), whose softmax is the weighted mean of the members' probabilities.
    An ensemble has no single classifier head: :meth:`get_classifier` and
    :meth:`reset_classifier` raise.
    """

    def __init__(
        self,
        modules: Sequence[torch.nn.Module],
        preprocessing: Sequence[Mapping[str, Any]],
        weights: Sequence[float],
        num_classes: int,
        flip: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.flip = bool(flip)
        w = _normalised(weights, len(modules))
        self.resolution, _ = ensemble_resolution([{"preprocessing": p} for p in preprocessing])
        side = self.resolution
        self.members = torch.nn.ModuleList(
            _Member(m, p, side) for m, p in zip(modules, preprocessing, strict=True)
        )
        self.register_buffer("weights", torch.tensor(w, dtype=torch.float32), persistent=False)
        self.register_buffer("log_weights", self.weights.log().view(-1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip:  # test-time augmentation: each image and its mirror image, averaged
            n = x.shape[0]
            both = torch.cat([x, x.flip(-1)])
            logp = torch.stack([m(both) for m in self.members])  # (members, 2N, classes)
            logp = torch.cat([logp[:, :n], logp[:, n:]]) - math.log(2.0)
            weights = torch.cat([self.log_weights, self.log_weights])
            return torch.logsumexp(logp + weights, dim=0)
        logp = torch.stack([m(x) for m in self.members])  # (members, N, classes)
        return torch.logsumexp(logp + self.log_weights, dim=0)

    def get_classifier(self) -> torch.nn.Module:
        raise ConfigError(
            f"{ARCH} has no single classifier head: it averages {len(self.members)} members' "
            "probabilities. Train or fine-tune a member (members[i].model) instead."
        )

    def reset_classifier(self, num_classes: int, *args: Any, **kwargs: Any) -> None:
        raise ConfigError(
            f"{ARCH} cannot take a new classifier head: its members were trained for "
            f"{self.num_classes} classes. Build a new ensemble from retrained members."
        )


@register_model
def autotransfer_ensemble(
    pretrained: bool = False,
    *,
    num_classes: int,
    members: Sequence[Mapping[str, Any]],
    weights: Sequence[float],
    flip: bool = False,
    **kwargs: Any,
) -> EnsembleModule:
    """The ensemble of ``members`` (see :class:`EnsembleModule`), without weights.

    ``members``: one dict per member, ``{"arch", "model_kwargs", "cut", "preprocessing"}``
    (the member classifier's ``arch``, ``model_kwargs``, ``cut`` and
    ``preprocessing.to_dict()``); ``weights``: one positive number per member, normalised
    to sum 1; ``flip``: each image is also seen mirrored left to right and the two
    predictions averaged (test-time augmentation; an "ensemble" of one member with it is
    that member with flip TTA). Each member network is built as ``Classifier.load``
    builds it. timm's own
    keyword arguments (``pretrained_cfg``, ``cache_dir``, ...) are ignored.
    """
    if pretrained:
        raise ConfigError(
            f"{ARCH} has no pretrained weights: it is built from trained classifiers "
            "(autotransfer.search.ensemble.ensemble_classifier). Create it with pretrained=False."
        )
    specs = [_member_spec(m, i) for i, m in enumerate(members)]
    _normalised(weights, len(specs))  # fail before building any network
    modules = []
    for spec in specs:
        model_kwargs = dict(spec["model_kwargs"] or {})
        if spec["cut"] is None:
            module = timm.create_model(
                spec["arch"], pretrained=False, num_classes=num_classes, **model_kwargs
            )
        else:
            module = build_cut_model(spec["arch"], int(spec["cut"]), num_classes, **model_kwargs)
        modules.append(module)
    preps = [s["preprocessing"] for s in specs]
    return EnsembleModule(modules, preps, weights, num_classes, flip=flip)


def _member_spec(member: Mapping[str, Any], i: int) -> Mapping[str, Any]:
    keys = {"arch", "model_kwargs", "cut", "preprocessing"}
    if not isinstance(member, Mapping) or not {"arch", "preprocessing"} <= set(member):
        raise ConfigError(
            f"Ensemble member {i} must be a dict with the keys {sorted(keys)}; got {member!r}."
        )
    prep = member["preprocessing"]
    missing = [k for k in PREPROCESSING_KEYS if k not in prep]
    if missing:
        raise ConfigError(
            f"The preprocessing of ensemble member {i} ({member['arch']}) lacks "
            f"{', '.join(missing)}; pass the member classifier's preprocessing.to_dict()."
        )
    return {"model_kwargs": {}, "cut": None, **member}


def _normalised(weights: Sequence[float], n: int) -> list[float]:
    w = [float(v) for v in weights]
    if len(w) != n or n == 0:
        raise ConfigError(
            f"An ensemble of {n} members needs {n} weights, one per member; got {len(w)} "
            f"({w}). Pass one weight per member, in the members' order."
        )
    if not all(math.isfinite(v) and v > 0 for v in w):
        raise ConfigError(
            f"Ensemble weights must be positive finite numbers; got {w}. Leave out a member "
            "with no weight."
        )
    total = sum(w)
    return [v / total for v in w]
