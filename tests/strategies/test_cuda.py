"""The CUDA paths of the training loop, on a real GPU: bf16 autocast and channels_last in
training, a real out-of-memory error answered by the smaller-batch retry, and a whole fit
on the default device. Skipped where there is no GPU (CI has none; the benchmarks'
results say which GPU session ran them)."""

from __future__ import annotations

import logging

import pytest
import torch

import autotransfer
from autotransfer.api import open_folder
from autotransfer.config import DataSettings
from autotransfer.strategies import loop
from autotransfer.strategies.full_finetune import FullFinetune
from autotransfer.strategies.models import new_classifier, preprocessing
from autotransfer.testing.images import make_image_folder
from autotransfer.testing.strategies import make_train_context

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_training_runs_in_bf16_autocast_on_channels_last_batches(dataset):
    seen: list[tuple[bool, bool]] = []
    ctx = make_train_context(dataset, {}, resolution=64, batch_size=8, device="cuda")

    def build() -> loop.Trainable:
        model = new_classifier(ctx)
        model.register_forward_pre_hook(
            lambda _m, args: seen.append(
                (
                    torch.is_autocast_enabled("cuda"),
                    args[0].is_contiguous(memory_format=torch.channels_last),
                )
            )
        )
        return loop.Trainable(model, [{"params": list(model.parameters()), "lr": 0.01}])

    out = loop.train(ctx, build, loop.Schedule(epochs=2), preprocessing(ctx))
    assert seen and all(autocast and channels_last for autocast, channels_last in seen)
    assert next(out.model.parameters()).device.type == "cpu"  # handed back on the CPU
    assert out.info["batch_size"] == 8 and len(out.history) == 2


def test_a_real_out_of_memory_error_is_retried_with_half_the_batch(tmp_path, caplog):
    root = make_image_folder(
        tmp_path / "data", classes=("a", "b"), per_class=300, splits=("train",)
    )
    ds = open_folder(root, DataSettings(val_fraction=0.1), progress=False)
    ctx = make_train_context(
        ds,
        {"epochs": 1, "mixup_alpha": 0.0},
        backbone="random:resnet18",
        resolution=224,
        batch_size=512,
        device="cuda",
    )
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info()
    # about 1.5 GiB for this process: resnet18 at 224 px needs ~4 GiB for a batch of 512
    torch.cuda.set_per_process_memory_fraction(1.5 * 2**30 / total)
    try:
        with caplog.at_level(logging.WARNING):
            out = FullFinetune().train(ctx)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert 1 < out.info["batch_size"] < 512
    retries = [r.getMessage() for r in caplog.records if "Out of memory" in r.getMessage()]
    assert retries and retries[0].startswith("Out of memory at batch size 512; retrying with 256")
    assert out.history and out.val_accuracy >= 0.0


def test_fit_uses_the_gpu_by_default_and_predicts(tmp_path):
    root = make_image_folder(tmp_path / "data", classes=("a", "b", "c"), per_class=8)
    result = autotransfer.fit(
        root,
        backbones=("random:test_resnet",),
        resolution=32,
        time_budget=None,
        n_trials=3,
        strategies=("feature_extraction", "full_finetune"),
        trackers=(),
        run_dir=str(tmp_path / "run"),
        progress=False,
    )
    finetunes = [
        r for r in result.leaderboard if r.strategy == "full_finetune" and r.state == "complete"
    ]
    assert finetunes and finetunes[0].info["batch_size"] == 128  # the CUDA default batch
    images = sorted(str(p) for p in (root / "val").rglob("*.png"))
    assert set(result.predict(images)) <= {"a", "b", "c"}
