"""A fastai-style ``fine_tune`` as a strategy plugin, for the budget benchmark's baseline.

fastai's ``Learner.fine_tune(epochs, base_lr=2e-3, freeze_epochs=1, lr_mult=100)``: one
epoch with the body frozen (only the new head trains, one-cycle at ``base_lr``), then
everything unfrozen for ``epochs`` with ``base_lr / 2`` spread over the layer groups
from ``/lr_mult`` at the stem to the full rate at the head, one-cycle (warm-up over 30 %,
cosine down), Adam with decoupled weight decay 0.01. Here both phases run through
autotransfer's training loop (AdamW, linear warm-up then cosine: the one-cycle shape),
the layer groups are timm's stages, and the trial's deadline covers both phases.

It is registered in code (``autotransfer.register_plugin``) by the benchmark only, so
that a baseline can run through ``fit`` like any strategy; it is not a built-in.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import autotransfer
from autotransfer.strategies import loop
from autotransfer.strategies.base import SearchContext, TrainContext, TrainOutcome
from autotransfer.strategies.models import new_classifier, preprocessing
from autotransfer.strategies.schedules import default_epochs
from autotransfer.strategies.stages import stage_groups


class FastaiFineTune:
    name = "fastai_fine_tune"
    description = "fastai's fine_tune: one frozen epoch, then unfrozen, discriminative lrs"
    relative_cost = 0.9

    def suggest(self, space: Any, *, search: SearchContext) -> dict[str, Any]:
        return {"base_lr": space.suggest_float("base_lr", 1e-4, 1e-2, log=True)}

    def defaults(self, *, search: SearchContext) -> dict[str, Any]:
        return {"base_lr": 2e-3, "epochs": default_epochs(search), "lr_mult": 100.0}

    def train(self, ctx: TrainContext) -> TrainOutcome:
        p = {**self.defaults(search=ctx.search), **ctx.params}
        base = float(p["base_lr"])
        prep = preprocessing(ctx)

        def frozen_body() -> loop.Trainable:
            model = new_classifier(ctx)
            head = stage_groups(model)[-1]
            by_name = dict(model.named_parameters())
            for n, param in by_name.items():
                param.requires_grad_(n in head)
            return loop.Trainable(model, [{"params": [by_name[n] for n in head], "lr": base}])

        first = loop.train(
            ctx,
            frozen_body,
            loop.Schedule(
                epochs=1, optimizer="adamw", weight_decay=0.01, warmup=0.99, decay="cosine"
            ),
            prep,
        )

        def unfrozen() -> loop.Trainable:
            model = copy.deepcopy(first.model)
            for param in model.parameters():
                param.requires_grad_(True)
            groups = stage_groups(model)
            by_name = dict(model.named_parameters())
            hi, lo = base / 2, base / 2 / float(p["lr_mult"])
            k = len(groups)
            return loop.Trainable(
                model,
                [
                    {"params": [by_name[n] for n in g], "lr": lo * (hi / lo) ** (i / max(1, k - 1))}
                    for i, g in enumerate(groups)
                ],
            )

        def report(epoch: int, metrics: Any) -> None:
            ctx.report(epoch + 1, metrics)

        second = loop.train(
            dataclasses.replace(ctx, report=report, seed=ctx.seed + 1),
            unfrozen,
            loop.Schedule(
                epochs=int(p["epochs"]),
                optimizer="adamw",
                weight_decay=0.01,
                warmup=0.3,
                decay="cosine",
            ),
            prep,
        )
        second.history = first.history + second.history
        second.info["frozen_epoch_val_accuracy"] = first.val_accuracy
        return second


@autotransfer.hookimpl
def autotransfer_register_strategies():
    return [FastaiFineTune()]


def register() -> None:
    """Register the strategy once (the benchmark's own plugin)."""
    import sys

    from autotransfer import plugins

    if "fastai_fine_tune" not in plugins.registered("strategies"):
        autotransfer.register_plugin(sys.modules[__name__], name="benchmarks-fastai-baseline")
