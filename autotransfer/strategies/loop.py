"""The one training loop every fine-tuning strategy uses.

Strategies say what to train (a :class:`Trainable`: the model, its optimiser parameter
groups with their learning rates, and the modules whose BatchNorm statistics stay
frozen) and how (a :class:`Schedule`). The loop does the rest: batches from the
decoded-image cache with augmentation, class weights, MixUp, warm-up and decay of the
learning rate as a function of progress, an evaluation and a ``report`` after every
epoch (which may prune the trial), early stopping, keeping the best epoch's weights,
fitting the schedule into the trial's deadline, bf16 autocast and channels_last on
CUDA, a retry with half the batch after a CUDA out-of-memory error, and stopping a
trial whose loss becomes NaN or infinite (a learning rate too high for the backbone)
within a few steps instead of at the end of its time.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from autotransfer.backbones.features import resize_side
from autotransfer.errors import TrainingDiverged
from autotransfer.preprocessing import Preprocessing
from autotransfer.strategies.base import TrainContext, TrainOutcome
from autotransfer.strategies.images import augment_batch, center_crop, normalize

CHECK_EVERY = 10  # steps between checks that the loss is finite (one host sync each)


@dataclass
class Trainable:
    """A model ready to train: ``param_groups`` as for ``torch.optim`` (each with its
    ``lr``); ``frozen`` modules keep their BatchNorm statistics (eval mode) in training."""

    model: torch.nn.Module
    param_groups: list[dict]
    frozen: Sequence[torch.nn.Module] = field(default_factory=tuple)


@dataclass(frozen=True)
class Schedule:
    """How long and how: ``decay`` is ``step`` (BiT: x0.1 at 30, 60 and 90 %) or ``cosine``."""

    epochs: int
    optimizer: str = "sgd"  # "sgd" (momentum 0.9) or "adamw"
    weight_decay: float = 0.0
    warmup: float = 0.05  # share of the steps spent warming up linearly
    decay: str = "step"
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    patience: int | None = None  # stop after this many epochs without a better val accuracy


def lr_factor(progress: float, schedule: Schedule) -> float:
    """The learning-rate multiplier at ``progress`` (0..1) of the schedule.

    >>> lr_factor(0.5, Schedule(epochs=10, warmup=0.0))
    0.1
    """
    if schedule.warmup > 0 and progress < schedule.warmup:
        return max(progress / schedule.warmup, 1e-3)
    if schedule.decay == "cosine":
        p = (progress - schedule.warmup) / max(1e-9, 1 - schedule.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, p)))
    return 0.1 ** sum(progress >= b for b in (0.3, 0.6, 0.9))


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA (or other accelerator) out-of-memory error."""
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def train(
    ctx: TrainContext,
    build: Callable[[], Trainable],
    schedule: Schedule,
    preprocessing: dict,
) -> TrainOutcome:
    """Train what ``build`` returns; on out-of-memory rebuild and retry with half the batch.

    ``preprocessing`` (resolution, mean, std, crop_pct, interpolation) says how the
    model is fed; images come from ``ctx.images`` at ``resolution / crop_pct``.
    """
    batch = ctx.batch_size
    while True:
        try:
            out = _train_once(ctx, build(), schedule, preprocessing, batch)
            out.info["batch_size"] = batch
            return out
        except Exception as exc:
            if not is_out_of_memory(exc) or batch <= 1:
                raise
            if ctx.device.type == "cuda":
                torch.cuda.empty_cache()
            ctx.log.warning("Out of memory at batch size %d; retrying with %d.", batch, batch // 2)
            batch //= 2


def _train_once(
    ctx: TrainContext, t: Trainable, schedule: Schedule, prep: dict, batch: int
) -> TrainOutcome:
    dev, cuda = ctx.device, ctx.device.type == "cuda"
    # the model's own preprocessing gives the resize side and interpolation, as predict
    # takes them: validation sees exactly what predict gives the trained model
    pp = Preprocessing.from_dict(prep)
    res, side, interp = pp.resolution, resize_side(pp.timm_config()), pp.interpolation
    x_tr, y_tr = ctx.images.split("train", side=side, interpolation=interp)
    x_va, y_va = ctx.images.split("val", side=side, interpolation=interp, crop=res)
    gen = torch.Generator().manual_seed(ctx.seed)
    model = t.model.to(dev)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    if schedule.optimizer == "adamw":
        opt = torch.optim.AdamW(t.param_groups, weight_decay=schedule.weight_decay)
    else:
        opt = torch.optim.SGD(
            t.param_groups, momentum=0.9, weight_decay=schedule.weight_decay, nesterov=True
        )
    base_lrs = [g["lr"] for g in opt.param_groups]
    weight = None if ctx.class_weights is None else torch.as_tensor(ctx.class_weights).float()
    loss_fn = torch.nn.CrossEntropyLoss(
        weight=None if weight is None else weight.to(dev), label_smoothing=schedule.label_smoothing
    )
    n = len(y_tr)
    # the last partial batch is dropped when it would hold a single image (BatchNorm)
    steps_per_epoch = max(1, math.ceil(n / batch) - (1 if n % batch == 1 and n > 1 else 0))
    planned = max(1, int(schedule.epochs))
    total_steps = planned * steps_per_epoch
    step, best_acc, best_loss, best_state, best_epoch = 0, -1.0, float("inf"), None, -1
    history: list[dict[str, float]] = []
    cut_short, diverged, start = False, "", time.monotonic()

    epoch = -1
    while epoch + 1 < planned:
        epoch += 1
        epoch_start = time.monotonic()
        model.train()
        for m in t.frozen:
            m.eval()
        perm = torch.randperm(n, generator=gen)
        running, seen = torch.zeros((), device=dev), 0
        for b in range(steps_per_epoch):
            idx = perm[b * batch : (b + 1) * batch]
            # uint8 to the device first (4x less to copy than floats), augmented there
            x = augment_batch(x_tr[idx].to(dev, non_blocking=True), res, ctx.augment, gen)
            x = normalize(x, prep["mean"], prep["std"], dev)
            y = y_tr[idx].to(dev)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            f = lr_factor(step / total_steps, schedule)
            for g, lr in zip(opt.param_groups, base_lrs):
                g["lr"] = lr * f
            with torch.autocast("cuda", torch.bfloat16, enabled=cuda):
                if schedule.mixup_alpha > 0:
                    lam = float(
                        np.random.default_rng(ctx.seed + step).beta(
                            schedule.mixup_alpha, schedule.mixup_alpha
                        )
                    )
                    j = torch.randperm(len(y), generator=gen).to(dev)
                    out = model(lam * x + (1 - lam) * x[j])
                    loss = lam * loss_fn(out, y) + (1 - lam) * loss_fn(out, y[j])
                else:
                    loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            running += loss.detach().float() * len(y)  # no host sync per step
            seen += len(y)
            if step % CHECK_EVERY == 0 and not bool(torch.isfinite(running)):
                break
            if ctx.deadline is not None and time.monotonic() > ctx.deadline:
                cut_short = True
                break
        train_loss = float(running) / max(1, seen)
        if not math.isfinite(train_loss):
            diverged = _diverged("training", train_loss, step, epoch, base_lrs, bool(t.frozen))
            break
        val = _evaluate(model, x_va, y_va, prep, res, dev, batch)
        if not math.isfinite(val["val_loss"]):
            diverged = _diverged(
                "validation", val["val_loss"], step, epoch, base_lrs, bool(t.frozen)
            )
            break
        metrics = {"train_loss": train_loss, **val, "lr": base_lrs[-1] * f}
        history.append(metrics)
        if val["val_accuracy"] > best_acc or (
            val["val_accuracy"] == best_acc and val["val_loss"] < best_loss
        ):
            best_acc, best_loss, best_epoch = val["val_accuracy"], val["val_loss"], epoch
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        ctx.report(epoch, metrics)
        if cut_short:
            break
        if schedule.patience is not None and epoch - best_epoch >= schedule.patience:
            break
        planned, total_steps = _fit_to_deadline(
            ctx.deadline, epoch, planned, epoch_start, steps_per_epoch, total_steps
        )

    if diverged:
        if best_state is None:
            raise TrainingDiverged(diverged)
        ctx.log.warning("%s Keeping epoch %d, the best before it.", diverged, best_epoch)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainOutcome(
        model=copy.deepcopy(model).to("cpu") if cuda else model,
        preprocessing=dict(prep),
        val_accuracy=best_acc,
        history=history,
        info={
            "epochs_run": len(history),
            "epochs_planned": int(schedule.epochs),
            "best_epoch": best_epoch,
            "cut_by_deadline": cut_short or planned < schedule.epochs,
            "train_seconds": round(time.monotonic() - start, 2),
            **({"diverged": diverged} if diverged else {}),
        },
    )


def _diverged(
    what: str, value: float, step: int, epoch: int, lrs: list[float], frozen_bn: bool
) -> str:
    """The message of a loss gone NaN or infinite: where, at what rate, what to change."""
    rates = ", ".join(f"{lr:g}" for lr in sorted(set(lrs)))
    hint = "Lower the learning rate"
    if frozen_bn:  # eval-mode BatchNorm under trained convolutions amplifies their updates
        hint += " or let BatchNorm use batch statistics (full_finetune's freeze_bn=False)"
    return (
        f"The {what} loss became {value} by step {step} (epoch {epoch}): training diverged "
        f"at learning rate {rates}. {hint}."
    )


def _fit_to_deadline(
    deadline: float | None,
    epoch: int,
    planned: int,
    epoch_start: float,
    steps_per_epoch: int,
    total_steps: int,
) -> tuple[int, int]:
    """Shorten the plan (and so compress the schedule) when the epochs left do not fit."""
    if deadline is None:
        return planned, total_steps
    per_epoch = time.monotonic() - epoch_start
    left = max(0.0, deadline - time.monotonic())
    affordable = int(left // max(per_epoch, 1e-6))
    if epoch + 1 + affordable < planned:
        planned = epoch + 1 + affordable
        total_steps = planned * steps_per_epoch
    return planned, total_steps


@torch.no_grad()
def _evaluate(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    prep: dict,
    res: int,
    dev: torch.device,
    batch: int,
) -> dict[str, float]:
    model.eval()
    cuda = dev.type == "cuda"
    logits = []
    for i in range(0, len(y), max(batch, 32)):
        xb = normalize(center_crop(x[i : i + max(batch, 32)], res), prep["mean"], prep["std"], dev)
        if cuda:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", torch.bfloat16, enabled=cuda):
            logits.append(model(xb).float().cpu())
    out = torch.cat(logits)
    loss = float(torch.nn.functional.cross_entropy(out, y))
    acc = float((out.argmax(1) == y).float().mean())
    return {"val_accuracy": acc, "val_loss": loss}
