"""Frozen features on disk: :class:`FeatureSet`, the cache key of a pass (the split's
image bytes and labels, the backbone, its weights' fingerprint, the preprocessing), and
checksummed files read back or recomputed when broken."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotransfer import plugins
from autotransfer.backbones.inputs import data_config
from autotransfer.backbones.spec import BackboneSpec
from autotransfer.cache import atomic_write, cache_key, resolve_cache_dir
from autotransfer.data.types import ImageDataset
from autotransfer.errors import CacheError

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


def extraction_key(dataset: ImageDataset, split: str, spec: BackboneSpec, cfg: dict) -> str:
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


def cache_path(cache_dir: str | os.PathLike[str] | None, key: str) -> Path:
    return resolve_cache_dir(cache_dir) / "features" / f"{key}.npz"


@dataclass(frozen=True)
class CacheSlot:
    """Where the features of one pass (a split under a backbone and its preprocessing
    ``cfg``) live: the cache key and the file. ``use`` False: never read nor written."""

    spec: BackboneSpec
    split: str
    cfg: dict
    key: str
    path: Path
    use: bool = True

    @property
    def cached(self) -> bool:
        """Whether :meth:`read` finds a file (it is checked when read)."""
        return self.use and self.path.exists()

    def read(self) -> FeatureSet | None:
        """The cached features, or None (none, unused, or broken: recompute)."""
        return read_cache(self.path, self.spec) if self.use else None

    def keep(self, fs: FeatureSet, seconds: float, **meta: Any) -> FeatureSet:
        """``fs`` stamped with this slot's key, ``seconds`` and ``meta``; saved when used."""
        fs = stamped(fs, self.key, seconds, self.spec, self.split, self.cfg, **meta)
        if self.use:
            save_features(self.path, fs)
        return fs


def cache_slot(
    dataset: ImageDataset,
    spec: BackboneSpec,
    split: str,
    resolution: int | None,
    cache_dir: str | os.PathLike[str] | None,
    use_cache: bool = True,
) -> CacheSlot:
    """The :class:`CacheSlot` of ``spec``'s pass over ``split`` of ``dataset``."""
    cfg = data_config(spec, resolution)
    key = extraction_key(dataset, split, spec, cfg)
    return CacheSlot(spec, split, cfg, key, cache_path(cache_dir, key), use_cache)


def save_features(path: Path, fs: FeatureSet) -> None:
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
    return {
        k: hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()[:16]
        for k, v in sorted(arrays.items())
    }


def load_features(path: Path) -> FeatureSet:
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


def read_cache(path: Path, spec: BackboneSpec) -> FeatureSet | None:
    """The cached features at ``path``, or None (a broken file is removed, to recompute)."""
    if not path.exists():
        return None
    try:
        fs = load_features(path)
    except CacheError as exc:
        log.warning("%s Recomputing it.", exc)
        path.unlink(missing_ok=True)
        return None
    log.debug("feature cache hit %s for %s", path.name, spec.id)
    return fs


def stamped(
    fs: FeatureSet, key: str, seconds: float, spec: BackboneSpec, split: str, cfg: dict, **meta
) -> FeatureSet:
    return dataclasses.replace(
        fs,
        key=key,
        seconds=seconds,
        meta={"backbone": spec.id, "split": split, "resolution": cfg["input_size"][-1], **meta},
    )
