"""The one training loop: schedules, best-evaluation weights, early stopping, deadlines,
OOM; reports every few steps when an epoch is long."""

from __future__ import annotations

import time

import optuna
import pytest
import torch

from autotransfer.api import open_folder
from autotransfer.errors import ConfigError, TooFewSteps, TrainingDiverged
from autotransfer.strategies import loop
from autotransfer.strategies.models import new_classifier, preprocessing
from autotransfer.testing.images import make_image_folder
from autotransfer.testing.strategies import make_train_context


@pytest.fixture
def long_epochs(tmp_path):
    """96 training images: at batch 2 an epoch is 48 steps, more than ``MIN_EVAL_EVERY``."""
    root = make_image_folder(tmp_path / "long", classes=("a", "b", "c"), per_class=40)
    return open_folder(root, progress=False)


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
    # an epoch of 3 steps is short: one evaluation an epoch, as the schedule in epochs was
    steps_per_epoch = -(-len(dataset.train) // ctx.batch_size)
    assert [m["step"] for _, m in reports] == [steps_per_epoch * (e + 1) for e in range(4)]
    assert [m["epoch"] for _, m in reports] == [1.0, 2.0, 3.0, 4.0]
    assert out.info["eval_every"] == steps_per_epoch
    assert out.info["steps_run"] == out.info["steps_planned"] == 4 * steps_per_epoch
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


def test_a_schedule_takes_steps_or_epochs():
    assert loop.Schedule(steps=250).total_steps(100) == 250
    assert loop.Schedule(epochs=3).total_steps(100) == 300
    for wrong in ({}, {"steps": 10, "epochs": 1}):
        with pytest.raises(ConfigError, match="steps or as epochs"):
            loop.Schedule(**wrong)


def test_eval_every_is_an_epoch_when_short_else_a_share_of_the_schedule():
    assert loop.eval_every(total_steps=40, steps_per_epoch=3) == 3
    assert loop.eval_every(total_steps=4500, steps_per_epoch=1500) == 4500 // loop.REPORTS
    assert loop.eval_every(total_steps=60, steps_per_epoch=1500) == loop.MIN_EVAL_EVERY


def test_reports_every_k_steps_inside_a_long_epoch(long_epochs):
    reports = []
    ctx = make_train_context(long_epochs, {}, batch_size=2, reports=reports)
    out = loop.train(ctx, _build(ctx), loop.Schedule(steps=60), preprocessing(ctx))
    k = loop.MIN_EVAL_EVERY  # 60 // REPORTS is fewer steps than that
    assert [e for e, _ in reports] == [0, 1, 2]  # what optuna takes as the step
    assert [m["step"] for _, m in reports] == [k, 2 * k, 60]  # and one at the end
    assert reports[0][1]["epoch"] == pytest.approx(k / 48)  # before the first epoch ended
    assert out.info["eval_every"] == k and out.info["steps_run"] == 60
    assert out.info["epochs_run"] == 2 and out.info["epochs_planned"] == pytest.approx(60 / 48)
    best = max(range(3), key=lambda i: (reports[i][1]["val_accuracy"], -reports[i][1]["val_loss"]))
    assert out.info["best_step"] == reports[best][1]["step"]
    assert out.info["best_epoch"] == (out.info["best_step"] - 1) // 48


class _Counting(torch.nn.Module):
    """Counts the training forwards (one per optimiser step)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += int(self.training)
        return x


def test_a_pruned_report_inside_the_first_epoch_stops_training(long_epochs):
    ctx = make_train_context(long_epochs, {}, batch_size=2)
    counter, reported = _Counting(), []

    def prune(index, metrics):
        reported.append((index, dict(metrics)))
        raise optuna.TrialPruned(f"pruned after report {index}")

    ctx.report = prune

    def build():
        model = new_classifier(ctx)
        model.conv1 = torch.nn.Sequential(counter, model.conv1)
        return loop.Trainable(model, [{"params": list(model.parameters()), "lr": 0.05}])

    with pytest.raises(optuna.TrialPruned):
        loop.train(ctx, build, loop.Schedule(epochs=5), preprocessing(ctx))
    assert [i for i, _ in reported] == [0]
    assert reported[0][1]["step"] == counter.calls < 48  # one evaluation into the first epoch


def test_a_deadline_cut_still_evaluates_and_returns_a_model(long_epochs):
    reports = []
    ctx = make_train_context(long_epochs, {}, batch_size=2, seconds=0.0, reports=reports)
    out = loop.train(ctx, _build(ctx), loop.Schedule(steps=10_000), preprocessing(ctx))
    assert [(e, m["step"]) for e, m in reports] == [(0, 1)]
    assert out.info["cut_by_deadline"] and out.info["steps_run"] == 1
    assert out.val_accuracy == reports[0][1]["val_accuracy"]
    with torch.no_grad():
        assert out.model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 3)


class _Clock:
    """``time.monotonic`` for the loop, 10 ms later at each call: a steady, known pace."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 0.01
        return self.now


@pytest.mark.parametrize("decay", ["step", "cosine"])
def test_a_deadline_compresses_the_schedule_which_still_decays(long_epochs, decay, monkeypatch):
    reports, clock = [], _Clock()
    ctx = make_train_context(long_epochs, {}, batch_size=2, reports=reports)
    monkeypatch.setattr(loop, "time", clock)
    ctx.deadline = clock.now + 1.0  # about 70 steps at this pace
    schedule = loop.Schedule(steps=100_000, decay=decay)
    out = loop.train(ctx, _build(ctx, lr=0.05), schedule, preprocessing(ctx))
    assert clock.now <= ctx.deadline  # the re-planned schedule ended in time...
    assert out.info["cut_by_deadline"] and out.info["steps_run"] < 100_000
    # ...and ran to its end: reports every K steps, the last at the last step, at the end
    # of the decay (step: x0.001 after 90 %; cosine: near zero)
    assert len(reports) >= 3 and reports[-1][1]["step"] == out.info["steps_run"]
    last_lr = reports[-1][1]["lr"]
    if decay == "step":
        assert last_lr == pytest.approx(0.05 * 0.001)
    else:
        assert last_lr < 0.05 * 0.01


def test_a_deadline_that_leaves_too_few_steps_skips_the_trial(long_epochs, monkeypatch):
    clock = _Clock()
    ctx = make_train_context(long_epochs, {}, batch_size=2)
    monkeypatch.setattr(loop, "time", clock)
    ctx.deadline = clock.now + 1.0  # about 70 steps at this pace
    ctx.skip_doomed = True
    # 100,000 steps compressed into 70: raised on the first look at the pace, not trained
    with pytest.raises(TooFewSteps, match=r"only \d+ of its 100000 steps fit") as raised:
        loop.train(ctx, _build(ctx), loop.Schedule(steps=100_000), preprocessing(ctx))
    assert raised.value.step_seconds > 0
    # a schedule of 200 steps needs 50 (a quarter) and an epoch (48): 70 fit, it trains
    ctx.deadline = clock.now + 1.0
    out = loop.train(ctx, _build(ctx), loop.Schedule(steps=200), preprocessing(ctx))
    assert out.info["cut_by_deadline"] and 50 <= out.info["steps_run"] < 200
    assert out.info["step_seconds"] > 0
    # the search's first trial must give a model: not skipped, however few steps fit
    ctx.deadline, ctx.skip_doomed = clock.now + 1.0, False
    out = loop.train(ctx, _build(ctx), loop.Schedule(steps=100_000), preprocessing(ctx))
    assert out.info["cut_by_deadline"] and out.info["steps_run"] < 100


def test_a_warm_head_trains_the_head_alone_then_every_layer(dataset):
    ctx = make_train_context(dataset, {})
    built = []

    def build():
        model = new_classifier(ctx)
        ids = {id(p) for p in model.get_classifier().parameters()}
        body = [p for p in model.parameters() if id(p) not in ids]
        head = [p for p in model.parameters() if id(p) in ids]
        built.append([(p, p.detach().clone()) for p in body + head])
        groups = [{"params": body, "lr": 0.05}, {"params": head, "lr": 0.05}]  # the head last
        return loop.Trainable(model, groups)

    def moved():
        return [not torch.equal(p, before) for p, before in built[-1]]

    # every step inside the warm-head share: the body never moves, the head does
    warm = loop.Schedule(steps=4, warm_head=0.99, decay="one_cycle", optimizer="adamw")
    out = loop.train(ctx, build, warm, preprocessing(ctx))
    *body, weight, bias = moved()
    assert out.info["steps_run"] == 4 and weight and bias and not any(body)
    assert all(p.requires_grad for p, _ in built[-1])  # trainable again afterwards
    # a quarter of the steps warm: then the body trains too
    half = loop.Schedule(steps=8, warm_head=0.25, decay="one_cycle", optimizer="adamw")
    loop.train(ctx, build, half, preprocessing(ctx))
    assert all(moved()[-2:]) and any(moved()[:-2])


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


def _build_oom_above(ctx, limit, builds=None):
    """A strategy's ``build``: a fresh classifier whose first layer runs out of memory on a
    batch of more than ``limit`` images; each model built is added to ``builds``."""

    def build():
        model = new_classifier(ctx)
        model.conv1 = torch.nn.Sequential(_OOMAbove(limit), model.conv1)
        if builds is not None:
            builds.append(model)
        return loop.Trainable(model, [{"params": list(model.parameters()), "lr": 0.01}])

    return build


def test_out_of_memory_retries_with_half_the_batch(dataset, caplog):
    ctx = make_train_context(dataset, {}, batch_size=16)
    builds = []
    build = _build_oom_above(ctx, 4, builds)
    out = loop.train(ctx, build, loop.Schedule(epochs=1), preprocessing(ctx))
    assert out.info["batch_size"] == 4
    assert len(builds) == 3  # 16 -> 8 -> 4, each from fresh weights
    assert "Out of memory at batch size 16" in caplog.text


def test_a_length_in_steps_sees_the_same_images_at_half_the_batch(dataset):
    ctx = make_train_context(dataset, {}, batch_size=16)
    build = _build_oom_above(ctx, 8)
    out = loop.train(ctx, build, loop.Schedule(steps=3), preprocessing(ctx))
    assert out.info["batch_size"] == 8 and out.info["steps_run"] == 6


def test_out_of_memory_at_batch_one_fails(dataset):
    ctx = make_train_context(dataset, {}, batch_size=2)
    build = _build_oom_above(ctx, 0)
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
