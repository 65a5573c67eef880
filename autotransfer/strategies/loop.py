"""The one training loop every fine-tuning strategy uses.

Strategies say what to train (a :class:`Trainable`: the model, its optimiser parameter
groups with their learning rates, and the modules whose BatchNorm statistics stay
frozen) and how (a :class:`Schedule`). The loop does the rest: batches from the
decoded-image cache with augmentation, class weights, MixUp, warm-up and decay of the
learning rate as a function of progress, an evaluation and a ``report`` (which may prune
the trial) every few steps and at the end, early stopping, keeping the best evaluation's
weights, fitting the schedule into the trial's deadline, bf16 autocast and channels_last
on CUDA, a retry with half the batch after a CUDA out-of-memory error, and stopping a
trial whose loss becomes NaN or infinite (a learning rate too high for the backbone)
within a few steps instead of at the end of its time.

A trial whose deadline leaves it fewer steps than its schedule is worth
(:func:`~autotransfer.strategies.schedules.useful_steps`) is not trained on a schedule
compressed past use: the loop measures its pace on its first steps and raises
:class:`~autotransfer.errors.TooFewSteps` (the search then skips it, says why, and gives
its time to the other trials). A schedule may start with a warm head (``warm_head``,
fastai's frozen epoch): the last parameter group alone trains for that share of the
steps, then every group.

Everything is counted in optimiser steps, so that a trial on 50,000 images, whose
first epoch may outlast its share of the time budget, reports, prunes and stops early
as one on 500 does. It evaluates every epoch when an epoch is short (as it always
did), else about ``REPORTS`` times a schedule; ``report(i, metrics)`` numbers the
evaluations 0, 1, 2, ... (what Optuna's pruners compare across trials; the metrics
say at which ``step`` and ``epoch`` each came). On a deadline the loop re-plans the
schedule's length from its measured pace, so that warm-up and decay still run to the
end before it.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from autotransfer.backbones.inputs import resize_side
from autotransfer.errors import TooFewSteps, TrainingDiverged
from autotransfer.preprocessing import Preprocessing
from autotransfer.strategies.base import TrainContext, TrainOutcome
from autotransfer.strategies.images import augment_batch, center_crop, normalize
from autotransfer.strategies.schedules import Schedule, doomed, lr_factor

CHECK_EVERY = 10  # steps between checks that the loss is finite and the plan fits (a sync)
REPORTS = 8  # evaluations a schedule gets when its epochs are long
MIN_EVAL_EVERY = 25  # fewest steps between two evaluations, unless an epoch is shorter


@dataclass
class Trainable:
    """A model ready to train: ``param_groups`` as for ``torch.optim`` (each with its
    ``lr``), the head's last (it trains alone through a schedule's ``warm_head``);
    ``frozen`` modules keep their BatchNorm statistics (eval mode) in training."""

    model: torch.nn.Module
    param_groups: list[dict]
    frozen: Sequence[torch.nn.Module] = field(default_factory=tuple)


def eval_every(total_steps: int, steps_per_epoch: int) -> int:
    """Steps between evaluations: an epoch where that is short, else about ``REPORTS``
    per schedule but never fewer than ``MIN_EVAL_EVERY`` steps.

    >>> eval_every(300, 10), eval_every(4500, 1500), eval_every(100, 1500)
    (10, 562, 25)
    """
    return max(1, min(steps_per_epoch, max(MIN_EVAL_EVERY, total_steps // REPORTS)))


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
    model is fed; images come from ``ctx.images`` at ``resolution / crop_pct``. Raises
    :class:`~autotransfer.errors.TooFewSteps` when the deadline leaves fewer than
    :func:`~autotransfer.strategies.schedules.useful_steps` (unless ``ctx.skip_doomed`` is False).
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
    planned = total = schedule.total_steps(steps_per_epoch, ctx.batch_size / batch)
    every = eval_every(total, steps_per_epoch)
    # a warm head: the other groups wait, frozen, for the head's share of the steps
    body = [p for g in opt.param_groups[:-1] for p in g["params"]] if schedule.warm_head else []
    for p in body:
        p.requires_grad_(False)
    best_acc, best_loss, best_state, best_eval, best_step = -1.0, float("inf"), None, -1, 0
    best_logits: torch.Tensor | None = None  # the best evaluation's, for the trial's score
    history: list[dict[str, float]] = []
    cut_short, diverged, start = False, "", time.monotonic()
    # the pace: seconds from the end of the first step (its warm-up not counted), less
    # the time spent evaluating; an evaluation's cost is guessed until one is measured
    paced_from, evals_s, eval_s = start, 0.0, None
    frozen_bn = bool(t.frozen)

    step, last_eval, f = 0, 0, 1.0
    running, seen = torch.zeros((), device=dev), 0
    model.train()
    for m in t.frozen:
        m.eval()
    while step < total:
        b = step % steps_per_epoch
        if b == 0:
            perm = torch.randperm(n, generator=gen)
        if body and step >= schedule.warm_head * total:  # the head is warm: train them all
            for p in body:
                p.requires_grad_(True)
            body = []
        idx = perm[b * batch : (b + 1) * batch]
        # uint8 to the device first (4x less to copy than floats), augmented there
        x = augment_batch(x_tr[idx].to(dev, non_blocking=True), res, ctx.augment, gen)
        x = normalize(x, prep["mean"], prep["std"], dev)
        y = y_tr[idx].to(dev)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        f = lr_factor(step / total, schedule)
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
        if step == 1:
            paced_from = time.monotonic()
        if ctx.deadline is not None and time.monotonic() > ctx.deadline:
            cut_short = True
        due = cut_short or step >= total or step - last_eval >= every
        if not due and step % CHECK_EVERY:
            continue

        epoch = (step - 1) // steps_per_epoch  # the epoch of the last step, from 0
        if not bool(torch.isfinite(running)):
            diverged = _diverged("training", float(running), step, epoch, base_lrs, frozen_bn)
            break
        if cut_short and ctx.skip_doomed:  # the deadline came first: were there enough?
            pace = (time.monotonic() - paced_from - evals_s) / max(1, step - 1)
            if why := doomed(step, planned, steps_per_epoch, pace):
                raise TooFewSteps(why, pace)
        if ctx.deadline is not None and not cut_short:  # re-plan: does the rest still fit?
            step_s = (time.monotonic() - paced_from - evals_s) / max(1, step - 1)
            if eval_s is None:  # a forward pass per batch, a third of a step; half, to be safe
                eval_s = step_s * len(y_va) / batch / 2
            total = _fit_to_deadline(ctx.deadline, step, total, step_s, eval_s, every)
            if ctx.skip_doomed and (why := doomed(total, planned, steps_per_epoch, step_s)):
                raise TooFewSteps(why, step_s)
            every = eval_every(total, steps_per_epoch)
            due = step >= total or step - last_eval >= every
        if not due:
            continue

        eval_start = time.monotonic()
        val, val_logits = _evaluate(model, x_va, y_va, prep, res, dev, batch)
        eval_s = time.monotonic() - eval_start
        evals_s += eval_s
        if not math.isfinite(val["val_loss"]):
            diverged = _diverged("validation", val["val_loss"], step, epoch, base_lrs, frozen_bn)
            break
        metrics = {
            "train_loss": float(running) / max(1, seen),
            **val,
            "lr": base_lrs[-1] * f,
            "step": step,
            "epoch": step / steps_per_epoch,
        }
        history.append(metrics)
        if val["val_accuracy"] > best_acc or (
            val["val_accuracy"] == best_acc and val["val_loss"] < best_loss
        ):
            best_acc, best_loss = val["val_accuracy"], val["val_loss"]
            best_eval, best_step = len(history) - 1, step
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            best_logits = val_logits
        ctx.report(len(history) - 1, metrics)
        if cut_short:
            break
        if schedule.patience is not None and len(history) - 1 - best_eval >= schedule.patience:
            break
        model.train()
        for m in t.frozen:
            m.eval()
        running, seen, last_eval = torch.zeros((), device=dev), 0, step

    for p in body:  # cut short while the head was warming
        p.requires_grad_(True)
    if diverged:
        if best_state is None:
            raise TrainingDiverged(diverged)
        ctx.log.warning("%s Keeping step %d, the best before it.", diverged, best_step)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainOutcome(
        model=copy.deepcopy(model).to("cpu") if cuda else model,
        preprocessing=dict(prep),
        val_accuracy=best_acc,
        history=history,
        info={
            # epochs (the last one perhaps partial) up to the last evaluation
            "epochs_run": math.ceil(history[-1]["step"] / steps_per_epoch) if history else 0,
            "epochs_planned": round(planned / steps_per_epoch, 2),
            "best_epoch": (best_step - 1) // steps_per_epoch if history else -1,
            "steps_run": step,
            "steps_planned": planned,
            "best_step": best_step,
            # seconds a step took (after the first), evaluations left out
            "step_seconds": round((time.monotonic() - paced_from - evals_s) / max(1, step - 1), 4),
            "eval_every": every,
            "cut_by_deadline": cut_short or total < planned,
            "train_seconds": round(time.monotonic() - start, 2),
            **({"diverged": diverged} if diverged else {}),
        },
        val_proba=None if best_logits is None else torch.softmax(best_logits.double(), 1).numpy(),
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
    deadline: float, step: int, total: int, step_s: float, eval_s: float, every: int
) -> int:
    """The total steps that fit before ``deadline`` at ``step_s`` seconds a step and an
    evaluation of ``eval_s`` every ``every`` steps and at the end: ``total``, or fewer (so
    warm-up and decay compress into the time left), down to ``step`` (stop now).

    >>> _fit_to_deadline(time.monotonic() + 11.1, 10, 1000, 0.1, 1.0, 10)  # 10.1 s: 50 steps
    60
    """
    left = deadline - time.monotonic() - eval_s
    affordable = int(max(0.0, left) / (step_s + eval_s / every))
    return max(step, min(total, step + affordable))


@torch.no_grad()
def _evaluate(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    prep: dict,
    res: int,
    dev: torch.device,
    batch: int,
) -> tuple[dict[str, float], torch.Tensor]:
    """Validation accuracy and loss, and the logits (float32, on the CPU)."""
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
    return {"val_accuracy": acc, "val_loss": loss}, out
