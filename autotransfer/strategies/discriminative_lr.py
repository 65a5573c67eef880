"""Every weight trained, with layer-wise decaying learning rates: the head gets ``lr``,
each stage below it ``decay`` times the one above (ULMFiT, fastai). ``decay`` is in the
search space."""

from __future__ import annotations

from typing import Any

from autotransfer.strategies import loop
from autotransfer.strategies.base import SearchContext, TrainContext, TrainOutcome
from autotransfer.strategies.models import freezable_bn, new_classifier, preprocessing
from autotransfer.strategies.schedules import default_steps, training_space, trial_schedule
from autotransfer.strategies.stages import stage_groups


class DiscriminativeLR:
    name = "discriminative_lr"
    description = "all weights trained, learning rate decaying stage by stage from the head"
    relative_cost = 0.9

    def suggest(self, space: Any, *, search: SearchContext) -> dict[str, Any]:
        return {
            **training_space(space, search, lr=(3e-3, 0.1)),
            "decay": space.suggest_float("decay", 0.2, 0.9),
        }

    def defaults(self, *, search: SearchContext) -> dict[str, Any]:
        return {"lr": 0.02, "decay": 0.5, "steps": default_steps(search), "weight_decay": 1e-5}

    def train(self, ctx: TrainContext) -> TrainOutcome:
        p = ctx.params

        def build() -> loop.Trainable:
            model = new_classifier(ctx)
            by_name = dict(model.named_parameters())
            groups = stage_groups(model)
            param_groups = []
            for depth, names in enumerate(reversed(groups)):  # head first
                lr = float(p["lr"]) * float(p["decay"]) ** depth
                param_groups.append({"params": [by_name[n] for n in names], "lr": lr})
            frozen = freezable_bn(model) if ctx.search.batch_size < 32 else []
            return loop.Trainable(model, param_groups[::-1], frozen)

        schedule = trial_schedule(p, decay="cosine", patience=5)
        return loop.train(ctx, build, schedule, preprocessing(ctx))
