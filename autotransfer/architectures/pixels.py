"""The raw-pixel model: no pretrained features at all, the baseline transfer must beat.

The image, already at ``side`` x ``side`` (the classifier's preprocessing resizes it
there), becomes one vector of its pixels (the channels' mean for greyscale data),
standardised, then either a linear classifier (multinomial logistic regression) or an
RBF-kernel one: the kernel against ``centres`` training images, whitened as Nyström's
method does (``K(x, C) N^T``), then the linear classifier. With every training image
a centre this is exact kernel logistic regression; with a sample of them, its Nyström
approximation (the model, not an approximation of it: the same numbers serve predict).

Every learned number is a buffer or a parameter, so the module saves to safetensors,
loads strictly, traces and exports to ONNX like any timm model.

>>> import timm
>>> m = timm.create_model("autotransfer_pixels", num_classes=3, side=8, channels=1, centres=5)
>>> m(torch.zeros(2, 3, 8, 8)).shape
torch.Size([2, 3])
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models import register_model

from autotransfer.errors import ConfigError

ARCH = "autotransfer_pixels"


class PixelClassifier(torch.nn.Module):
    """Pixels -> standardised vector -> (RBF kernel features) -> linear head.

    ``side``: the input's height and width; ``channels``: 1 (the mean of the three input
    channels: greyscale data) or 3; ``centres``: 0 for the linear model, else the number
    of kernel centres. The buffers (``mean``, ``scale``, ``centres``, ``gamma``,
    ``whiten``) and the head are set by the trainer
    (:mod:`autotransfer.strategies.raw_pixels`).
    """

    def __init__(self, num_classes: int, side: int, channels: int = 3, centres: int = 0) -> None:
        super().__init__()
        if channels not in (1, 3):
            raise ConfigError(f"channels={channels!r}: the raw-pixel model takes 1 or 3.")
        if side < 1 or centres < 0:
            raise ConfigError(f"side={side!r} must be positive, centres={centres!r} not negative.")
        self.num_classes = int(num_classes)
        self.side, self.channels, self.n_centres = int(side), int(channels), int(centres)
        dim = self.channels * self.side * self.side
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.register_buffer("centres", torch.zeros(self.n_centres, dim))
        self.register_buffer("gamma", torch.ones(()))
        self.register_buffer("whiten", torch.eye(self.n_centres))
        self.num_features = self.n_centres or dim
        self.head = torch.nn.Linear(self.num_features, self.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The vector the head reads: standardised pixels, or their whitened kernel row."""
        if self.channels == 1:
            x = x.mean(dim=1, keepdim=True)
        v = (x.flatten(1) - self.mean) / self.scale
        if not self.n_centres:
            return v
        # squared distances to the centres without forming (N, M, D)
        d2 = (v * v).sum(1, keepdim=True) - 2.0 * v @ self.centres.T
        d2 = (d2 + (self.centres * self.centres).sum(1)).clamp_min(0.0)
        return torch.exp(-self.gamma * d2) @ self.whiten.T

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> torch.nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, *args: Any, **kwargs: Any) -> None:
        self.num_classes = int(num_classes)
        self.head = torch.nn.Linear(self.num_features, self.num_classes)


@register_model
def autotransfer_pixels(
    pretrained: bool = False,
    *,
    num_classes: int = 1000,
    side: int = 16,
    channels: int = 3,
    centres: int = 0,
    **kwargs: Any,
) -> PixelClassifier:
    """The raw-pixel model (see :class:`PixelClassifier`); it has no pretrained weights."""
    if pretrained:
        raise ConfigError(
            f"{ARCH} has no pretrained weights: it is trained from the pixels of your data. "
            "Create it with pretrained=False."
        )
    return PixelClassifier(num_classes, side, channels, centres)
