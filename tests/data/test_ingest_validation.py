"""open_dataset's validation pass: bad files, strict mode, duplicates, modes, scan cache."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import warnings

import pytest
from PIL import Image

from autotransfer.data.ingest import open_dataset
from autotransfer.errors import DataError, DataWarning
from autotransfer.testing import images as ti

# These tests read the report; the warnings that tell the user the same are tested in
# test_bad_input_matrix.py.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Skipped:autotransfer.errors.DataWarning"),
    pytest.mark.filterwarnings("ignore:Dropped:autotransfer.errors.DataWarning"),
]


def reasons(ds) -> dict[str, str]:
    return {os.path.basename(s.path.rstrip("/")): s.reason for s in ds.report.skipped}


@pytest.fixture
def messy(folder):
    """The ``folder`` fixture plus one of each kind of bad file in class ``a``."""
    a = folder / "a"
    ti.write_corrupt(a / "corrupt.png")
    ti.write_garbage(a / "garbage.jpg")
    ti.write_truncated_jpeg(a / "truncated.jpg")
    ti.write_empty(a / "empty.jpg")
    ti.write_text_as_image(a / "text.jpg")
    ti.write_text_as_image(a / "notes.txt")
    ti.write_decompression_bomb(a / "bomb.png")
    (a / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (a / "._a_000.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (folder / "b" / ".hidden").mkdir()
    ti.write_image(folder / "b" / ".hidden" / "x.png", ti.class_image(1))
    return folder


def test_bad_files_are_skipped_with_reasons(messy):
    ds = open_dataset(messy)
    assert len(ds.records) == 18  # only the good images
    got = reasons(ds)
    assert set(got) == {
        "corrupt.png", "garbage.jpg", "truncated.jpg", "empty.jpg", "text.jpg", "notes.txt",
        "bomb.png",
    }  # fmt: skip
    assert "corrupt" in got["corrupt.png"] and "truncated" in got["truncated.jpg"]
    assert "empty file" in got["empty.jpg"] and "not an image" in got["text.jpg"]
    assert "not an image" in got["notes.txt"] and "decompression bomb" in got["bomb.png"]
    assert ds.report.scanned == 25  # hidden files are not even looked at
    assert "skipped 7" in ds.report.summary()


def test_strict_mode_lists_every_bad_file(messy):
    with pytest.raises(DataError, match="7 file") as err:
        open_dataset(messy, strict=True)
    msg = str(err.value)
    for name in ("corrupt.png", "truncated.jpg", "empty.jpg", "text.jpg", "bomb.png"):
        assert name in msg
    assert "strict=False" in msg


def test_pixel_limit_applies_to_the_scan(folder):
    ti.write_grayscale(folder / "a" / "big.png", size=(64, 64))
    ds = open_dataset(folder, max_pixels=40 * 40)
    assert "decompression bomb" in reasons(ds)["big.png"]
    with pytest.raises(DataError, match="big.png"):
        open_dataset(folder, max_pixels=40 * 40, strict=True)


def test_non_rgb_modes_are_counted_and_recorded(folder):
    ti.write_grayscale(folder / "a" / "gray.png")
    ti.write_palette(folder / "a" / "palette.png")
    ti.write_rgba(folder / "b" / "rgba.png")
    ti.write_cmyk_jpeg(folder / "b" / "cmyk.jpg")
    ti.write_16bit_png(folder / "c" / "deep.png")
    ds = open_dataset(folder)
    modes = {os.path.basename(r.path): r.mode for r in ds.records}
    assert modes["gray.png"] == "L" and modes["palette.png"] == "P"
    assert modes["rgba.png"] == "RGBA" and modes["cmyk.jpg"] == "CMYK"
    assert modes["deep.png"].startswith("I")
    assert sum(ds.report.converted_modes.values()) == 5
    assert ds.report.converted_modes["CMYK"] == 1 and "RGB" not in ds.report.converted_modes


def test_records_carry_hash_and_upright_size(folder):
    ti.write_exif_rotated_jpeg(folder / "a" / "portrait.jpg", size=(40, 20))
    ds = open_dataset(folder)
    for r in ds.records:
        with open(r.path, "rb") as f:
            assert r.sha256 == hashlib.sha256(f.read()).hexdigest()
    (portrait,) = [r for r in ds.records if r.path.endswith("portrait.jpg")]
    assert (portrait.width, portrait.height) == (20, 40)


def test_empty_class_folder_is_not_a_class(folder):
    (folder / "empty").mkdir()
    (folder / "broken").mkdir()
    ti.write_empty(folder / "broken" / "0.png")
    with pytest.warns(DataWarning, match="without readable images: broken, empty"):
        ds = open_dataset(folder)
    assert ds.classes == ("a", "b", "c")
    assert "not a class" in reasons(ds)["empty"]


def test_all_but_one_class_unreadable_is_fewer_than_two_classes(folder):
    for name in ("b", "c"):
        shutil.rmtree(folder / name)
        ti.write_truncated_jpeg(folder / name / "0.jpg")
    with pytest.raises(DataError, match=r"1 class.*at least two.*Skipped 4: .*b/0.jpg \(truncated"):
        open_dataset(folder)


def test_loose_images_in_the_root_are_reported(folder):
    ti.write_image(folder / "stray.png", ti.class_image(0))
    (folder / "README.md").write_text("my data\n")
    ds = open_dataset(folder)
    assert set(reasons(ds)) == {"stray.png"}
    assert "not inside a class folder" in reasons(ds)["stray.png"]


def test_duplicates_of_training_images_are_dropped_from_val_and_test(tmp_path):
    root = ti.make_image_folder(
        tmp_path / "d", classes=("a", "b"), per_class=4, layout="split_folders",
        splits=("train", "val", "test"),
    )  # fmt: skip
    shutil.copy(root / "train/a/a_000.png", root / "val/a/copy.png")
    shutil.copy(root / "train/b/b_001.jpg", root / "test/b/copy.jpg")
    ds = open_dataset(root)
    pairs = {(d.split, os.path.relpath(d.path, root), os.path.relpath(d.train_path, root))
             for d in ds.report.duplicates_dropped}  # fmt: skip
    assert pairs == {
        ("val", "val/a/copy.png", "train/a/a_000.png"),
        ("test", "test/b/copy.jpg", "train/b/b_001.jpg"),
    }
    assert (len(ds.val), len(ds.test)) == (4, 4)  # the copies are gone
    assert not any("copy" in r.path for r in ds.val + ds.test)
    assert "dropped 2 evaluation images" in ds.report.summary()


def test_carved_val_never_duplicates_train(folder):
    for i in range(4):
        shutil.copy(folder / "a/a_000.png", folder / f"a/dup_{i}.png")
    ds = open_dataset(folder)
    train_hashes = {r.sha256 for r in ds.train}
    assert not any(r.sha256 in train_hashes for r in ds.val)
    assert ds.report.duplicates_dropped  # some copies landed in val and were dropped


def test_progress_is_reported(folder):
    calls: list[tuple[int, int]] = []
    open_dataset(folder, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 18) and calls[-1] == (18, 18)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_second_open_reads_the_scan_cache(folder, cache_dir, caplog):
    first = open_dataset(folder, cache_dir=cache_dir)
    (cache_file,) = (cache_dir / "scan").glob("*.json")
    entries = json.loads(cache_file.read_text())["entries"]
    assert len(entries) == 18 and all("info" in e for e in entries.values())

    # Rewrite an image with garbage of the same size and mtime: a cache hit never notices.
    victim = folder / "a" / "a_000.png"
    st = victim.stat()
    victim.write_bytes(b"\0" * st.st_size)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    with caplog.at_level(logging.INFO, logger="autotransfer.data.scan"):
        second = open_dataset(folder, cache_dir=cache_dir)
    assert "18 from cache, 0 decoded" in caplog.text
    assert second == first

    # A new mtime is a miss: the file is decoded again and now skipped.
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = open_dataset(folder, cache_dir=cache_dir)
    assert "not an image" in reasons(third)["a_000.png"]


def test_skip_reasons_are_cached_too(messy, cache_dir, caplog):
    first = open_dataset(messy, cache_dir=cache_dir)
    with caplog.at_level(logging.INFO, logger="autotransfer.data.scan"):
        second = open_dataset(messy, cache_dir=cache_dir)
    assert "25 from cache, 0 decoded" in caplog.text
    assert second.report == first.report


def test_a_different_pixel_limit_does_not_reuse_the_cache(folder, cache_dir):
    ti.write_grayscale(folder / "a" / "big.png", size=(64, 64))
    assert not open_dataset(folder, cache_dir=cache_dir).report.skipped
    assert "big.png" in reasons(open_dataset(folder, cache_dir=cache_dir, max_pixels=1600))


@pytest.mark.parametrize("garbage", ["{not json", "[]", '{"header": 1}', ""])
def test_corrupted_scan_cache_is_ignored_and_rebuilt(folder, cache_dir, caplog, garbage):
    first = open_dataset(folder, cache_dir=cache_dir)
    (cache_file,) = (cache_dir / "scan").glob("*.json")
    cache_file.write_text(garbage)
    with caplog.at_level(logging.INFO, logger="autotransfer.data.scan"):
        again = open_dataset(folder, cache_dir=cache_dir)
    assert again == first and "0 from cache, 18 decoded" in caplog.text
    assert len(json.loads(cache_file.read_text())["entries"]) == 18


def test_cache_entries_with_a_wrong_shape_are_misses(folder, cache_dir):
    first = open_dataset(folder, cache_dir=cache_dir)
    (cache_file,) = (cache_dir / "scan").glob("*.json")
    data = json.loads(cache_file.read_text())
    for entry in data["entries"].values():
        entry["info"] = {"width": 1}
    cache_file.write_text(json.dumps(data))
    assert open_dataset(folder, cache_dir=cache_dir) == first


def test_scan_lets_no_pillow_bomb_warning_escape(folder):
    ti.write_decompression_bomb(folder / "a" / "bomb.png", side=10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        ds = open_dataset(folder)
    assert reasons(ds)["bomb.png"].startswith("decompression bomb: 10000x10000")
