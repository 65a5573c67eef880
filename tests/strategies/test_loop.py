"""The one training loop: schedules, best-epoch weights, early stopping, deadlines, OOM."""

from __future__ import annotations

import time

import pytest
import torch

from autotransfer.errors import TrainingDiverged
from autotransfer.strategies import loop
from autotransfer.strategies.models import new_classifier, preprocessing
from autotransfer.testing.strategies import make_train_context


def test_lr_factor_warmup_steps_and_cosine():
    step = loop.Schedule(epochs=10, warmup=0.1)
    assert loop.lr_factor(0.05, step) == pytest.approx(0.5)
    assert loop.lr_factor(0.2, step) == 1.0
    assert loop.lr_factor(0.31, step) == pytest.approx(0.1)
    assert loop.lr_factor(0.61, step) == pytest.approx(0.01)
    assert loop.lr_factor(0.95, step) == pytest.approx(0.001)
    cos = loop.Schedule(epochs=10, warmup=0.0, decay="cosine")
    assert loop.lr_factor(0.0, cos) == 1.0
    assert loop.lr_factor(0.5, cos) == pytest.approx(0.5)
    assert loop.lr_factor(1.0, cos) == pytest.approx(0.0, abs=1e-9)


def _build(ctx, lr=0.05):
    def build():
        model = new_classifier(ctx)
        return loop.Trainable(model, [{"params": list(model.parameters()), "lr": lr}])

    return build


def test_reports_every_epoch_and_keeps_the_best_epoch(dataset):
    reports = []
    ctx = make_train_context(dataset, {}, reports=reports)
    out = loop.train(ctx, _build(ctx), loop.Schedule(epochs=4), preprocessing(ctx))
    assert [e for e, _ in reports] == [0, 1, 2, 3]
    accs = [m["val_accuracy"] for _, m in reports]
    assert out.val_accuracy == max(accs)
    # ties in accuracy go to the lower validation loss
    tied = [e for e, m in reports if m["val_accuracy"] == max(accs)]
    assert out.info["best_epoch"] == min(tied, key=lambda e: reports[e][1]["val_loss"])
    assert out.info["epochs_run"] == 4 and not out.info["cut_by_deadline"]
    # the returned weights are the best epoch's: re-scoring them gives its accuracy
    x, y = ctx.images.split("val", side=int(32 / ctx.spec.crop_pct))
    from autotransfer.strategies.images import center_crop, normalize

    with torch.no_grad():
        p = out.model.eval()(
            normalize(
                center_crop(x, 32), ctx.spec.weights.mean, ctx.spec.weights.std, torch.device("cpu")
            )
        )
    assert float((p.argmax(1) == y).float().mean()) == pytest.approx(out.val_accuracy)


def test_early_stopping_stops_after_patience(dataset):
    reports = []
    ctx = make_train_context(dataset, {}, reports=reports)
    # a learning rate of zero never improves on epoch 0
    out = loop.train(
        ctx, _build(ctx, lr=0.0), loop.Schedule(epochs=20, patience=2), preprocessing(ctx)
    )
    assert out.info["epochs_run"] == 3


def test_deadline_shortens_the_schedule(dataset):
    ctx = make_train_context(dataset, {}, seconds=0.0)
    start = time.monotonic()
    out = loop.train(ctx, _build(ctx), loop.Schedule(epochs=50), preprocessing(ctx))
    assert out.info["epochs_run"] == 1
    assert out.info["cut_by_deadline"]
    assert time.monotonic() - start < 30


class _OOMAbove(torch.nn.Module):
    """Raises the error CUDA raises when a batch is larger than ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def forward(self, x):
        if x.shape[0] > self.limit and torch.is_grad_enabled():
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return x


def test_out_of_memory_retries_with_half_the_batch(dataset, caplog):
    ctx = make_train_context(dataset, {}, batch_size=16)
    builds = []

    def build():
        model = new_classifier(ctx)
        model.conv1 = torch.nn.Sequential(_OOMAbove(4), model.conv1)
        builds.append(model)
        return loop.Trainable(model, [{"params": list(model.parameters()), "lr": 0.01}])

    out = loop.train(ctx, build, loop.Schedule(epochs=1), preprocessing(ctx))
    assert out.info["batch_size"] == 4
    assert len(builds) == 3  # 16 -> 8 -> 4, each from fresh weights
    assert "Out of memory at batch size 16" in caplog.text


def test_out_of_memory_at_batch_one_fails(dataset):
    ctx = make_train_context(dataset, {}, batch_size=2)

    def build():
        model = new_classifier(ctx)
        model.conv1 = torch.nn.Sequential(_OOMAbove(0), model.conv1)
        return loop.Trainable(model, [{"params": list(model.parameters()), "lr": 0.01}])

    with pytest.raises(torch.OutOfMemoryError):
        loop.train(ctx, build, loop.Schedule(epochs=1), preprocessing(ctx))


def test_other_errors_are_not_retried(dataset):
    ctx = make_train_context(dataset, {})
    calls = []

    def build():
        calls.append(1)
        raise ValueError("broken strategy")

    with pytest.raises(ValueError, match="broken strategy"):
        loop.train(ctx, build, loop.Schedule(epochs=1), preprocessing(ctx))
    assert len(calls) == 1


class _NaNAfter(torch.nn.Module):
    """Passes its input through, then NaN from the ``after``-th training forward on: a
    model whose training blew up (eval-mode forwards before that stay finite)."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after, self.calls = after, 0

    def forward(self, x):
        if not self.training:
            return x
        self.calls += 1
        return x * float("nan") if self.calls > self.after else x


def _build_nan_after(ctx, after: int):
    def build():
        model = new_classifier(ctx)
        model.conv1 = torch.nn.Sequential(_NaNAfter(after), model.conv1)
        return loop.Trainable(model, [{"params": list(model.parameters()), "lr": 0.01}])

    return build


def test_a_diverged_first_epoch_fails_at_once_with_the_fix(dataset):
    reports = []
    ctx = make_train_context(dataset, {}, reports=reports)
    start = time.monotonic()
    with pytest.raises(TrainingDiverged, match="became nan by step .*Lower the learning rate"):
        loop.train(ctx, _build_nan_after(ctx, 0), loop.Schedule(epochs=50), preprocessing(ctx))
    assert reports == []  # stopped in its first epoch, not after fifty
    assert time.monotonic() - start < 30


def test_divergence_after_a_sound_epoch_keeps_that_epoch(dataset):
    reports = []
    ctx = make_train_context(dataset, {}, reports=reports)
    steps_per_epoch = -(-len(dataset.train) // ctx.batch_size)
    out = loop.train(
        ctx, _build_nan_after(ctx, steps_per_epoch), loop.Schedule(epochs=50), preprocessing(ctx)
    )
    assert [e for e, _ in reports] == [0]
    assert out.info["best_epoch"] == 0 and out.info["epochs_run"] == 1
    assert "diverged" in out.info["diverged"] and "epoch 1" in out.info["diverged"]
    x, _ = ctx.images.split("val", side=int(32 / ctx.spec.crop_pct))
    from autotransfer.strategies.images import center_crop, normalize

    with torch.no_grad():  # the kept weights are finite
        p = out.model.eval()(
            normalize(
                center_crop(x, 32), ctx.spec.weights.mean, ctx.spec.weights.std, torch.device("cpu")
            )
        )
    assert torch.isfinite(p).all()
