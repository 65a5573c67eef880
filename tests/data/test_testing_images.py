"""autotransfer.testing.images: the helpers other tests and plugin authors rely on."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from autotransfer.testing.images import make_image_folder


def test_class_folders_layout_and_formats(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("x", "y"), per_class=4, size=(20, 10))
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.*"))
    assert files == [
        f"{c}/{c}_{i:03d}.{e}" for c in "xy" for i, e in enumerate("png jpg png jpg".split())
    ]
    with Image.open(root / "x" / "x_001.jpg") as img:
        assert img.format == "JPEG" and img.size == (20, 10) and img.mode == "RGB"


def test_split_folders_layout(tmp_path):
    root = make_image_folder(
        tmp_path / "d", per_class=6, layout="split_folders", splits=("train", "val", "test")
    )
    counts = {s: len(list((root / s).rglob("*.*"))) for s in ("train", "val", "test")}
    assert counts == {"train": 12, "val": 6, "test": 6}
    with pytest.raises(ValueError, match="Unknown layout"):
        make_image_folder(tmp_path / "e", layout="flat")


def test_same_arguments_same_bytes_and_every_image_differs(tmp_path):
    a = make_image_folder(tmp_path / "a", seed=1)
    b = make_image_folder(tmp_path / "b", seed=1)
    blobs = [p.read_bytes() for p in sorted(a.rglob("*.*"))]
    assert blobs == [p.read_bytes() for p in sorted(b.rglob("*.*"))]
    assert len(set(blobs)) == len(blobs)


def test_classes_are_separable_by_a_nearest_centroid(tmp_path):
    classes = tuple("abcdefgh")
    root = make_image_folder(tmp_path / "d", classes=classes, per_class=6, formats=("png",))

    def feats(path):
        a = np.asarray(Image.open(path), dtype=np.float64)
        return np.concatenate([a.mean((0, 1)), np.abs(np.diff(a, axis=0)).mean((0, 1)),
                               np.abs(np.diff(a, axis=1)).mean((0, 1))])  # fmt: skip

    data = {c: np.stack([feats(p) for p in sorted((root / c).glob("*"))]) for c in classes}
    centroids = np.stack([data[c][:3].mean(0) for c in classes])
    for i, c in enumerate(classes):
        held_out = data[c][3:]
        nearest = np.argmin(((held_out[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
        assert (nearest == i).all(), c
