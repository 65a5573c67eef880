"""LP-FT: fit a linear probe on the frozen features, then fine-tune every weight from it.

Kumar et al. (ICLR 2022), "Fine-Tuning can Distort Pretrained Features and Underperform
Out-of-Distribution": fine-tuning from a randomly initialised head sends large, noisy
gradients into the backbone while the head is still wrong, and distorts the pretrained
features. Starting from the linear probe's head (already a good classifier) and
fine-tuning with a small learning rate changes the features less, which does as well
in distribution and better out of distribution.

The probe is scikit-learn's L2-regularised logistic regression on the cached features
(the features the ranking computed, so it takes seconds), centred and divided by one
overall scale, both folded into the model's head. One scale, not one per feature as
the feature-extraction strategy does: per-feature standardisation multiplies the head
weights of near-constant features by up to the inverse of their spread, and fine-tuning
through such a head diverges (the paper fits its probe on the raw features).

Fine-tuning runs through autotransfer's one training loop (SGD with momentum, warm-up,
cosine decay, early stopping, the trial's deadline) with the BatchNorm layers kept on
their running statistics, so that training starts from exactly the features the probe
was fitted to; layers with near-zero running variance, which would amplify the first
updates into a collapse, use batch statistics instead (``freezable_bn``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from autotransfer.strategies import loop
from autotransfer.strategies.base import SearchContext, TrainContext, TrainOutcome
from autotransfer.strategies.models import (
    freezable_bn,
    new_classifier,
    preprocessing,
    set_linear_head,
)
from autotransfer.strategies.probe import fit_linear_head
from autotransfer.strategies.schedules import default_epochs


@dataclass(frozen=True)
class LinearProbe:
    """A linear classifier on raw pooled features, the standardisation folded in.

    ``logits = features @ weight.T + bias``; ``weight`` is (classes, features), ``bias``
    (classes,), both float32, one row per class of the dataset (in class-index order).

    >>> probe = LinearProbe(np.eye(2, dtype=np.float32), np.zeros(2, np.float32), 5)
    >>> probe.predict(np.array([[0.0, 3.0], [2.0, 1.0]])).tolist()
    [1, 0]
    """

    weight: np.ndarray
    bias: np.ndarray
    iterations: int = 0  # iterations the solver needed

    def logits(self, features: np.ndarray) -> np.ndarray:
        """(N, classes) scores for (N, features) pooled features."""
        return np.asarray(features, dtype=np.float32) @ self.weight.T + self.bias

    def predict(self, features: np.ndarray) -> np.ndarray:
        """The class index with the highest score, per row."""
        return self.logits(features).argmax(1)

    def accuracy(self, features: np.ndarray, labels: np.ndarray) -> float:
        """Share of rows whose predicted class is the label."""
        return float((self.predict(features) == np.asarray(labels)).mean())


def fit_linear_probe(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    C: float = 1.0,
    class_weights: np.ndarray | None = None,
) -> LinearProbe:
    """L2-regularised logistic regression on centred, scaled features, folded into one layer.

    The features are centred per dimension and divided by their overall spread (one
    number), so that ``C``, scikit-learn's inverse regularisation strength, means the
    same whatever the scale of a backbone's features. ``class_weights`` (one per class)
    weigh the loss of each class's images.

    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(0, 1, (20, 4)), rng.normal(3, 1, (20, 4))])
    >>> y = np.repeat([0, 1], 20)
    >>> probe = fit_linear_probe(x, y, num_classes=3)
    >>> probe.weight.shape, probe.accuracy(x, y)
    ((3, 4), 1.0)
    """
    x = np.asarray(features, dtype=np.float64)
    mu = x.mean(0)
    sd = float(np.sqrt(np.mean((x - mu) ** 2))) or 1.0
    w, b, iterations = fit_linear_head(
        (x - mu) / sd, labels, num_classes, C=C, class_weights=class_weights
    )
    # w·(x - mu)/sd + b  ==  (w/sd)·x + (b - (w/sd)·mu)
    return LinearProbe(
        weight=(w / sd).astype(np.float32),
        bias=(b - (w / sd) @ mu).astype(np.float32),
        iterations=iterations,
    )


def probe_model(ctx: TrainContext, probe: LinearProbe) -> torch.nn.Module:
    """The backbone of ``ctx.spec`` with the probe as its classifier head (the LP model)."""
    model = new_classifier(ctx)
    set_linear_head(model, probe.weight, probe.bias)
    return model


class LinearProbeThenFinetune:
    """LP-FT: the linear probe's head first, then all weights at a small learning rate.

    >>> s = LinearProbeThenFinetune()
    >>> s.defaults(search=SearchContext(300, 5, 200.0, None, "cpu", 32))
    {'C': 1.0, 'lr': 0.001, 'epochs': 30, 'weight_decay': 1e-05}
    """

    name = "lp_ft"
    description = "linear probe on frozen features, then all weights fine-tuned from it (LP-FT)"
    relative_cost = 0.95

    def suggest(self, space: Any, *, search: SearchContext) -> dict[str, Any]:
        return {
            "C": space.suggest_float("C", 1e-3, 1e2, log=True),
            # LP-FT wants smaller steps than fine-tuning from a random head
            "lr": space.suggest_float("lr", 1e-4, 1e-2, log=True),
            "epochs": space.suggest_int("epochs", 2, 40, log=True),
            "weight_decay": space.suggest_float("weight_decay", 1e-6, 1e-3, log=True),
        }

    def defaults(self, *, search: SearchContext) -> dict[str, Any]:
        return {"C": 1.0, "lr": 1e-3, "epochs": default_epochs(search), "weight_decay": 1e-5}

    def train(self, ctx: TrainContext) -> TrainOutcome:
        p = {**self.defaults(search=ctx.search), **ctx.params}
        tr, va = ctx.features("train"), ctx.features("val")
        probe = fit_linear_probe(
            tr.features,
            tr.labels,
            len(ctx.dataset.classes),
            C=float(p["C"]),
            class_weights=ctx.class_weights,
        )
        probe_acc = probe.accuracy(va.features, va.labels)
        ctx.log.info(
            "lp_ft: linear probe val accuracy %.4f (%d iterations)", probe_acc, probe.iterations
        )

        def build() -> loop.Trainable:
            model = probe_model(ctx, probe)
            # BatchNorm keeps its running statistics: the probe was fitted to the features
            # they give, and batch statistics (noisy in small batches) would change them;
            # except layers with near-zero variance, which would blow up (freezable_bn)
            frozen = freezable_bn(model)
            groups = [{"params": list(model.parameters()), "lr": float(p["lr"])}]
            return loop.Trainable(model, groups, frozen)

        schedule = loop.Schedule(
            epochs=int(p["epochs"]),
            weight_decay=float(p["weight_decay"]),
            decay="cosine",
            patience=5,
        )
        out = loop.train(ctx, build, schedule, preprocessing(ctx))
        out.info.update(probe_val_accuracy=probe_acc, probe_iterations=probe.iterations)
        return out
