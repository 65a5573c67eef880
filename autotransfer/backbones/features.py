"""One batched forward pass per (dataset split, backbone, resolution), cached on disk
(:mod:`~autotransfer.backbones.feature_cache`).

The pass yields pooled pre-logit features, the source-classifier logits (when the
backbone has a head) and the channel statistics entering the backbone's last
BatchNorm layer, which :mod:`autotransfer.data.similarity` compares with the
layer's running (source) statistics.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import torch

from autotransfer.backbones.decoded import DecodedImages
from autotransfer.backbones.feature_cache import CacheSlot, FeatureSet, cache_slot
from autotransfer.backbones.inputs import (
    CropBatches,
    default_batch_size,
    default_num_workers,
    resolve_device,
)
from autotransfer.backbones.load import load_backbone
from autotransfer.backbones.spec import BackboneSpec
from autotransfer.data.types import ImageDataset, ImageRecord
from autotransfer.errors import BudgetSpent, DataError

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger(__name__)


class PassOptions(TypedDict, total=False):
    """How a pass runs: the keyword arguments that :func:`extract_features` and
    :func:`~autotransfer.backbones.cut_taps.extract_group` hand on to :func:`compute_pass`.

    ``deadline`` (a :func:`time.monotonic` time) is checked batch by batch: past it the
    pass stops and raises :class:`~autotransfer.errors.BudgetSpent`, caching nothing.
    ``decoded`` (:class:`~autotransfer.backbones.decoded.DecodedImages`) shares decoded
    images between the passes of several backbones. ``jpeg_decode``: where JPEGs are
    decoded (:func:`~autotransfer.backbones.device_decode.use_device_decode`).
    """

    batch_size: int | None
    num_workers: int | None
    device: str | torch.device | None
    progress: Callable[[int, int], None] | None
    deadline: float | None
    decoded: DecodedImages | None
    jpeg_decode: str


def extract_features(
    dataset: ImageDataset,
    spec: BackboneSpec,
    *,
    split: str = "train",
    resolution: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    **opts: Unpack[PassOptions],
) -> FeatureSet:
    """Features of one split of ``dataset`` under ``spec``, from the cache when possible.

    The cache key covers the split's image bytes and labels, the backbone spec, the
    weights' fingerprint and the preprocessing, so any change recomputes. A cache
    file that fails to load or to match its checksums is recomputed and replaced.
    ``opts``: how the pass runs (:class:`PassOptions`).

    >>> fs = extract_features(ds, lookup_backbone("package:efficientnet_lite0"))  # doctest: +SKIP
    >>> fs.features.shape                                                         # doctest: +SKIP
    (1437, 1280)
    """
    slot = cache_slot(dataset, spec, split, resolution, cache_dir, use_cache)
    fs = slot.read()
    return fs if fs is not None else cached_pass(dataset, slot, **opts)


def cached_pass(
    dataset: ImageDataset,
    slot: CacheSlot,
    taps_for: Callable[[torch.nn.Module], Sequence[Any]] | None = None,
    **opts: Unpack[PassOptions],
) -> FeatureSet:
    """One pass of the network of ``slot`` over its split, kept in the slot with the time
    it took (loading the network included). ``taps_for(model)`` gives the taps that read
    along (:func:`compute_pass`)."""
    records = split_records(dataset, slot.split)
    start = time.perf_counter()
    model = load_backbone(slot.spec)
    taps = taps_for(model) if taps_for is not None else ()
    fs = compute_pass(model, records, slot.cfg, taps, **opts)
    return slot.keep(fs, time.perf_counter() - start)


def split_records(dataset: ImageDataset, split: str) -> Sequence[ImageRecord]:
    records = dataset.split(split)
    if not records:
        raise DataError(f"The {split!r} split of {dataset.root} has no images to extract.")
    return records


def compute_pass(
    model: torch.nn.Module,
    records: Sequence[ImageRecord],
    cfg: dict,
    taps: Sequence[Any] = (),
    *,
    batch_size: int | None = None,
    num_workers: int | None = None,
    device: str | torch.device | None = None,
    progress: Callable[[int, int], None] | None = None,
    deadline: float | None = None,
    decoded: DecodedImages | None = None,
    jpeg_decode: str = "auto",
) -> FeatureSet:
    """One pass of ``model`` over ``records``. ``taps`` (:class:`~autotransfer.backbones.
    cut_taps.CutTap`) read the cuts of the same network from it as it goes. Raises
    :class:`~autotransfer.errors.BudgetSpent` when a batch ends past ``deadline``. The
    crops come from :class:`~autotransfer.backbones.inputs.CropBatches` (``decoded``,
    ``jpeg_decode``: see there) and are normalised on the device."""
    if deadline is not None and time.monotonic() > deadline:
        raise BudgetSpent(f"no time left to extract features of {len(records)} images")
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    model = model.eval().to(dev)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    batches = CropBatches(
        records,
        cfg,
        dev,
        batch_size or default_batch_size(dev),
        default_num_workers() if num_workers is None else num_workers,
        decoded,
        jpeg_decode,
    )
    stats = ChannelStats()
    bn = last_batchnorm(model)
    handle = bn.register_forward_pre_hook(stats) if bn is not None else None
    for tap in taps:
        tap.attach(model, dev)
    feats, logits, labels = [], [], []
    done, t0 = 0, time.monotonic()
    try:
        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=cuda):
            for x, y in batches:
                x = x.to(dev, non_blocking=True)
                if batches.normalise is not None:
                    x = batches.normalise(x)
                if cuda:
                    x = x.contiguous(memory_format=torch.channels_last)
                f, lg = forward_batch(model, x)
                for tap in taps:
                    tap.collect(x)
                feats.append(f.float().cpu())
                if lg is not None:
                    logits.append(lg.float().cpu())
                labels.append(y)
                done += len(y)
                if progress is not None:
                    progress(done, len(records))
                if deadline is not None and done < len(records) and time.monotonic() > deadline:
                    raise BudgetSpent(
                        f"the time ran out after {done} of {len(records)} images "
                        f"({time.monotonic() - t0:.0f} s)"
                    )
    finally:
        if handle is not None:
            handle.remove()
        for tap in taps:
            tap.detach()
    return FeatureSet(
        features=torch.cat(feats).numpy().astype(np.float32),
        labels=torch.cat(labels).numpy().astype(np.int64),
        logits=torch.cat(logits).numpy().astype(np.float32) if logits else None,
        target_bn=stats.result(),
        source_bn=running_stats(bn),
    )


def running_stats(bn: torch.nn.Module | None) -> tuple[np.ndarray, np.ndarray] | None:
    """A BatchNorm layer's running (source) mean and variance, or None without one."""
    if bn is None:
        return None
    return (
        bn.running_mean.detach().float().cpu().numpy(),
        bn.running_var.detach().float().cpu().numpy(),
    )


def last_batchnorm(model: torch.nn.Module) -> torch.nn.BatchNorm2d | None:
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    return bns[-1] if bns and bns[-1].running_mean is not None else None


class ChannelStats:
    """Accumulates per-channel mean and variance of a layer's input over all positions."""

    def __init__(self) -> None:
        self.sum: torch.Tensor | None = None
        self.sumsq: torch.Tensor | None = None
        self.count = 0

    def __call__(self, module, args) -> None:
        x = args[0].detach().float()
        dims = [0, 2, 3]
        s, sq = x.sum(dim=dims).double().cpu(), (x * x).sum(dim=dims).double().cpu()
        self.sum = s if self.sum is None else self.sum + s
        self.sumsq = sq if self.sumsq is None else self.sumsq + sq
        self.count += x.shape[0] * x.shape[2] * x.shape[3]

    def result(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.sum is None or self.count == 0:
            return None
        mean = self.sum / self.count
        var = (self.sumsq / self.count - mean * mean).clamp_min(0)
        return mean.numpy().astype(np.float32), var.numpy().astype(np.float32)


def forward_batch(
    model: torch.nn.Module, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pooled pre-logit features and source-head logits (None without a head) for a batch."""
    feats = model.forward_head(model.forward_features(x), pre_logits=True)
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    has_head = isinstance(head, torch.nn.Module) and not isinstance(head, torch.nn.Identity)
    logits = head(feats) if has_head else None
    return feats, logits
