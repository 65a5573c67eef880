"""Stratified, seeded samples of a split, so that the cost of the steps that read them stops
growing with the number of images.

The ranking scores a sample of the training split (a per-class cap and a total cap); the
search validates on a bounded sample of the validation split; the frozen-feature trials
read the training split in a stratified order, so that whatever prefix the time budget
allows is itself a stratified sample. A sample of a split that is already under its caps
is the split itself, in its own order: small datasets are scored exactly as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from autotransfer.data.types import ImageDataset, ImageRecord

RANK_SAMPLE_MIN_PER_CLASS = 10  # a many-class set gets more than the ranking's total cap


def stratified_order(labels: Sequence[int] | np.ndarray, seed: int = 0) -> np.ndarray:
    """A seeded permutation of ``range(len(labels))`` whose every prefix holds each class in
    proportion to its size (within one image): each class is shuffled, and its ``j``-th of
    ``n`` images is placed at ``(j + u) / n`` on a shared 0..1 axis (``u`` a random offset
    per class), the images then taken in that order.

    >>> y = [0] * 6 + [1] * 3
    >>> order = stratified_order(y, seed=0)
    >>> sorted(order.tolist()) == list(range(9)), [y[i] for i in order[:3]].count(1)
    (True, 1)
    """
    y = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    keys = np.empty(len(y), dtype=np.float64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        keys[idx] = (np.arange(len(idx)) + rng.random()) / len(idx)
    return np.lexsort((np.arange(len(y)), keys))  # ties by index: deterministic


def stratified_sample(
    labels: Sequence[int] | np.ndarray,
    size: int,
    *,
    per_class: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Sorted indices of at most ``size`` images, at most ``per_class`` of each class, drawn in
    :func:`stratified_order` (so classes are in proportion up to the per-class cap, and the
    places a capped class leaves go to the others). All indices when under both caps.

    >>> y = [0] * 90 + [1] * 10
    >>> s = stratified_sample(y, 20, per_class=15, seed=1)
    >>> len(s), sum(y[i] for i in s)  # class 0 capped at 15: class 1 takes the other 5
    (20, 5)
    >>> len(stratified_sample(y, 20, per_class=5)), len(stratified_sample(y, 500))
    (10, 100)
    """
    y = np.asarray(labels, dtype=np.int64)
    classes, counts = np.unique(y, return_counts=True)
    cap = np.inf if per_class is None else int(per_class)
    if len(y) <= size and counts.max(initial=0) <= cap:
        return np.arange(len(y))
    taken = dict.fromkeys(classes.tolist(), 0)
    out = []
    for i in stratified_order(y, seed):
        c = int(y[i])
        if taken[c] < cap:
            taken[c] += 1
            out.append(i)
            if len(out) >= size:
                break
    return np.sort(np.asarray(out, dtype=np.int64))


def rank_sample_size(num_classes: int, size: int) -> int:
    """The ranking's total cap for ``num_classes`` classes: ``size``, raised so that each class
    can have :data:`RANK_SAMPLE_MIN_PER_CLASS` images.

    >>> rank_sample_size(10, 2000), rank_sample_size(1000, 2000)
    (2000, 10000)
    """
    return max(int(size), RANK_SAMPLE_MIN_PER_CLASS * int(num_classes))


def with_split(dataset: ImageDataset, split: str, records: Sequence[ImageRecord]) -> ImageDataset:
    """``dataset`` with one split replaced (its fingerprint, and so every cache key, follows
    the records)."""
    return dataclasses.replace(dataset, **{split: tuple(records)})


def sample_split(
    dataset: ImageDataset,
    split: str,
    size: int,
    *,
    per_class: int | None = None,
    seed: int = 0,
) -> ImageDataset:
    """``dataset`` whose ``split`` is a stratified sample of itself (:func:`stratified_sample`);
    the same object when the split is under the caps."""
    records = dataset.split(split)
    idx = stratified_sample([r.label for r in records], size, per_class=per_class, seed=seed)
    if len(idx) == len(records):
        return dataset
    return with_split(dataset, split, [records[i] for i in idx])


def ranking_sample(
    dataset: ImageDataset, size: int | None, per_class: int | None, seed: int
) -> ImageDataset:
    """``dataset`` whose training split is the ranking's sample of it: at most ``size``
    images (raised by :func:`rank_sample_size` for many classes) and ``per_class`` of a
    class (None: no cap); the dataset itself when the split is under the caps."""
    if size is None and per_class is None:
        return dataset
    total = len(dataset.train) if size is None else rank_sample_size(len(dataset.classes), size)
    return sample_split(dataset, "train", total, per_class=per_class, seed=seed)


def sample_parts(
    dataset: ImageDataset, size: int | None, per_class: int | None, seed: int, pilot: int = 0
) -> list[ImageDataset]:
    """The ranking's sample (:func:`ranking_sample` of ``size``) as the datasets whose
    features are extracted, and cached, one by one: the sample itself; or, with a
    ``pilot`` below its size, the pilot's images (the ranking sample of ``pilot``, a part
    of the larger one: both take classes in the same order) and then the rest of it.
    """
    whole = ranking_sample(dataset, size, per_class, seed)
    if not pilot or pilot >= len(whole.train):
        return [whole]
    first = ranking_sample(dataset, pilot, per_class, seed)
    taken = {r.path for r in first.train}
    rest = [r for r in whole.train if r.path not in taken]
    return [first, with_split(dataset, "train", rest)] if rest else [first]


def train_chunks(
    dataset: ImageDataset, first: Sequence[ImageDataset], size: int, seed: int
) -> list[ImageDataset]:
    """The training split as a list of datasets whose training splits are chunks of it:
    ``first``'s (the parts of the ranking's sample, whose features are cached), then the
    other images in :func:`stratified_order`, ``size`` at a time. Read in order, any
    number of chunks is a stratified sample, and each chunk's features are cached on
    their own.
    """
    taken = {r.path for part in first for r in part.train}
    rest = [r for r in dataset.train if r.path not in taken]
    order = stratified_order([r.label for r in rest], seed)
    out = [with_split(dataset, "train", part.train) for part in first if part.train]
    for start in range(0, len(order), size):
        out.append(with_split(dataset, "train", [rest[i] for i in order[start : start + size]]))
    return out
