"""The dataset variants the ranking benchmarks use, built in memory from ../shared/datasets.

* ``<name>``: the folder as `fit` reads it (its own test split; validation carved from
  train, 20 %, seed 0);
* ``<name>/vtab1k``: VTAB-1k style, at most 800 training and 200 validation images
  sampled (stratified, seed 0) from the folder's train split; the smaller folders have
  fewer (80/20 of what they hold), their test split is kept;
* ``<name>/<k>shot``: ``k`` training images per class sampled (seed 0) from the vtab1k
  training images, validated on the same vtab1k validation images.

Variants are :class:`~autotransfer.data.types.ImageDataset` objects with the same
records as the folder (the feature cache keys on their content), so nothing is copied.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

import autotransfer
from autotransfer.data.types import ImageDataset, ImageRecord

# ../shared/datasets beside the repository; $AUTOTRANSFER_BENCH_DATASETS names another folder
# (a device machine reads copies carried with the repository: benchmarks/device_kit.py)
SHARED = Path(
    os.environ.get("AUTOTRANSFER_BENCH_DATASETS")
    or Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
)
VTAB_TRAIN, VTAB_VAL = 800, 200
SEED = 0


def dataset_names() -> list[str]:
    """Every shared dataset with a train folder, sorted."""
    return sorted(d.name for d in SHARED.iterdir() if (d / "train").is_dir())


def _stratified(records: list[ImageRecord], n: int, rng: np.random.Generator) -> list[int]:
    """Indices of ``n`` records drawn class by class in proportion (largest remainders)."""
    labels = np.array([r.label for r in records])
    classes, counts = np.unique(labels, return_counts=True)
    share = counts / counts.sum() * n
    take = np.floor(share).astype(int)
    for i in np.argsort(-(share - take))[: n - take.sum()]:
        take[i] += 1
    out: list[int] = []
    for c, k in zip(classes, take):
        idx = np.flatnonzero(labels == c)
        out += rng.choice(idx, size=min(k, len(idx)), replace=False).tolist()
    return sorted(out)


def vtab1k(ds: ImageDataset) -> ImageDataset:
    """At most 800 training and 200 validation images from the folder's training images."""
    pool = list(ds.train + ds.val)
    rng = np.random.default_rng(SEED)
    n_val = min(VTAB_VAL, round(0.2 * len(pool)))
    n_train = min(VTAB_TRAIN, len(pool) - n_val)
    picked = _stratified(pool, n_train + n_val, rng)
    chosen = [pool[i] for i in picked]
    val_idx = set(_stratified(chosen, n_val, rng))
    train = tuple(r for i, r in enumerate(chosen) if i not in val_idx)
    val = tuple(r for i, r in enumerate(chosen) if i in val_idx)
    return dataclasses.replace(ds, root=ds.root + "/vtab1k", train=train, val=val)


def few_shot(ds: ImageDataset, k: int) -> ImageDataset:
    """``k`` training images per class from ``ds``'s training images; validation as ``ds``."""
    rng = np.random.default_rng(SEED + k)
    train: list[ImageRecord] = []
    for c in range(len(ds.classes)):
        recs = [r for r in ds.train if r.label == c]
        idx = rng.choice(len(recs), size=min(k, len(recs)), replace=False)
        train += [recs[i] for i in sorted(idx)]
    root = ds.root.rsplit("/vtab1k", 1)[0] + f"/{k}shot"
    return dataclasses.replace(ds, root=root, train=tuple(train))


def load_variant(variant: str) -> ImageDataset:
    """``"flowers5_subset"``, ``"flowers5_subset/vtab1k"`` or ``"flowers5_subset/5shot"``."""
    name, _, kind = variant.partition("/")
    ds = autotransfer.open_folder(SHARED / name, progress=False)
    if not kind:
        return ds
    v = vtab1k(ds)
    if kind == "vtab1k":
        return v
    if kind.endswith("shot"):
        return few_shot(v, int(kind[: -len("shot")]))
    raise ValueError(f"unknown variant {variant!r}: use NAME, NAME/vtab1k or NAME/<k>shot")


def describe_split(ds: ImageDataset) -> str:
    return f"{len(ds.train)}/{len(ds.val)}/{len(ds.test)}"
