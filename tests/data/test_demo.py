"""write_digits_folder: scikit-learn's digits as a real 10-class image folder."""

from __future__ import annotations

from collections import Counter

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from autotransfer.data.demo import DIGITS_COUNT, write_digits_folder
from autotransfer.data.ingest import open_dataset


def test_digits_folder_has_1797_images_in_10_classes(tmp_path):
    root = write_digits_folder(tmp_path / "digits")
    files = sorted(root.glob("*/*.png"))
    assert len(files) == DIGITS_COUNT == 1797
    counts = Counter(f.parent.name for f in files)
    assert sorted(counts) == [str(d) for d in range(10)] and min(counts.values()) >= 170

    first = Image.open(root / "0" / "0000.png")
    assert first.mode == "L" and first.size == (32, 32)
    expected = np.round(load_digits().images[0] * 255 / 16).astype(np.uint8)
    assert (np.asarray(first)[::4, ::4] == expected).all()  # nearest upscale of the scan

    # idempotent: nothing is rewritten; a missing file is restored
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    files[-1].unlink()
    assert write_digits_folder(root) == root
    assert all(f.stat().st_mtime_ns == mtimes[f] for f in files[:-1])
    assert files[-1].is_file() and len(list(root.glob("*/*.png"))) == 1797
    assert not list(root.rglob(".*"))  # no temporary files left

    ds = open_dataset(root)
    assert ds.classes == tuple(str(d) for d in range(10))
    assert len(ds.records) == 1797 and ds.report.converted_modes == {"L": 1797}
