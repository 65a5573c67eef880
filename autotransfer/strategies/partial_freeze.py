"""Train the top N stages of the backbone with the head; everything below stays frozen,
BatchNorm statistics included. N is in the search space."""

from __future__ import annotations

from typing import Any

from autotransfer.strategies import loop
from autotransfer.strategies.base import SearchContext, TrainContext, TrainOutcome
from autotransfer.strategies.models import new_classifier, preprocessing
from autotransfer.strategies.schedules import default_steps, training_space, trial_schedule
from autotransfer.strategies.stages import modules_of, stage_groups

MAX_STAGES = 4


class PartialFreeze:
    name = "partial_freeze"
    description = "top N stages and the head trained, the rest frozen (BatchNorm statistics too)"
    relative_cost = 0.5

    def suggest(self, space: Any, *, search: SearchContext) -> dict[str, Any]:
        return {
            "stages": space.suggest_int("stages", 1, MAX_STAGES),
            **training_space(space, search, lr=(1e-3, 0.1)),
        }

    def defaults(self, *, search: SearchContext) -> dict[str, Any]:
        return {"stages": 2, "lr": 0.01, "steps": default_steps(search), "weight_decay": 1e-5}

    def train(self, ctx: TrainContext) -> TrainOutcome:
        p = ctx.params

        def build() -> loop.Trainable:
            model = new_classifier(ctx)
            groups = stage_groups(model)
            n = max(1, min(int(p["stages"]), len(groups) - 1))
            trainable = {name for g in groups[-1 - n :] for name in g}
            params = []
            for name, param in model.named_parameters():
                param.requires_grad_(name in trainable)
                if name in trainable:
                    params.append(param)
            frozen = modules_of(model, {n for g in groups[: -1 - n] for n in g})
            return loop.Trainable(model, [{"params": params, "lr": float(p["lr"])}], frozen)

        schedule = trial_schedule(p, decay="cosine", patience=5)
        return loop.train(ctx, build, schedule, preprocessing(ctx))
