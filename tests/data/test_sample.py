"""Stratified, seeded samples (data/sample.py)."""

from collections import Counter

import numpy as np
import pytest

from autotransfer.data.sample import sample_split, stratified_order, stratified_sample


def test_every_prefix_of_the_order_is_stratified():
    y = np.repeat([0, 1, 2], [600, 300, 100])
    order = stratified_order(y, seed=3)
    assert sorted(order.tolist()) == list(range(len(y)))
    for n in (10, 100, 555):
        counts = Counter(y[order[:n]].tolist())
        for c, share in ((0, 0.6), (1, 0.3), (2, 0.1)):
            assert abs(counts[c] - share * n) <= 1


def test_the_sample_is_seeded():
    y = np.repeat(np.arange(5), 200)
    a = stratified_sample(y, 100, per_class=30, seed=0)
    assert np.array_equal(a, stratified_sample(y, 100, per_class=30, seed=0))
    assert not np.array_equal(a, stratified_sample(y, 100, per_class=30, seed=1))


@pytest.mark.parametrize(
    ("size", "per_class", "expected"),
    [
        (100, None, {0: 82, 1: 16, 2: 2}),  # in proportion (81.6, 16.3, 2.0)
        (100, 40, {0: 40, 1: 40, 2: 20}),  # a capped class leaves its places to the others
        (1000, 50, {0: 50, 1: 50, 2: 20}),  # the per-class cap binds before the total
    ],
)
def test_per_class_and_total_caps(size, per_class, expected):
    y = np.repeat([0, 1, 2], [800, 160, 20])
    idx = stratified_sample(y, size, per_class=per_class, seed=0)
    assert len(set(idx.tolist())) == len(idx) and np.all(np.diff(idx) > 0)
    assert dict(Counter(y[idx].tolist())) == expected


def test_a_split_under_the_caps_is_the_split_itself(image_folder):
    import autotransfer

    ds = autotransfer.open_folder(image_folder)
    assert sample_split(ds, "train", 1000, per_class=100) is ds
    small = sample_split(ds, "train", 6, per_class=100)
    assert len(small.train) == 6 and small.val == ds.val and small.test == ds.test
    assert Counter(r.label for r in small.train) == Counter({0: 2, 1: 2, 2: 2})
    assert small.fingerprint("train") != ds.fingerprint("train")


def test_train_chunks_cover_the_split_once_the_ranking_sample_first(image_folder):
    import autotransfer
    from autotransfer.data.sample import ranking_sample, train_chunks

    ds = autotransfer.open_folder(image_folder)
    first = ranking_sample(ds, 2, 2, seed=0)
    chunks = train_chunks(ds, [first], 5, seed=0)
    assert chunks[0].train == first.train and [len(c.train) for c in chunks] == [6, 5, 5, 5, 3]
    paths = [r.path for c in chunks for r in c.train]
    assert sorted(paths) == sorted(r.path for r in ds.train)
    assert all(c.val == ds.val for c in chunks)
    assert Counter(r.label for r in chunks[1].train + chunks[2].train).most_common()[-1][1] >= 3


def test_the_pilot_is_a_part_of_the_larger_sample(tmp_path):
    import autotransfer
    from autotransfer.data.sample import ranking_sample, sample_parts, train_chunks
    from autotransfer.testing.images import make_image_folder

    folder = make_image_folder(tmp_path / "d", classes=("a", "b", "c"), per_class=40, size=(8, 8))
    ds = autotransfer.open_folder(folder)  # 96 training images
    pilot, rest = sample_parts(ds, 60, 30, seed=0, pilot=30)
    whole = ranking_sample(ds, 60, 30, seed=0)
    assert pilot.train == ranking_sample(ds, 30, 30, seed=0).train
    assert len(pilot.train) == 30 and len(rest.train) == 30
    assert {r.path for r in pilot.train + rest.train} == {r.path for r in whole.train}
    assert Counter(r.label for r in pilot.train) == Counter({0: 10, 1: 10, 2: 10})
    assert [p.train for p in sample_parts(ds, 60, 30, seed=0)] == [whole.train]
    assert [p.train for p in sample_parts(ds, 60, 30, seed=0, pilot=60)] == [whole.train]
    chunks = train_chunks(ds, [pilot, rest], 100, seed=0)
    assert [c.train for c in chunks[:2]] == [pilot.train, rest.train]
    assert sum(len(c.train) for c in chunks) == len(ds.train)
