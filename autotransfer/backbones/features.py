"""One batched forward pass per (dataset split, backbone, resolution), cached on disk.

The pass yields pooled pre-logit features, the source-classifier logits (when the
backbone has a head) and the channel statistics entering the backbone's last
BatchNorm layer, which :mod:`autotransfer.data.similarity` compares with the
layer's running (source) statistics.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from autotransfer import plugins
from autotransfer.backbones import device_decode
from autotransfer.backbones.decoded import DecodedImages, split_transform
from autotransfer.backbones.load import load_backbone
from autotransfer.backbones.spec import BackboneSpec
from autotransfer.cache import atomic_write, cache_key, resolve_cache_dir
from autotransfer.data.images import load_image
from autotransfer.data.types import ImageDataset, ImageRecord
from autotransfer.errors import BudgetSpent, CacheError, DataError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when what is stored, or how it is computed, changes


@dataclass(frozen=True)
class FeatureSet:
    """The frozen-backbone view of one dataset split.

    ``features`` (N, D) float32 pooled pre-logits; ``logits`` (N, K) float32 or None;
    ``labels`` (N,) int64. ``target_bn`` and ``source_bn`` are (mean, var) per channel
    at the input of the last BatchNorm layer, on the target images and as the layer's
    running statistics (the source data), or None when the backbone has no BatchNorm.
    """

    features: np.ndarray
    labels: np.ndarray
    logits: np.ndarray | None = None
    target_bn: tuple[np.ndarray, np.ndarray] | None = None
    source_bn: tuple[np.ndarray, np.ndarray] | None = None
    key: str = ""
    seconds: float = 0.0  # time the extraction took when it was computed
    from_cache: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def concat_features(parts: Sequence[FeatureSet]) -> FeatureSet:
    """One feature set of the images of several (the parts of a split, extracted and cached
    one by one): rows in order, the target BatchNorm statistics pooled by image count,
    the seconds summed, a key of its own.

    >>> a = FeatureSet(np.zeros((2, 3), np.float32), np.array([0, 1]), key="a", seconds=1.0)
    >>> b = FeatureSet(np.ones((1, 3), np.float32), np.array([1]), key="b", seconds=0.5)
    >>> ab = concat_features([a, b])
    >>> len(ab), ab.seconds, ab.key == concat_features([a, b]).key != a.key
    (3, 1.5, True)
    """
    if len(parts) == 1:
        return parts[0]
    first, n = parts[0], np.array([len(p) for p in parts], dtype=np.float64)
    target_bn = None
    if all(p.target_bn is not None for p in parts):
        w = (n / n.sum())[:, None]
        means = np.stack([p.target_bn[0] for p in parts]).astype(np.float64)
        sq = np.stack([p.target_bn[1] + p.target_bn[0] ** 2 for p in parts]).astype(np.float64)
        mean = (w * means).sum(0)
        var = np.clip((w * sq).sum(0) - mean**2, 0, None)
        target_bn = (mean.astype(np.float32), var.astype(np.float32))
    logits = None
    if all(p.logits is not None for p in parts):
        logits = np.concatenate([p.logits for p in parts])
    return dataclasses.replace(
        first,
        features=np.concatenate([p.features for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        logits=logits,
        target_bn=target_bn,
        key=cache_key({"parts": [p.key for p in parts]}) if all(p.key for p in parts) else "",
        seconds=sum(p.seconds for p in parts),
        from_cache=all(p.from_cache for p in parts),
    )


class _Images(Dataset):
    """Records through ``load_image`` and a transform; ``draft`` speeds up JPEG decoding."""

    def __init__(
        self, records: Sequence[ImageRecord], transform: Callable, draft: int | None = None
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.draft = draft

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        rec = self.records[i]
        return self.transform(load_image(rec.path, draft=self.draft)), rec.label


def resize_side(cfg: dict) -> int:
    """The side timm's eval transform resizes to before its centre crop."""
    return int(math.floor(cfg["input_size"][-1] / cfg["crop_pct"]))


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as given, else CUDA when present, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def data_config(spec: BackboneSpec, resolution: int | None = None) -> dict:
    """timm's data config for a backbone: its weights' normalisation, crop and resolution.

    Built from the spec alone (no model needed), so a cache hit never loads weights.
    """
    import timm.data

    res = int(resolution or spec.input_size)
    return timm.data.resolve_data_config(
        args={
            "input_size": (3, res, res),
            "mean": tuple(spec.weights.mean),
            "std": tuple(spec.weights.std),
            "interpolation": spec.interpolation,
            "crop_pct": spec.crop_pct,
            "crop_mode": "center",
        },
        use_test_size=True,
    )


def eval_transform(cfg: dict) -> Callable:
    """The evaluation preprocessing timm builds for a data config."""
    import timm.data

    return timm.data.create_transform(**cfg, is_training=False)


def default_num_workers() -> int:
    """Loader workers: leave most cores to the model on CPU-only machines; with a GPU,
    decoding is the bottleneck, so all cores but one (16 at most) decode (on an H100 with
    16 cores, 15 workers extracted 1.6-1.8x faster than 8: benchmarks/results)."""
    cores = os.cpu_count() or 1
    if torch.cuda.is_available():
        return max(1, min(16, cores - 1))
    return max(1, min(4, cores // 2))


def default_batch_size(device: torch.device) -> int:
    """Images per forward pass: small batches are fastest on CPUs (cache-resident activations,
    measured in benchmarks/results/), large ones on GPUs."""
    return 128 if device.type == "cuda" else 8


def _last_batchnorm(model: torch.nn.Module) -> torch.nn.BatchNorm2d | None:
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    return bns[-1] if bns and bns[-1].running_mean is not None else None


class _ChannelStats:
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


def _extraction_key(dataset: ImageDataset, split: str, spec: BackboneSpec, cfg: dict) -> str:

    source = plugins.lookup("weight_sources", spec.weights.source)
    return cache_key(
        {
            "format": FORMAT_VERSION,
            "data": dataset.fingerprint(split),
            "backbone": spec.to_dict(),
            "weights": source.fingerprint(spec),
            "transform": {k: cfg[k] for k in sorted(cfg)},
        }
    )


def _cache_path(cache_dir: str | os.PathLike[str] | None, key: str) -> Path:
    return resolve_cache_dir(cache_dir) / "features" / f"{key}.npz"


def is_cached(
    dataset: ImageDataset,
    spec: BackboneSpec,
    *,
    split: str = "train",
    resolution: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> bool:
    """Whether :func:`extract_features` would read these features from the cache."""
    cfg = data_config(spec, resolution)
    return _cache_path(cache_dir, _extraction_key(dataset, split, spec, cfg)).exists()


def _save(path: Path, fs: FeatureSet) -> None:
    arrays: dict[str, np.ndarray] = {"features": fs.features, "labels": fs.labels}
    if fs.logits is not None:
        arrays["logits"] = fs.logits
    for prefix, stats in (("target_bn", fs.target_bn), ("source_bn", fs.source_bn)):
        if stats is not None:
            arrays[f"{prefix}_mean"], arrays[f"{prefix}_var"] = stats
    meta = {"key": fs.key, "seconds": fs.seconds, "checksums": _checksums(arrays), **fs.meta}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write(path, write)


def _checksums(arrays: dict[str, np.ndarray]) -> dict[str, str]:
    import hashlib

    return {
        k: hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()[:16]
        for k, v in sorted(arrays.items())
    }


def _load(path: Path) -> FeatureSet:
    """Read a cache file; raise CacheError when it is unreadable or fails its checksums."""

    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
        if _checksums(arrays) != meta.pop("checksums"):
            raise ValueError("checksum mismatch")
    except Exception as exc:
        raise CacheError(f"Feature cache file {path} is unreadable ({exc}).") from exc

    def pair(prefix: str):
        if f"{prefix}_mean" in arrays:
            return arrays[f"{prefix}_mean"], arrays[f"{prefix}_var"]
        return None

    return FeatureSet(
        features=arrays["features"],
        labels=arrays["labels"],
        logits=arrays.get("logits"),
        target_bn=pair("target_bn"),
        source_bn=pair("source_bn"),
        key=meta.pop("key"),
        seconds=float(meta.pop("seconds")),
        from_cache=True,
        meta=meta,
    )


def extract_features(
    dataset: ImageDataset,
    spec: BackboneSpec,
    *,
    split: str = "train",
    resolution: int | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    device: str | torch.device | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
    deadline: float | None = None,
    decoded: DecodedImages | None = None,
    jpeg_decode: str = "auto",
) -> FeatureSet:
    """Features of one split of ``dataset`` under ``spec``, from the cache when possible.

    The cache key covers the split's image bytes and labels, the backbone spec, the
    weights' fingerprint and the preprocessing, so any change recomputes. A cache
    file that fails to load or to match its checksums is recomputed and replaced.
    ``deadline`` (a :func:`time.monotonic` time) is checked batch by batch: past it the
    pass stops and raises :class:`~autotransfer.errors.BudgetSpent`, caching nothing.
    ``decoded`` (:class:`~autotransfer.backbones.decoded.DecodedImages`) shares decoded
    images between the passes of several backbones. ``jpeg_decode``: where JPEGs are
    decoded (:func:`~autotransfer.backbones.device_decode.use_device_decode`).

    >>> fs = extract_features(ds, lookup_backbone("package:efficientnet_lite0"))  # doctest: +SKIP
    >>> fs.features.shape                                                         # doctest: +SKIP
    (1437, 1280)
    """

    records = _records(dataset, split)
    dev = resolve_device(device)
    cfg = data_config(spec, resolution)
    key = _extraction_key(dataset, split, spec, cfg)
    path = _cache_path(cache_dir, key)
    fs = _read_cache(path, spec) if use_cache else None
    if fs is not None:
        return fs

    start = time.perf_counter()
    model = load_backbone(spec)
    fs = _compute(
        model,
        records,
        cfg,
        dev,
        batch_size,
        num_workers,
        progress,
        deadline=deadline,
        decoded=decoded,
        jpeg_decode=jpeg_decode,
    )
    fs = _stamped(fs, key, time.perf_counter() - start, spec, split, cfg)
    if use_cache:
        _save(path, fs)
    return fs


def _records(dataset: ImageDataset, split: str) -> Sequence[ImageRecord]:
    records = dataset.split(split)
    if not records:
        raise DataError(f"The {split!r} split of {dataset.root} has no images to extract.")
    return records


def _read_cache(path: Path, spec: BackboneSpec) -> FeatureSet | None:
    """The cached features at ``path``, or None (a broken file is removed, to recompute)."""

    if not path.exists():
        return None
    try:
        fs = _load(path)
    except CacheError as exc:
        log.warning("%s Recomputing it.", exc)
        path.unlink(missing_ok=True)
        return None
    log.debug("feature cache hit %s for %s", path.name, spec.id)
    return fs


def _stamped(
    fs: FeatureSet, key: str, seconds: float, spec: BackboneSpec, split: str, cfg: dict, **meta
) -> FeatureSet:
    return dataclasses.replace(
        fs,
        key=key,
        seconds=seconds,
        meta={"backbone": spec.id, "split": split, "resolution": cfg["input_size"][-1], **meta},
    )


def _compute(
    model: torch.nn.Module,
    records: Sequence[ImageRecord],
    cfg: dict,
    dev: torch.device,
    batch_size: int | None,
    num_workers: int | None,
    progress: Callable[[int, int], None] | None,
    taps: Sequence[Any] = (),
    *,
    deadline: float | None = None,
    decoded: DecodedImages | None = None,
    jpeg_decode: str = "auto",
) -> FeatureSet:
    """One pass of ``model`` over ``records``. ``taps`` (:class:`~autotransfer.backbones.
    cut_taps.CutTap`) read the cuts of the same network from it as it goes. Raises
    :class:`~autotransfer.errors.BudgetSpent` when a batch ends past ``deadline``.
    Loader workers decode, resize and crop to uint8; the batch is normalised on the
    device. With ``decoded``, the crops are read from it when an earlier pass at the same
    geometry left them there, and left there for the next pass when they fit. With device decoding
    (``jpeg_decode``), the workers read JPEG files' bytes and the device decodes them."""

    if deadline is not None and time.monotonic() > deadline:
        raise BudgetSpent(f"no time left to extract features of {len(records)} images")
    cuda = dev.type == "cuda"
    batch_size = batch_size or default_batch_size(dev)
    model = model.eval().to(dev)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    workers = default_num_workers() if num_workers is None else num_workers
    transform, normalise, geometry = eval_transform(cfg), None, None
    if (parts := split_transform(transform)) is not None:
        transform, normalise, geometry = parts
    key = decoded.key(geometry, [r.path for r in records]) if decoded and geometry else None
    held = decoded.get(key) if key else None
    if held is not None:  # an earlier pass decoded them
        ys = torch.as_tensor([r.label for r in records], dtype=torch.int64)
        loader = [
            (held[i : i + batch_size], ys[i : i + batch_size])
            for i in range(0, len(held), batch_size)
        ]
    on_device = held is None and normalise is not None
    on_device = on_device and device_decode.use_device_decode(jpeg_decode, dev, records)
    if held is None:
        loader = DataLoader(
            device_decode.FileBytes(records, transform, resize_side(cfg))
            if on_device
            else _Images(records, transform, draft=resize_side(cfg)),
            batch_size=batch_size,
            shuffle=False,
            num_workers=workers,
            pin_memory=cuda and not on_device,
            persistent_workers=False,
            prefetch_factor=4 if workers > 0 else None,
            collate_fn=device_decode.collate if on_device else None,
        )
    side = int(cfg["input_size"][-1])
    keep = [] if key and held is None and decoded.fits(len(records) * 3 * side * side) else None
    if on_device:  # decoding there is cheap: nothing held
        keep = None
        on_device_geometry = device_decode.DeviceGeometry(
            resize_side(cfg), side, cfg.get("interpolation", "bilinear")
        )
    stats = _ChannelStats()
    bn = _last_batchnorm(model)
    handle = bn.register_forward_pre_hook(stats) if bn is not None else None
    for tap in taps:
        tap.attach(model, dev)
    feats, logits, labels = [], [], []
    done, t0 = 0, time.monotonic()
    try:
        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=cuda):
            for x, y in loader:
                if on_device:
                    x = device_decode.decode_batch(
                        x, dev, on_device_geometry, transform, resize_side(cfg)
                    )
                if keep is not None:
                    keep.append(x)
                x = x.to(dev, non_blocking=True)
                if normalise is not None:
                    x = normalise(x)
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
    if keep:
        decoded.keep(key, torch.cat(keep))
    return FeatureSet(
        features=torch.cat(feats).numpy().astype(np.float32),
        labels=torch.cat(labels).numpy().astype(np.int64),
        logits=torch.cat(logits).numpy().astype(np.float32) if logits else None,
        target_bn=stats.result(),
        source_bn=_running_stats(bn),
    )


def _running_stats(bn: torch.nn.Module | None) -> tuple[np.ndarray, np.ndarray] | None:
    """A BatchNorm layer's running (source) mean and variance, or None without one."""
    if bn is None:
        return None
    return (
        bn.running_mean.detach().float().cpu().numpy(),
        bn.running_var.detach().float().cpu().numpy(),
    )
