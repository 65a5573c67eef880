"""fastai's ``fine_tune``: the new head trains alone first on the frozen body (a warm
head), then every layer with discriminative learning rates, the head's ``lr`` down to
``lr / lr_mult`` at the stem, each phase on one cycle (AdamW). A recipe that converges
in few steps: the short-budget fine-tuning prior (:func:`~autotransfer.search.plan.
prior_trials`), where the BiT-HyperRule's schedule does not fit a trial's time."""

from __future__ import annotations

from typing import Any

from autotransfer.strategies import loop
from autotransfer.strategies.base import SearchContext, TrainContext, TrainOutcome
from autotransfer.strategies.models import freezable_bn, new_classifier, preprocessing
from autotransfer.strategies.schedules import quick_steps, step_range, trial_schedule
from autotransfer.strategies.stages import stage_groups


class FineTune:
    name = "fine_tune"
    description = (
        "fastai's fine_tune: a warm head, then every layer, discriminative rates, one cycle"
    )
    relative_cost = 0.8
    quick = True  # the first fine-tune where the budget is short (search.plan.short_budget)

    def suggest(self, space: Any, *, search: SearchContext) -> dict[str, Any]:
        return {
            "lr": space.suggest_float("lr", 3e-4, 1e-2, log=True),
            "steps": space.suggest_int("steps", *step_range(search, 20), log=True),
            # AdamW's decoupled decay: larger than SGD's L2 (training_space's range)
            "weight_decay": space.suggest_float("weight_decay", 1e-4, 0.1, log=True),
            "lr_mult": space.suggest_float("lr_mult", 10.0, 1000.0, log=True),
            "warm_head": space.suggest_float("warm_head", 0.1, 0.5),
        }

    def defaults(self, *, search: SearchContext) -> dict[str, Any]:
        """fastai's: base rate 2e-3, the stem at a hundredth of the head's, weight decay
        0.01; about four epochs, the first with the body frozen."""
        return {
            "lr": 2e-3,
            "lr_mult": 100.0,
            "steps": quick_steps(search),
            "weight_decay": 1e-2,
            "warm_head": 0.25,
        }

    def train(self, ctx: TrainContext) -> TrainOutcome:
        p = {**self.defaults(search=ctx.search), **ctx.params}

        def build() -> loop.Trainable:
            model = new_classifier(ctx)
            by_name = dict(model.named_parameters())
            groups = stage_groups(model)  # the stem first, the head last
            top, n = float(p["lr"]), max(1, len(groups) - 1)
            param_groups = [
                {
                    "params": [by_name[name] for name in names],
                    # geometric from lr / lr_mult (the stem) to lr (the head)
                    "lr": top / float(p["lr_mult"]) ** ((n - i) / n),
                }
                for i, names in enumerate(groups)
            ]
            frozen = freezable_bn(model) if ctx.search.batch_size < 32 else []
            return loop.Trainable(model, param_groups, frozen)

        schedule = trial_schedule(
            p,
            optimizer="adamw",
            decay="one_cycle",
            warmup=0.25,
            warm_head=float(p["warm_head"]),
            patience=6,
        )
        return loop.train(ctx, build, schedule, preprocessing(ctx))
