"""No transfer: a small timm network with random weights, trained from scratch.

The primer's fourth case, a large dataset unlike the source, is served best without
pretrained weights; a small network at a small resolution also costs a fraction of a
fine-tune. It trains through the one loop (:mod:`autotransfer.strategies.loop`) with
AdamW and a cosine schedule, which converge from random weights without the tuning
SGD needs; the trial's backbone is not used. The plan gives it one trial, early where
the images are tiny or far from the source (:mod:`autotransfer.search.plan`).
"""

from __future__ import annotations

from typing import Any

import timm
import torch

from autotransfer.strategies import loop
from autotransfer.strategies.base import SearchContext, TrainContext, TrainOutcome
from autotransfer.strategies.schedules import default_steps, step_range, trial_schedule

ARCH = "resnet10t"  # 5 M parameters, a ResNet's shape; fast at 32-64 px on a CPU
MEAN = STD = (0.5, 0.5, 0.5)  # no source statistics to match: pixels to about [-1, 1]


def scratch_resolution(search: SearchContext) -> int:
    """The training resolution: 32 px for images of 48 px or less (MNIST- and CIFAR-like),
    else 64 on a CPU and 128 on a GPU.

    >>> scratch_resolution(SearchContext(500, 10, 28.0, None, "cpu", 32))
    32
    >>> scratch_resolution(SearchContext(500, 10, 400.0, None, "cuda", 32))
    128
    """
    if search.median_side <= 48:
        return 32
    return 128 if search.device == "cuda" else 64


class FromScratch:
    name = "from_scratch"
    description = "no transfer: a small network (resnet10t) trained from random weights"
    relative_cost = 0.5
    transfers = False

    def suggest(self, space: Any, *, search: SearchContext) -> dict[str, Any]:
        return {
            "lr": space.suggest_float("lr", 3e-4, 1e-2, log=True),
            "steps": space.suggest_int("steps", *step_range(search, 40), log=True),
            "weight_decay": space.suggest_float("weight_decay", 1e-4, 0.1, log=True),
        }

    def defaults(self, *, search: SearchContext) -> dict[str, Any]:
        return {"lr": 3e-3, "steps": default_steps(search), "weight_decay": 0.05}

    def train(self, ctx: TrainContext) -> TrainOutcome:
        p = {**self.defaults(search=ctx.search), **ctx.params}
        k = len(ctx.dataset.classes)

        def build() -> loop.Trainable:
            torch.manual_seed(ctx.seed)
            model = timm.create_model(ARCH, pretrained=False, num_classes=k)
            return loop.Trainable(model, [{"params": list(model.parameters()), "lr": p["lr"]}])

        schedule = trial_schedule(p, optimizer="adamw", decay="cosine", patience=6)
        prep = {
            "resolution": scratch_resolution(ctx.search),
            "mean": MEAN,
            "std": STD,
            "crop_pct": 1.0,
            "interpolation": "bicubic",
        }
        outcome = loop.train(ctx, build, schedule, prep)
        outcome.arch, outcome.model_kwargs = ARCH, {}
        return outcome
