"""Training augmentation of uint8 batches (strategies/images.py)."""

from __future__ import annotations

import torch

from autotransfer.strategies.images import augment_batch, center_crop


def _gradient_batch(n: int = 32, side: int = 48) -> torch.Tensor:
    """Images that brighten from left to right, so a flip is visible."""
    ramp = torch.linspace(0, 255, side).round().to(torch.uint8)
    return ramp.view(1, 1, 1, side).expand(n, 3, side, side).contiguous()


def test_same_seed_same_crops_and_values_stay_in_range():
    x = torch.randint(0, 256, (8, 3, 40, 40), dtype=torch.uint8)
    a = augment_batch(x, 32, "crop_flip", torch.Generator().manual_seed(3))
    b = augment_batch(x, 32, "crop_flip", torch.Generator().manual_seed(3))
    c = augment_batch(x, 32, "crop_flip", torch.Generator().manual_seed(4))
    assert a.shape == (8, 3, 32, 32) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_a_flat_image_stays_flat():  # crops never sample outside the image
    x = torch.full((16, 3, 40, 40), 77, dtype=torch.uint8)
    out = augment_batch(x, 32, "crop_flip", torch.Generator().manual_seed(0))
    assert torch.all(out == 77)


def test_crop_flip_flips_about_half_and_crop_never_flips():
    x = _gradient_batch()

    def rising(out: torch.Tensor) -> torch.Tensor:
        return out[:, 0, :, -1].float().mean(1) > out[:, 0, :, 0].float().mean(1)

    flipped = ~rising(augment_batch(x, 32, "crop_flip", torch.Generator().manual_seed(0)))
    assert 6 <= int(flipped.sum()) <= 26
    assert rising(augment_batch(x, 32, "crop", torch.Generator().manual_seed(0))).all()


def test_none_is_the_centre_crop():
    x = torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8)
    out = augment_batch(x, 32, "none", torch.Generator().manual_seed(0))
    assert torch.equal(out, center_crop(x, 32)) and torch.equal(out, x[:, :, 4:36, 4:36])


def test_validation_images_are_the_pixels_predict_gives_the_model(tmp_path):
    """The training loop's validation split and Classifier.predict feed a model the same
    tensor, whatever the aspect ratio, the interpolation, and for a JPEG decoded at a
    reduced scale (a rounding of one pixel, or bicubic for a bilinear model, gave a
    trained model's two scores 2 validation images of 49 apart)."""
    import numpy as np
    from PIL import Image

    import autotransfer
    from autotransfer.data.images import load_image
    from autotransfer.preprocessing import Preprocessing
    from autotransfer.strategies.images import ImageCache, normalize

    rng = np.random.default_rng(0)
    sizes = [
        (97, 61, "png"),
        (61, 97, "png"),
        (640, 481, "jpg"),
        (75, 75, "png"),
        (333, 1000, "jpg"),
        (50, 40, "png"),
    ]
    for split in ("train", "val"):
        for i, (w, h, ext) in enumerate(sizes):
            folder = tmp_path / "data" / split / "ab"[i % 2]
            folder.mkdir(parents=True, exist_ok=True)
            coarse = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
            image = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
            image.save(folder / f"im{i}.{ext}", quality=90)
    ds = autotransfer.open_folder(tmp_path / "data")
    records = ds.split("val")
    assert len(records) == len(sizes)
    cache = ImageCache(ds)
    for interpolation, crop_pct, res in (("bicubic", 0.875, 48), ("bilinear", 0.95, 40)):
        prep = Preprocessing(
            resolution=res,
            mean=(0.5, 0.4, 0.3),
            std=(0.2, 0.25, 0.3),
            crop_pct=crop_pct,
            interpolation=interpolation,
        )
        side = int(res / crop_pct)
        x, _ = cache.split("val", side=side, interpolation=interpolation, crop=res)
        ours = normalize(center_crop(x, res), prep.mean, prep.std, torch.device("cpu"))
        transform = prep.transform()
        theirs = torch.stack([transform(load_image(r.path, draft=side)) for r in records])
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_a_split_decoded_on_threads_keeps_its_order_and_reports_every_image(dataset):
    """Threads decode a split in parallel; the tensor is in the split's order (each image
    the same pixels as decoding it alone) and progress counts up to the split's size."""
    from autotransfer.strategies.images import ImageCache, square

    seen: list[tuple[str, int, int]] = []
    cache = ImageCache(dataset, progress=lambda what, done, total: seen.append((what, done, total)))
    x, y = cache.split("train", side=20, crop=16)
    records = dataset.split("train")
    assert x.shape == (len(records), 3, 16, 16)
    assert y.tolist() == [r.label for r in records]
    for i, rec in enumerate(records):
        assert torch.equal(x[i], torch.from_numpy(square(rec.path, 20, crop=16)))
    assert seen == [("decoding train", i, len(records)) for i in range(1, len(records) + 1)]
    assert cache.split("train", side=20, crop=16)[0] is x  # decoded once
