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
CHUNK = 1_000  # images decoded at a time
DECODE_SHARE = 0.4  # of the trial's time left, the most that decoding training images takes


def default_side(search: SearchContext) -> int:
    """16 px, or 8 for smaller images: of 8, 16, 24 and 32 px, 16 was best or tied on
    the digits, notMNIST letters and Fashion-MNIST (an RBF kernel on more pixels
    weighs noise as much as shape).

    >>> default_side(SearchContext(500, 10, 28.0, None, "cpu", 32))
    16
    >>> default_side(SearchContext(500, 10, 12.0, None, "cpu", 32))
    8
    """
    return 16 if search.median_side >= 16 else 8


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
            "gamma": space.suggest_float("gamma", 0.25, 16.0, log=True),
        }

    def defaults(self, *, search: SearchContext) -> dict[str, Any]:
        # the kernel's width: gamma 4 / the median squared distance between two images.
        # Of 0.5, 1, 2 and 4 (C 10), 4 was best or tied on the digits (0.992), notMNIST
        # letters (0.892) and 2,400 Fashion-MNIST images (0.862)
        return {"side": default_side(search), "C": 10.0, "gamma": 4.0}

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
    """A split's images as (N, pixels) float32 in [0, 1] and their labels, decoded in the
    fit's image cache: all of them, or a random ``limit`` (the same for a seed) read in
    chunks until :data:`DECODE_SHARE` of the trial's time is spent (never fewer than
    one chunk)."""
    x, y = ctx.images.split(split, side=side, interpolation=INTERPOLATION, crop=side)
    n = len(y)
    order = np.arange(n)
    if limit is not None and n > limit:
        order = np.random.default_rng(ctx.seed).permutation(n)[:limit]
    stop = None
    if limit is not None and ctx.deadline is not None:
        stop = time.monotonic() + DECODE_SHARE * max(0.0, ctx.deadline - time.monotonic())
    parts = []
    for i in range(0, len(order), CHUNK):
        idx = torch.as_tensor(np.sort(order[i : i + CHUNK]))
        images = x[idx].float() / 255.0
        if channels == 1:
            images = images.mean(dim=1, keepdim=True)
        parts.append((images.flatten(1).numpy(), y[idx].numpy()))
        if stop is not None and time.monotonic() > stop:
            ctx.log.info(
                "raw pixels: %d of the %d %s images read within the trial's time",
                sum(len(p[1]) for p in parts),
                n,
                split,
            )
            break
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


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


def median_sq_distance(x: np.ndarray, seed: int, pairs: int = 2000) -> float:
    """The median squared distance between two of the rows of ``x`` (a sample of pairs):
    the kernel's width is set in its units (the median heuristic), so the default suits
    images of any size and texture.

    >>> median_sq_distance(np.array([[0.0], [1.0], [3.0]]), 0) in (1.0, 4.0, 9.0)
    True
    """
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(x), pairs), rng.integers(0, len(x), pairs)
    keep = i != j
    d2 = ((x[i[keep]] - x[j[keep]]) ** 2).sum(1)
    return float(np.median(d2)) if d2.size else 1.0


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
    g = gamma / median_sq_distance(x, ctx.seed)
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
