"""load_image / probe_image: every mode becomes upright 8-bit RGB; bad files are refused."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
from PIL import Image, ImageFile

from autotransfer.data.images import (
    DataError,
    UnreadableImageError,
    load_image,
    probe_image,
    to_rgb,
)
from autotransfer.testing import images as ti


def pixel(img: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    return tuple(img.getpixel(xy))


def test_grayscale_becomes_rgb_with_equal_channels(tmp_path):
    path = ti.write_grayscale(tmp_path / "g.png")
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (32, 32)
    a = np.asarray(img)
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
    assert probe_image(path).mode == "L"


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    img = load_image(ti.write_palette(tmp_path / "p.png"))
    assert img.mode == "RGB"
    assert pixel(img, (0, 0)) == (255, 0, 0)
    assert pixel(img, (31, 0)) == (255, 255, 255)


def test_palette_without_transparency_keeps_colours(tmp_path):
    img = load_image(ti.write_palette(tmp_path / "p.png", transparency=False))
    assert pixel(img, (0, 0)) == (255, 0, 0) and pixel(img, (31, 0)) == (0, 0, 0)


def test_rgba_and_la_are_composited_on_white(tmp_path):
    img = load_image(ti.write_rgba(tmp_path / "r.png"))
    assert pixel(img, (0, 0)) == (255, 0, 0) and pixel(img, (31, 31)) == (255, 255, 255)
    half = to_rgb(Image.new("LA", (2, 2), (0, 128)))  # black at half opacity on white
    assert pixel(half, (0, 0)) == pytest.approx((127, 127, 127), abs=1)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = ti.write_cmyk_jpeg(tmp_path / "k.jpg")
    img = load_image(path)
    assert img.mode == "RGB" and probe_image(path).mode == "CMYK"
    mean = np.asarray(img).reshape(-1, 3).mean(0)
    assert mean[2] > mean[0] + 50  # class 2 of class_image is blue


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    path = ti.write_16bit_png(tmp_path / "s.png", size=(33, 4))
    assert probe_image(path).mode.startswith("I")
    row = np.asarray(load_image(path))[0, :, 0]
    assert row[0] == 0 and row[-1] == 255
    assert row[16] == pytest.approx(128, abs=2)  # clipping would give 255 here
    assert (np.diff(row.astype(int)) >= 0).all()


@pytest.mark.parametrize(
    "array, expected",
    [
        (np.array([[0, 32896, 65535]], dtype=">u2"), [0, 128, 255]),  # I;16B
        (np.array([[0, 32896, 65535]], dtype=np.int32), [0, 128, 255]),  # I within 16 bits
        (np.array([[-100, 0, 100]], dtype=np.int32), [0, 128, 255]),  # I stretched
        (np.array([[0.0, 0.5, 1.0]], dtype=np.float32), [0, 128, 255]),  # F in [0, 1]
        (np.array([[-3.0, 0.0, 3.0]], dtype=np.float32), [0, 128, 255]),  # F stretched
    ],
)
def test_wide_grayscale_modes_scale_to_8_bits(array, expected):
    img = Image.fromarray(array)
    assert img.mode in ("I;16B", "I", "F")
    got = np.asarray(to_rgb(img))[0, :, 1].astype(int)
    assert np.abs(got - expected).max() <= 1


def test_exif_orientation_is_applied(tmp_path):
    path = ti.write_exif_rotated_jpeg(tmp_path / "x.jpg", size=(40, 20))
    with Image.open(path) as raw:
        assert raw.size == (40, 20)
        assert raw.getpixel((2, 2))[0] > 200 and raw.getpixel((2, 2))[1] < 60  # red top-left
    img = load_image(path)
    assert img.size == (20, 40)
    top_right, top_left = pixel(img, (17, 2)), pixel(img, (2, 2))
    assert top_right[0] > 200 and top_right[1] < 60  # red moved to the top-right
    assert min(top_left) > 200  # white
    assert (probe_image(path).width, probe_image(path).height) == (20, 40)


def test_decompression_bomb_is_refused_naming_the_file(tmp_path):
    path = ti.write_decompression_bomb(tmp_path / "bomb.png")
    assert path.stat().st_size < 1000
    with pytest.raises(DataError, match="decompression bomb") as err:
        load_image(path)
    assert str(path) in str(err.value)
    with pytest.raises(UnreadableImageError, match="decompression bomb"):
        probe_image(path)


def test_bomb_warnings_stay_quiet_while_any_thread_decodes_and_come_back_after():
    """Decoding threads each enter quiet_bomb_warnings; one thread's leaving must not turn
    the warning back on for the others, nor leave it off once all have left (what plain
    ``warnings.catch_warnings`` blocks from several threads do)."""
    import threading
    import time

    from autotransfer.data.images import quiet_bomb_warnings

    def quiet() -> bool:
        return any(
            f[0] == "ignore" and f[2] is Image.DecompressionBombWarning for f in warnings.filters
        )

    before = list(warnings.filters)
    start = threading.Barrier(8)
    loud: list[int] = []

    def decode(k: int) -> None:
        start.wait()
        for _ in range(300):
            with quiet_bomb_warnings():
                time.sleep(0)  # let the other threads in and out meanwhile (as decoding does)
                if not quiet():
                    loud.append(k)

    threads = [threading.Thread(target=decode, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not loud
    assert warnings.filters == before


def test_pixel_limit_is_overridable(tmp_path):
    path = ti.write_grayscale(tmp_path / "g.png", size=(64, 64))
    with pytest.raises(DataError, match=r"64x64 = 4,096 pixels .* limit of 1,000"):
        load_image(path, max_pixels=1000)
    assert load_image(path, max_pixels=4096).size == (64, 64)
    assert load_image(path, max_pixels=None).size == (64, 64)


@pytest.mark.parametrize(
    "writer, reason",
    [
        (ti.write_empty, "empty file"),
        (ti.write_text_as_image, "not an image"),
        (ti.write_garbage, "not an image"),
        (ti.write_corrupt, "corrupt"),
        (ti.write_truncated_jpeg, "truncated"),
    ],
)
def test_bad_files_are_refused_with_a_reason(tmp_path, writer, reason):
    path = writer(tmp_path / "bad.jpg")
    with pytest.raises(UnreadableImageError) as err:
        probe_image(path)
    assert reason in err.value.reason and err.value.path == str(path)
    assert isinstance(err.value, ValueError)  # DataError is a ValueError too
    with pytest.raises(DataError):
        load_image(path)


def test_probe_catches_truncation_even_if_pillow_was_told_to_allow_it(tmp_path, monkeypatch):
    path = ti.write_truncated_jpeg(tmp_path / "t.jpg")
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(UnreadableImageError, match="truncated"):
        probe_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


def test_probe_records_hash_size_and_disk_mode(tmp_path):
    path = ti.write_image(tmp_path / "i.png", ti.class_image(3, (24, 16)))
    info = probe_image(path)
    assert (info.width, info.height, info.mode) == (24, 16, "RGB")
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert type(info).from_dict(info.to_dict()) == info


@pytest.mark.parametrize("side", [10_000, 30_000])  # above Pillow's warning, above its error
def test_bombs_raise_our_error_and_no_pillow_warning(tmp_path, side):
    path = ti.write_decompression_bomb(tmp_path / "bomb.png", side=side)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for read in (load_image, probe_image):
            with pytest.raises(UnreadableImageError) as err:
                read(path)
            assert err.value.reason.startswith("decompression bomb")
