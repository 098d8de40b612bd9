"""Batched augmentation: affine jitter for symbols, crops/flips/colour for photos; seeded and recorded in cards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from l2c_explorer.augment import (
    NO_JITTER,
    AffineJitter,
    PhotoAugment,
    as_augmentation,
    augment_batch,
    augmentation_from_dict,
)
from l2c_explorer.data import load_image_folder, to_unit
from l2c_explorer.recipes import similarity_recipe

# the photo augmentation of the from-scratch photo recipe (the shipped model's top trains on fixed features)
PHOTO = as_augmentation(similarity_recipe("photos-scratch")["augmentation"])
SYMBOLS = as_augmentation(similarity_recipe("omniglot")["augmentation"])


@pytest.fixture(scope="module")
def photos(demo_photos):
    return to_unit(load_image_folder(demo_photos, size=32, channels=3).pixels[:40], invert=False)


def test_photo_augmentation_keeps_shape_and_range_and_is_seeded(photos):
    aug = PHOTO
    a = augment_batch(photos, aug, generator=torch.Generator().manual_seed(1))
    b = augment_batch(photos, aug, generator=torch.Generator().manual_seed(1))
    c = augment_batch(photos, aug, generator=torch.Generator().manual_seed(2))
    assert a.shape == photos.shape and a.dtype == photos.dtype
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_a_full_crop_with_certain_flip_and_no_colour_change_is_an_exact_mirror(photos):
    aug = PhotoAugment(min_area=1.0, aspect=1.0, flip=1.0, brightness=0.0, contrast=0.0, saturation=0.0)
    out = augment_batch(photos, aug, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, photos.flip(3), atol=1e-5, rtol=0)  # bilinear sampling at pixel centres


def test_crops_zoom_in(photos):
    aug = PhotoAugment(min_area=0.25, aspect=4 / 3, flip=0.0, brightness=0.0, contrast=0.0, saturation=0.0)
    out = augment_batch(photos, aug, generator=torch.Generator().manual_seed(0))
    # a zoomed crop is smoother than the original: less energy between neighbouring pixels
    def roughness(x):
        return float((x[..., 1:] - x[..., :-1]).abs().mean())

    assert roughness(out) < roughness(photos)


def test_photos_have_an_up():
    with pytest.raises(ValueError, match="quarter turns"):
        augment_batch(torch.rand(2, 3, 8, 8), PHOTO, quarter_turns=torch.tensor([1, 2]))


def test_augmentations_round_trip_through_model_cards():
    for aug in (SYMBOLS, PHOTO):
        assert augmentation_from_dict(aug.to_dict()) == aug
        assert as_augmentation(aug.to_dict()) == as_augmentation(aug) == aug
    # cards written before photo augmentation existed record the affine jitter without a kind
    legacy = {"rotation": 10.0, "scale": 0.15, "shift": 0.1, "shear": 0.15}
    assert augmentation_from_dict(legacy) == AffineJitter(10.0, 0.15, 0.1, 0.15) == SYMBOLS
    assert augmentation_from_dict(None) == NO_JITTER


def test_affine_jitter_moves_pixels_but_not_ink_much():
    img = torch.zeros(4, 1, 32, 32)
    img[:, :, 12:20, 12:20] = 1.0
    out = augment_batch(img, SYMBOLS, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(out, img)
    np.testing.assert_allclose(out.sum(dim=(1, 2, 3)).numpy(), 64.0, rtol=0.4)  # zoom changes the area a little
