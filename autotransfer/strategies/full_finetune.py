"""Every weight trained. The first trial is the BiT-HyperRule recipe: SGD with momentum,
linear warm-up, learning rate x0.1 at 30/60/90 % of a schedule whose length follows the
dataset size (BiT's steps of 512 images, as steps at the trial's batch size), MixUp only
for medium and large datasets, a zero-initialised head; Optuna then explores around it."""

from __future__ import annotations

from typing import Any

from autotransfer.data.statistics import bit_hyperrule
from autotransfer.strategies import loop
from autotransfer.strategies.base import SearchContext, TrainContext, TrainOutcome
from autotransfer.strategies.models import freezable_bn, new_classifier, preprocessing
from autotransfer.strategies.schedules import (
    MAX_EPOCHS,
    hyperrule_steps,
    training_space,
    trial_schedule,
)


class FullFinetune:
    name = "full_finetune"
    description = "all weights trained; BiT-HyperRule first, then searched"
    relative_cost = 1.0

    def suggest(self, space: Any, *, search: SearchContext) -> dict[str, Any]:
        return {
            **training_space(space, search, lr=(1e-3, 0.05), max_epochs=MAX_EPOCHS),
            "mixup_alpha": space.suggest_categorical("mixup_alpha", [0.0, 0.1, 0.2]),
            "label_smoothing": space.suggest_categorical("label_smoothing", [0.0, 0.1]),
            "freeze_bn": space.suggest_categorical("freeze_bn", [True, False]),
            "decay": space.suggest_categorical("decay", ["step", "cosine"]),
        }

    def defaults(self, *, search: SearchContext) -> dict[str, Any]:
        """The BiT-HyperRule configuration for this dataset."""
        rule = bit_hyperrule(search.num_train, search.median_side)
        return {
            "lr": 0.003,
            "steps": hyperrule_steps(search),
            "weight_decay": 1e-6,
            "mixup_alpha": rule["mixup_alpha"],
            "label_smoothing": 0.0,
            # BatchNorm statistics from batches this small are noise; BiT itself uses GroupNorm
            "freeze_bn": search.batch_size < 32,
            "decay": "step",
        }

    def train(self, ctx: TrainContext) -> TrainOutcome:
        p = {**self.defaults(search=ctx.search), **ctx.params}

        def build() -> loop.Trainable:
            model = new_classifier(ctx)  # BiT: the new head starts at zero
            # only the layers whose statistics are safe to freeze (see freezable_bn)
            frozen = freezable_bn(model) if p["freeze_bn"] else []
            return loop.Trainable(
                model, [{"params": list(model.parameters()), "lr": p["lr"]}], frozen
            )

        schedule = trial_schedule(
            p,
            decay=str(p["decay"]),
            mixup_alpha=float(p["mixup_alpha"]),
            label_smoothing=float(p["label_smoothing"]),
            patience=6,
        )
        return loop.train(ctx, build, schedule, preprocessing(ctx))
