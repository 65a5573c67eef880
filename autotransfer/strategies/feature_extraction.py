"""Frozen backbone, linear head: logistic regression on the cached pooled features.

A trial takes seconds: the features come from the feature cache (the same pass that
ranked the backbone), the head is scikit-learn's L2-regularised logistic regression on
standardised features, folded back into the model's classifier afterwards.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autotransfer.strategies.base import SearchContext, TrainContext, TrainOutcome
from autotransfer.strategies.models import new_classifier, preprocessing, set_linear_head


class FeatureExtraction:
    name = "feature_extraction"
    description = "frozen backbone; logistic-regression head on cached features"
    relative_cost = 0.05

    def suggest(self, space: Any, *, search: SearchContext) -> dict[str, Any]:
        return {"C": space.suggest_float("C", 1e-3, 1e2, log=True)}

    def defaults(self, *, search: SearchContext) -> dict[str, Any]:
        return {"C": 1.0}

    def train(self, ctx: TrainContext) -> TrainOutcome:
        from sklearn.linear_model import LogisticRegression

        tr, va = ctx.features("train"), ctx.features("val")
        mu = tr.features.mean(0)
        sd = tr.features.std(0) + 1e-6
        clf = LogisticRegression(
            C=float(ctx.params.get("C", 1.0)),
            max_iter=2000,
            class_weight=None if ctx.class_weights is None else _weights(ctx.class_weights),
        )
        clf.fit((tr.features - mu) / sd, tr.labels)
        k = len(ctx.dataset.classes)
        w, b = _full_head(clf, k, tr.features.shape[1])
        proba_acc = float((((va.features - mu) / sd @ w.T + b).argmax(1) == va.labels).mean())
        ctx.report(0, {"val_accuracy": proba_acc})
        model = new_classifier(ctx)
        # fold the standardisation into the head: w·(x - mu)/sd + b
        set_linear_head(model, w / sd, b - (w / sd) @ mu)
        return TrainOutcome(
            model=model.eval(),
            preprocessing=preprocessing(ctx, resolution=int(tr.meta.get("resolution", 0)) or None),
            val_accuracy=proba_acc,
            history=[{"val_accuracy": proba_acc}],
            info={"epochs_run": 1, "iterations": int(np.max(clf.n_iter_))},
        )


def _weights(w: np.ndarray) -> dict[int, float]:
    return {i: float(v) for i, v in enumerate(w)}


def _full_head(clf: Any, k: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """(k, d) weights and (k,) biases over all classes, whatever sklearn kept."""
    w = np.zeros((k, d), dtype=np.float64)
    b = np.full(k, -1e4, dtype=np.float64)  # a class missing from train is never predicted
    coef, icpt = clf.coef_, clf.intercept_
    if len(clf.classes_) == 2 and coef.shape[0] == 1:  # binary: one row for class 1
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        icpt = np.array([-icpt[0] / 2, icpt[0] / 2])
    for row, c in enumerate(clf.classes_):
        w[int(c)], b[int(c)] = coef[row], icpt[row]
    return w.astype(np.float32), b.astype(np.float32)
