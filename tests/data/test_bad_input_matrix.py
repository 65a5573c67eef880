"""The bad-input matrix (issue 5): every kind of file a real image folder holds, written for
real under tmp_path, read through the public API (``autotransfer.open_folder`` and
``autotransfer.describe``).

Each input ends in exactly one of: a skip (the file named in ``report.skipped`` with why,
counted by ``describe`` and named, with what to do, in a ``DataWarning``); a conversion or
plain use (the image decodes as upright 8-bit RGB); a ``DataWarning`` that names the files
and the fix; or a ``DataError`` that names the file or folder and says what to do.

Unreadable files: the tests run as root, for whom ``chmod 000`` changes nothing, so the
unreadable inputs are ones the kernel itself refuses or cannot finish: a symlink to
``/proc/self/mem`` (a regular file whose read fails with EIO, as a bad disk sector does),
a named pipe (``open`` would block for ever), a symlink to ``/dev/zero`` (a read never
ends) and a dangling symlink.
"""

from __future__ import annotations

import itertools
import os
import shutil
import unicodedata
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import autotransfer
from autotransfer import DataError, DataSettings, DataWarning
from autotransfer.data.images import load_image
from autotransfer.testing import images as ti

# --- what a case expects -------------------------------------------------------------------


@dataclass(frozen=True)
class Skip:
    """``name`` (relative to the dataset folder) is skipped for ``reason``; the warning
    names it and says ``fix``."""

    name: str
    reason: str
    fix: str = "Fix or remove them"


@dataclass(frozen=True)
class Kept:
    """``name`` is in the dataset, read as ``mode`` on disk, with label and upright size."""

    name: str
    label: str
    mode: str = "RGB"
    size: tuple[int, int] | None = None


@dataclass(frozen=True)
class Warns:
    """A DataWarning says every one of ``needles``."""

    needles: tuple[str, ...]


@dataclass(frozen=True)
class Fails:
    """A DataError whose message says every one of ``needles``."""

    needles: tuple[str, ...]


@dataclass(frozen=True)
class Count:
    """The dataset has these classes and this many images."""

    classes: tuple[str, ...]
    images: int


@dataclass(frozen=True)
class Case:
    build: Callable[[Path], Path]  # writes the files, returns the folder or CSV to open
    expect: tuple[object, ...]
    strict: bool = False


# --- building blocks -----------------------------------------------------------------------


_SEEDS = itertools.count(1000)


def fresh(index: int) -> Image.Image:
    """An image of class ``index`` whose bytes no other file in the folder has."""
    return ti.class_image(index, rng=np.random.default_rng(next(_SEEDS)))


def good(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 4) -> Path:
    return ti.make_image_folder(root, classes=classes, per_class=per_class)


def with_files(**writers: Callable[[Path], object]) -> Callable[[Path], Path]:
    """A good cat/dog folder plus files written by ``writers`` (keyword: path under cat/)."""

    def build(root: Path) -> Path:
        good(root)
        for name, write in writers.items():
            write(root / "cat" / name.replace("__", "."))
        return root

    return build


def sparse(size: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with open(path, "wb") as f:
            f.truncate(size)  # a hole: gigabytes long, nothing on disk

    return write


def symlink(target: str) -> Callable[[Path], None]:
    return lambda path: os.symlink(target, path)


def pdf(path: Path) -> None:
    path.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n")


def animated_gif(path: Path) -> None:
    frames = [fresh(i) for i in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)


def only_one_class(root: Path) -> Path:
    return good(root, classes=("cat",))


def images_at_the_root(root: Path) -> Path:
    root.mkdir(parents=True)
    for i in range(3):
        ti.write_image(root / f"img_{i}.png", ti.class_image(i))
    return root


def empty_class_folder(root: Path) -> Path:
    good(root)
    (root / "empty").mkdir()
    return root


def class_of_bad_files(root: Path) -> Path:
    good(root)
    ti.write_truncated_jpeg(root / "owl" / "0.jpg")
    return root


def stray_root_image(root: Path) -> Path:
    good(root)
    ti.write_image(root / "stray.png", fresh(3))
    return root


def one_image_class(root: Path) -> Path:
    good(root)
    ti.write_image(root / "owl" / "owl_0.png", fresh(5))
    return root


UNICODE = ("crème brûlée", "日本 猫")


def unicode_and_spaces(root: Path) -> Path:
    good(root, classes=UNICODE)
    ti.write_image(root / UNICODE[0] / "photo 1 (copie) ü.png", fresh(0))
    return root


NFD_CAFE, NFC_CAFE = unicodedata.normalize("NFD", "café"), unicodedata.normalize("NFC", "café")


def look_alike_classes(root: Path) -> Path:
    return good(root, classes=(NFC_CAFE, NFD_CAFE, "Cat", "cat"), per_class=2)


NON_UTF8 = os.fsdecode(b"cat/photo-\xff\xfe.png")


def non_utf8_name(root: Path) -> Path:
    good(root)
    with open(os.fsencode(root) + b"/cat/photo-\xff\xfe.png", "wb") as f:
        fresh(1).save(f, format="PNG")
    return root


def nested(root: Path) -> Path:
    good(root)
    ti.write_image(root / "cat" / "indoor" / "2024" / "deep.png", fresh(0))
    ti.write_image(root / "cat" / "album.jpg" / "inside.png", fresh(0))  # a folder
    return root


def symlink_loops(root: Path) -> Path:
    good(root)
    os.symlink("..", root / "cat" / "up")
    os.symlink(".", root / "cat" / "self")
    (root / "dog" / "x").mkdir()
    os.symlink("../x", root / "dog" / "x" / "again")
    return root


def fifo(root: Path) -> Path:
    good(root)
    os.mkfifo(root / "cat" / "pipe.jpg")
    return root


def duplicates_across_splits(root: Path) -> Path:
    ti.make_image_folder(
        root, classes=("cat", "dog"), per_class=4, layout="split_folders",
        splits=("train", "val", "test"),
    )  # fmt: skip
    shutil.copy(root / "train/cat/cat_000.png", root / "val/cat/copy.png")
    shutil.copy(root / "train/dog/dog_001.jpg", root / "test/dog/copy.jpg")
    return root


def one_image_in_two_classes(root: Path) -> Path:
    good(root)
    shutil.copy(root / "cat" / "cat_000.png", root / "dog" / "which.png")
    return root


def clutter(root: Path) -> Path:
    good(root)
    (root / "cat" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "cat" / "._cat_000.png").write_bytes(b"\0\5\26\7 AppleDouble")
    (root / "dog" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    ti.write_image(root / "dog" / ".ipynb_checkpoints" / "x.png", fresh(1))
    return root


def manifest(*extra: str, split: bool = False) -> Callable[[Path], Path]:
    """A CSV of the good cat/dog images plus ``extra`` lines (after writing owl/ images)."""

    def build(root: Path) -> Path:
        good(root)
        ti.write_image(root / "dog" / "odd.png", fresh(6))
        for i in range(2):
            ti.write_image(root / "owl" / f"owl_{i}.png", ti.class_image(4 + i))
        header = "path,label,split" if split else "path,label"
        lines = [header]
        for f in sorted(root.glob("[cd]*/*_00*")):
            cell = ",train" if split else ""
            if split and f.name.startswith(("cat_003", "dog_003")):
                cell = ",val"
            lines.append(f"{f.relative_to(root)},{f.parent.name}{cell}")
        (root / "labels.csv").write_text("\n".join(lines + list(extra)) + "\n", encoding="utf-8")
        return root / "labels.csv"

    return build


# --- the matrix ----------------------------------------------------------------------------

FIX_FOLDER = "Add images to them or remove them"
NOT_IMAGE = "not an image Pillow can identify"
CASES: dict[str, Case] = {
    # files that are not usable images: skipped, counted, named
    "corrupt": Case(with_files(corrupt__png=ti.write_corrupt),
                    (Skip("cat/corrupt.png", "corrupt image data"),)),
    "truncated": Case(with_files(half__jpg=ti.write_truncated_jpeg),
                      (Skip("cat/half.jpg", "truncated image data"),)),
    "zero_bytes": Case(with_files(empty__jpg=ti.write_empty),
                       (Skip("cat/empty.jpg", "empty file (0 bytes)"),)),
    "pdf": Case(with_files(report__pdf=pdf),
                (Skip("cat/report.pdf", NOT_IMAGE),)),
    "text_file": Case(with_files(notes__txt=ti.write_text_as_image),
                      (Skip("cat/notes.txt", NOT_IMAGE),)),
    "text_named_jpg": Case(with_files(photo__jpg=ti.write_text_as_image),
                           (Skip("cat/photo.jpg", NOT_IMAGE),)),
    "garbage_after_jpeg_signature": Case(with_files(sig__jpg=ti.write_garbage),
                                         (Skip("cat/sig.jpg", NOT_IMAGE),)),
    "4_gib_video_not_read": Case(with_files(clip__mp4=sparse(4 * 2**30)),
                                 (Skip("cat/clip.mp4", "4,096 MiB, not read"),)),
    "decompression_bomb": Case(with_files(bomb__png=ti.write_decompression_bomb),
                               (Skip("cat/bomb.png", "decompression bomb", "downscale it"),)),
    "bomb_below_pillow_limit": Case(
        with_files(bomb__png=lambda p: ti.write_decompression_bomb(p, side=10_000)),
        (Skip("cat/bomb.png", "decompression bomb: 10000x10000", "downscale it"),)),
    # unreadable for root too
    "unreadable_eio": Case(with_files(mem__jpg=symlink("/proc/self/mem")),
                           (Skip("cat/mem.jpg", "cannot read file (Input/output error)"),)),
    "named_pipe": Case(fifo, (Skip("cat/pipe.jpg", "not a regular file but a named pipe"),)),
    "device": Case(with_files(zero__png=symlink("/dev/zero")),
                   (Skip("cat/zero.png", "not a regular file but a character device"),)),
    "dangling_symlink": Case(with_files(gone__png=symlink("/nonexistent/gone.png")),
                             (Skip("cat/gone.png", "a broken symlink?"),)),
    # images in other modes: converted to RGB on load, counted by mode
    "grayscale": Case(with_files(gray__png=ti.write_grayscale),
                      (Kept("cat/gray.png", "cat", "L"),)),
    "palette": Case(with_files(pal__png=ti.write_palette), (Kept("cat/pal.png", "cat", "P"),)),
    "rgba": Case(with_files(rgba__png=ti.write_rgba), (Kept("cat/rgba.png", "cat", "RGBA"),)),
    "cmyk": Case(with_files(cmyk__jpg=ti.write_cmyk_jpeg), (Kept("cat/cmyk.jpg", "cat", "CMYK"),)),
    "16_bit": Case(with_files(deep__png=ti.write_16bit_png),
                   (Kept("cat/deep.png", "cat", "I;16"),)),
    "animated_gif": Case(with_files(anim__gif=animated_gif), (Kept("cat/anim.gif", "cat", "P"),)),
    "exif_rotated": Case(with_files(portrait__jpg=ti.write_exif_rotated_jpeg),
                         (Kept("cat/portrait.jpg", "cat", size=(20, 40)),)),
    "png_named_jpg": Case(with_files(really_png__jpg=lambda p: ti.write_image(
        p, fresh(0), format="PNG")), (Kept("cat/really_png.jpg", "cat"),)),
    "upper_case_suffix": Case(with_files(LOUD__JPEG=lambda p: ti.write_image(
        p, fresh(0), format="JPEG")), (Kept("cat/LOUD.JPEG", "cat"),)),
    "one_pixel": Case(with_files(dot__png=lambda p: ti.write_image(p, ti.class_image(0, (1, 1)))),
                      (Kept("cat/dot.png", "cat", size=(1, 1)),)),
    # folder shapes
    "empty_class_folder": Case(empty_class_folder, (
        Skip("empty", "class folder with no readable images", FIX_FOLDER),
        Warns(("Ignored class folders without readable images: empty", FIX_FOLDER)),
        Count(("cat", "dog"), 8))),
    "class_of_bad_files_only": Case(class_of_bad_files, (
        Skip("owl", "class folder with no readable images", FIX_FOLDER),
        Skip("owl/0.jpg", "truncated image data"), Count(("cat", "dog"), 8))),
    "one_class_only": Case(only_one_class, (
        Fails(("1 class(es)", "(cat)", "at least two classes", "root/<class>/<image>")),)),
    "images_at_the_root": Case(images_at_the_root, (
        Fails(("0 class(es)", "img_0.png", "move it into the folder of its class")),)),
    "stray_image_at_the_root": Case(stray_root_image, (
        Skip("stray.png", "image directly in the root folder",
             "move it into the folder of its class"), Count(("cat", "dog"), 8))),
    "class_with_one_image": Case(one_image_class, (
        Warns(("single image", "owl (owl/owl_0.png)", "Add images of them")),
        Kept("owl/owl_0.png", "owl"))),
    "unicode_and_spaces": Case(unicode_and_spaces, (
        Kept(f"{UNICODE[0]}/photo 1 (copie) ü.png", UNICODE[0]), Count(UNICODE, 9))),
    "look_alike_class_names": Case(look_alike_classes, (
        Warns(("differ only in case, spaces or Unicode form", f"{ascii(NFD_CAFE)} and "
               f"{ascii(NFC_CAFE)}", "'Cat' and 'cat'", "Merge their folders")),
        Count(tuple(sorted(("Cat", "cat", NFC_CAFE, NFD_CAFE))), 8))),
    "non_utf8_file_name": Case(non_utf8_name, (Kept(NON_UTF8, "cat"),)),
    "nested_folders": Case(nested, (Kept("cat/indoor/2024/deep.png", "cat"),
                                    Kept("cat/album.jpg/inside.png", "cat"))),
    "symlink_loops": Case(symlink_loops, (Count(("cat", "dog"), 8),)),
    "os_clutter_ignored": Case(clutter, (Count(("cat", "dog"), 8),)),
    "duplicates_across_splits": Case(duplicates_across_splits, (
        Warns(("Dropped 2 validation/test image(s) whose bytes equal a training image",
               "val/cat/copy.png = train/cat/cat_000.png",
               "test/dog/copy.jpg = train/dog/dog_001.jpg", "Remove the copies")),
        Count(("cat", "dog"), 16))),
    "one_image_in_two_classes": Case(one_image_in_two_classes, (
        Warns(("1 image(s) appear under more than one class",
               "cat/cat_000.png (cat)", "dog/which.png (dog)", "Keep each in the class")),)),
    # CSV manifests
    "manifest_missing_path": Case(manifest("cat/gone.png,cat"), (
        Skip("cat/gone.png", "listed on manifest line 10 but does not exist",
             "fix the path or remove the line"),)),
    "manifest_path_is_a_folder": Case(manifest("dog,dog"), (
        Skip("dog", "listed on manifest line 10 but is a folder"),)),
    "manifest_repeated_line": Case(manifest("cat/cat_000.png,dog"), (
        Skip("cat/cat_000.png", "listed again on manifest line 10 (first on line 2)",
             "remove the repeated line"),)),
    "manifest_unknown_label": Case(manifest("dog/odd.png,dgo"), (
        Warns(("single image", "dgo (dog/odd.png; did you mean 'dog'?)", "fix the label")),
        Kept("dog/odd.png", "dgo"))),
    "manifest_label_never_trained": Case(
        manifest("owl/owl_0.png,owl,test", "owl/owl_1.png,owl,test", split=True), (
            Warns(("Classes with no training images: owl (owl/owl_0.png)",
                   "add training images")),
            Count(("cat", "dog", "owl"), 10))),
    # strict mode turns skips into one error that lists them
    "strict": Case(with_files(corrupt__png=ti.write_corrupt, empty__jpg=ti.write_empty), (
        Fails(("2 file(s)", "cat/corrupt.png: corrupt image data", "cat/empty.jpg: empty file",
               "Fix or remove them, or pass strict=False")),), strict=True),
}  # fmt: skip


def rel(path: str, ds) -> str:
    base = Path(ds.root).parent if ds.layout == "manifest" else Path(ds.root)
    return os.path.relpath(path, base)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input(tmp_path, case):
    src = case.build(tmp_path / "data")
    settings = DataSettings(strict=case.strict)
    failures = [e for e in case.expect if isinstance(e, Fails)]
    if failures:
        with pytest.raises(DataError) as err:
            autotransfer.describe(src, similarity=False, data_settings=settings)
        for needle in failures[0].needles:
            assert needle in str(err.value)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = autotransfer.open_folder(src, settings)
        described = autotransfer.describe(src, similarity=False, data_settings=settings)
    told = "\n".join(str(w.message) for w in caught if issubclass(w.category, DataWarning))
    skips = [e for e in case.expect if isinstance(e, Skip)]
    skipped = {rel(s.path, ds): s.reason for s in ds.report.skipped}
    assert len(skipped) == len(skips) == described.skipped_files  # counted, nothing else
    for e in skips:
        assert e.reason in skipped[e.name], skipped
        assert e.name in told and e.fix in told, told
    records = {rel(r.path, ds): r for r in ds.records}
    for e in case.expect:
        if isinstance(e, Kept):
            r = records[e.name]
            assert (ds.classes[r.label], r.mode) == (e.label, e.mode)
            img = load_image(r.path)  # what training and prediction read
            assert img.mode == "RGB" and img.size == (r.width, r.height)
            if e.size:
                assert img.size == e.size
            if e.mode != "RGB":
                assert ds.report.converted_modes[e.mode] == 1
                assert described.color_modes[e.mode] == 1
        elif isinstance(e, Warns):
            for needle in e.needles:
                assert needle in told, told
        elif isinstance(e, Count):
            assert (ds.classes, len(ds.records)) == (e.classes, e.images)
    if not any(isinstance(e, (Skip, Warns)) for e in case.expect):
        assert not told  # nothing to say about a clean input


def test_a_bad_image_read_alone_names_the_file_and_the_fix(tmp_path):
    """predict and the training loader read through load_image: errors, never hangs."""
    bad = {
        "corrupt.png": (ti.write_corrupt, "corrupt image data", "Re-export or remove it"),
        "empty.jpg": (ti.write_empty, "empty file", "Delete it or replace it"),
        "text.jpg": (ti.write_text_as_image, "not an image", "Remove it or move it"),
        "pipe.jpg": (os.mkfifo, "named pipe", "Remove it, or replace it"),
        "mem.jpg": (symlink("/proc/self/mem"), "Input/output error", "or remove it"),
        "missing.png": (lambda p: None, "No such file", "Check that it exists"),
        "folder.png": (os.mkdir, "not a regular file but a folder", "Remove it, or replace"),
    }
    for name, (write, what, fix) in bad.items():
        path = tmp_path / name
        write(path)
        with pytest.raises(DataError) as err:
            load_image(path)
        msg = str(err.value)
        assert str(path) in msg and what in msg and fix in msg, msg


def test_a_large_image_is_identified_from_its_header_and_read(tmp_path):
    """Above 16 MiB the header is checked first; a real image that large still loads."""
    path = tmp_path / "big.bmp"
    Image.new("RGB", (2600, 2200), (10, 200, 30)).save(path)  # 17 MB, uncompressed
    assert path.stat().st_size > 16 * 2**20
    assert load_image(path).getpixel((5, 5)) == (10, 200, 30)
