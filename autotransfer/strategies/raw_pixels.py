"""No transfer: a classical model on the downscaled pixels, the baseline transfer must beat.

Transfer learning's third question is *when*: on data far from the source (greyscale
digits, small textures), the pixels themselves may serve better than ImageNet features
("negative transfer"). This strategy asks it in the same study as the others, in one
cheap trial: the images at ``side`` x ``side`` (greyscale where the data are), one
vector each, standardised, then a multinomial logistic regression and an RBF-kernel
logistic regression (Nyström, on up to :data:`MAX_CENTRES` training images as centres;
exact kernel logistic regression when the split is smaller) are both fitted, and the one
better on validation is kept. Training images are subsampled to :data:`MAX_TRAIN` (and
to what the trial's deadline allows to decode), so it takes seconds at any size.

The model is :mod:`autotransfer.architectures.pixels`, a torch module: it predicts,
saves, loads and exports like every other pick. The trial's backbone is not used.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import timm
import torch

from autotransfer.architectures.pixels import ARCH
from autotransfer.metrics import classification_metrics
from autotransfer.strategies.base import SearchContext, TrainContext, TrainOutcome
from autotransfer.strategies.probe import fit_linear_head
from autotransfer.threads import on_one_blas_thread
from autotransfer.transferability.estimators._util import softmax

MAX_TRAIN = 10_000  # training images a trial reads at most (a stratified-enough sample)
MAX_CENTRES = 2_000  # kernel centres at most: a (N, 2000) kernel fits any memory
SIDES = (8, 16, 24, 32)  # the sides the search explores (never above the images' own)
INTERPOLATION = "bicubic"


def default_side(search: SearchContext) -> int:
    """The largest of :data:`SIDES` not above the images' median side: 32 px keeps the
    shape of most objects and stays a few thousand numbers an image.

    >>> default_side(SearchContext(500, 10, 28.0, None, "cpu", 32))
    24
    >>> default_side(SearchContext(500, 10, 500.0, None, "cpu", 32))
    32
    """
    fits = [s for s in SIDES if s <= search.median_side]
    return fits[-1] if fits else SIDES[0]


def greyscale(search: SearchContext) -> bool:
    """Whether every image of the data has one channel (the descriptor counts them)."""
    channels = getattr(search.descriptor, "channels", None) or {}
    return bool(channels) and set(channels) == {"1"}


class RawPixels:
    name = "raw_pixels"
    description = "no transfer: logistic regression or RBF-kernel model on downscaled pixels"
    relative_cost = 0.02
    transfers = False

    def suggest(self, space: Any, *, search: SearchContext) -> dict[str, Any]:
        sides = [s for s in SIDES if s <= max(SIDES[0], search.median_side)]
        return {
            "side": space.suggest_categorical("side", sides),
            "C": space.suggest_float("C", 1e-2, 1e3, log=True),
            "gamma": space.suggest_float("gamma", 0.1, 10.0, log=True),
        }

    def defaults(self, *, search: SearchContext) -> dict[str, Any]:
        # C 10 and the kernel's width at 1 / dimension (scikit-learn's gamma="scale" on
        # standardised pixels): SVC's defaults, which are strong on digit-like data
        return {"side": default_side(search), "C": 10.0, "gamma": 1.0}

    def train(self, ctx: TrainContext) -> TrainOutcome:
        p = {**self.defaults(search=ctx.search), **ctx.params}
        side, k = int(p["side"]), len(ctx.dataset.classes)
        channels = 1 if greyscale(ctx.search) else 3
        start = time.monotonic()
        x_tr, y_tr = _pixels(ctx, "train", side, channels, MAX_TRAIN)
        x_va, y_va = _pixels(ctx, "val", side, channels, None)
        mean, scale = float(x_tr.mean()), float(x_tr.std()) + 1e-6
        x_tr, x_va = (x_tr - mean) / scale, (x_va - mean) / scale
        fits = {"linear": _linear(ctx, x_tr, y_tr, x_va, float(p["C"]), k)}
        fits["rbf"] = _kernel(ctx, x_tr, y_tr, x_va, float(p["C"]), float(p["gamma"]), k)
        scores = {name: classification_metrics(y_va, fit["proba"], k) for name, fit in fits.items()}
        best = max(scores, key=lambda n: (scores[n]["accuracy"], -scores[n]["log_loss"]))
        acc = float(scores[best]["accuracy"])
        ctx.report(0, {"val_accuracy": acc, "val_loss": float(scores[best]["log_loss"])})
        fit = fits[best]
        kwargs = {"side": side, "channels": channels, "centres": int(fit.get("centres", 0))}
        model = timm.create_model(ARCH, num_classes=k, **kwargs)
        dim = model.mean.numel()
        with torch.no_grad():
            model.mean.fill_(mean)
            model.scale.fill_(scale)
            if kwargs["centres"]:
                model.centres.copy_(torch.as_tensor(fit["centres_x"]))
                model.gamma.fill_(fit["gamma"])
                model.whiten.copy_(torch.as_tensor(fit["whiten"]))
            model.head.weight.copy_(torch.as_tensor(fit["w"]))
            model.head.bias.copy_(torch.as_tensor(fit["b"]))
        return TrainOutcome(
            model=model.eval(),
            preprocessing={
                "resolution": side,
                "mean": (0.0, 0.0, 0.0),
                "std": (1.0, 1.0, 1.0),
                "crop_pct": 1.0,
                "interpolation": INTERPOLATION,
            },
            val_accuracy=acc,
            history=[{"val_accuracy": acc}],
            info={
                "model": best,
                "epochs_run": 1,
                "train_images": len(y_tr),
                "pixels": dim,
                **{f"{n}_val_accuracy": round(float(s["accuracy"]), 4) for n, s in scores.items()},
                "train_seconds": round(time.monotonic() - start, 2),
            },
            val_proba=fit["proba"],
            arch=ARCH,
            model_kwargs=kwargs,
        )


def _pixels(
    ctx: TrainContext, split: str, side: int, channels: int, limit: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """A split's images as (N, pixels) float32 in [0, 1] and their labels: all of them, or
    a random ``limit`` (the same for a seed), decoded in the fit's image cache."""
    x, y = ctx.images.split(split, side=side, interpolation=INTERPOLATION, crop=side)
    n = len(y)
    if limit is not None and n > limit:
        idx = np.sort(np.random.default_rng(ctx.seed).choice(n, limit, replace=False))
    else:
        idx = np.arange(n)
    images = x[torch.as_tensor(idx)].float() / 255.0
    if channels == 1:
        images = images.mean(dim=1, keepdim=True)
    return images.flatten(1).numpy(), y[torch.as_tensor(idx)].numpy()


def _linear(
    ctx: TrainContext, x: np.ndarray, y: np.ndarray, x_va: np.ndarray, C: float, k: int
) -> dict[str, Any]:
    w, b, _ = fit_linear_head(x, y, k, C=C, class_weights=ctx.class_weights)
    return {"w": w, "b": b, "proba": softmax((x_va @ w.T + b).astype(np.float64))}


@on_one_blas_thread
def _nystroem(centres: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Nyström's centres (in scikit-learn's order) and whitening ``K_cc^(-1/2)``."""
    from sklearn.kernel_approximation import Nystroem

    ny = Nystroem(kernel="rbf", gamma=gamma, n_components=len(centres), random_state=0)
    ny.fit(centres)
    return ny.components_.astype(np.float32), ny.normalization_.astype(np.float32)


def _kernel(
    ctx: TrainContext,
    x: np.ndarray,
    y: np.ndarray,
    x_va: np.ndarray,
    C: float,
    gamma: float,
    k: int,
) -> dict[str, Any]:
    m = min(len(y), MAX_CENTRES)
    pick = np.sort(np.random.default_rng(ctx.seed + 1).choice(len(y), m, replace=False))
    g = gamma / x.shape[1]  # per unit of squared distance between standardised vectors
    centres, whiten = _nystroem(x[pick], g)

    def features(v: np.ndarray) -> np.ndarray:
        d2 = (v * v).sum(1, keepdims=True) - 2.0 * v @ centres.T + (centres * centres).sum(1)
        return np.exp(-g * np.maximum(d2, 0.0)) @ whiten.T

    w, b, _ = fit_linear_head(features(x), y, k, C=C, class_weights=ctx.class_weights)
    proba = softmax((features(x_va) @ w.T + b).astype(np.float64))
    return {
        "w": w,
        "b": b,
        "proba": proba,
        "centres": m,
        "centres_x": centres,
        "gamma": g,
        "whiten": whiten,
    }
