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
