"""Real fastai (``pip install fastai``): ``vision_learner`` + ``fine_tune`` on an offline
backbone, given a wall-clock budget, for the benchmarks' fastai baseline.

What a careful fastai user does with the same weights, resolution and time:

* ``vision_learner``'s model for a timm architecture (``create_timm_model``: the timm
  body without its classifier, fastai's head of concat pooling, BatchNorm, dropout and
  two linear layers, ``default_split`` into body and head, ``learn.freeze()``), the
  body's weights loaded from the same offline source ``fit`` reads (``vision_learner``
  itself would download them), normalised with the weights' mean and std as
  ``_timm_norm`` does;
* the images presized (``Resize`` to resolution / 0.875, then ``aug_transforms`` to the
  resolution on the batch), the variant's own train / validation / test split;
* ``fine_tune`` as fastai writes it (one frozen epoch, one cycle at ``base_lr`` with
  ``pct_start=0.99``; then unfrozen, ``slice(base_lr / 2 / lr_mult, base_lr / 2)``, one
  cycle with ``pct_start=0.3, div=5``), its unfrozen epochs chosen to fill the budget
  from the frozen epoch's measured time (an unfrozen epoch costs :data:`UNFROZEN_COST`
  times as much), and stopped at the budget if it runs over.

The budget covers everything from reading the images to scoring the test split.
Installed beside the benchmarks' environment (its metadata pins an older torch):
``pip install --no-deps --target /work/fastai-pkgs fastai fastcore fastdownload
"fastprogress<1.1" fasttransform plum-dispatch beartype``, then ``PYTHONPATH`` it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

# seconds of an unfrozen epoch over a frozen one (train_bn: the frozen body's BatchNorm
# layers still train, so its backward pass runs through the whole network); measured on
# these 2 cores with efficientnet_lite0 at 128 px (benchmarks/vs_fastai.py --dry-run)
UNFROZEN_COST = 1.4


def fastai_fine_tune(
    ds: Any,
    backbone: str,
    resolution: int,
    seconds: float,
    *,
    batch_size: int = 32,
    seed: int = 0,
    base_lr: float = 2e-3,
    lr_mult: float = 100.0,
) -> dict[str, Any]:
    """Fine-tune ``backbone`` (an autotransfer backbone id) on ``ds`` (an ImageDataset)
    within ``seconds``; its validation and test accuracy, per-image test correctness."""
    import pandas as pd
    from fastai.callback.core import Callback, CancelFitException
    from fastai.vision.all import (
        CategoryBlock,
        ColReader,
        ColSplitter,
        DataBlock,
        ImageBlock,
        Learner,
        Normalize,
        ProgressCallback,
        Resize,
        accuracy,
        aug_transforms,
        set_seed,
    )
    from fastai.vision.learner import create_timm_model, default_split

    from autotransfer.backbones.load import load_backbone, resolve_backbones

    start = time.monotonic()
    deadline = start + seconds
    set_seed(seed, reproducible=True)
    spec = resolve_backbones([backbone])[0]
    classes = list(ds.classes)
    recs = list(ds.train) + list(ds.val)
    df = pd.DataFrame(
        {
            "path": [r.path for r in recs],
            "label": [classes[r.label] for r in recs],
            "is_valid": [False] * len(ds.train) + [True] * len(ds.val),
        }
    )
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock(vocab=classes)),
        get_x=ColReader("path"),
        get_y=ColReader("label"),
        splitter=ColSplitter("is_valid"),
        item_tfms=Resize(round(resolution / 0.875)),
        batch_tfms=aug_transforms(size=resolution, min_scale=0.75),
    )
    dls = block.dataloaders(df, bs=batch_size, num_workers=0, device="cpu")
    model, cfg = create_timm_model(spec.arch, len(classes), default_split, pretrained=False)
    source = load_backbone(spec)  # the offline weights, the 1000-class classifier left out
    head = source.default_cfg.get("classifier") or ""
    weights = {k: v for k, v in source.state_dict().items() if not (head and k.startswith(head))}
    missing, unexpected = model[0].model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"{backbone}: weights do not fit ({missing[:3]}, {unexpected[:3]})")
    dls.add_tfms([Normalize.from_stats(cfg["mean"], cfg["std"])], "after_batch")
    learn = Learner(dls, model, splitter=default_split, metrics=accuracy)
    learn.freeze()
    learn.remove_cb(ProgressCallback)  # no bars (the benchmark prints its table)
    learn.recorder.silent = True

    class Deadline(Callback):
        """Stop when the budget (less the test scoring) is spent."""

        def __init__(self, by: float) -> None:
            self.by = by

        def after_batch(self) -> None:
            if time.monotonic() > self.by:
                raise CancelFitException()

    test_paths = [r.path for r in ds.test]
    # the test scoring's time, from a forward pass over the validation split (measured
    # inside the frozen epoch below): kept back from training
    t = time.monotonic()
    learn.fit_one_cycle(1, slice(base_lr), pct_start=0.99, cbs=[Deadline(deadline)])
    frozen_s = time.monotonic() - t
    t = time.monotonic()
    learn.validate()
    val_s = time.monotonic() - t
    test_s = val_s * len(test_paths) / max(1, len(ds.val)) * 1.2
    left = deadline - time.monotonic() - test_s
    epochs = max(1, int(left / (UNFROZEN_COST * frozen_s)))
    learn.unfreeze()
    t = time.monotonic()
    stop = Deadline(deadline - test_s)
    learn.fit_one_cycle(
        epochs, slice(base_lr / 2 / lr_mult, base_lr / 2), pct_start=0.3, div=5.0, cbs=[stop]
    )
    unfrozen_s = time.monotonic() - t
    val_acc = float(learn.validate()[1])
    correct = []
    if test_paths:
        preds, _ = learn.get_preds(dl=learn.dls.test_dl(test_paths))
        predicted = preds.argmax(1).numpy()
        truth = np.array([r.label for r in ds.test])
        correct = (predicted == truth).astype(int).tolist()
    return {
        "val": round(val_acc, 4),
        "test": round(float(np.mean(correct)), 4) if correct else None,
        "test_correct": correct,
        "epochs": f"1 frozen + {epochs} unfrozen",
        "frozen_epoch_s": round(frozen_s, 1),
        "unfrozen_epoch_s": round(unfrozen_s / epochs, 1),
        "seconds": round(time.monotonic() - start, 1),
        "backbone": backbone,
    }
