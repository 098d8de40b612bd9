"""Model-fit checks: colour photos with a symbol model (and the reverse) are noticed, and the fitting model chosen."""

from __future__ import annotations

import numpy as np
import pytest

from l2c_explorer.data import find_images
from l2c_explorer.model_fit import best_model, check_fit, model_statistics, pixel_statistics, sample_statistics
from l2c_explorer.similarity_model import load_similarity_model


@pytest.fixture(scope="module")
def photo_stats(demo_photos):
    return sample_statistics(find_images(demo_photos)[0])


@pytest.fixture(scope="module")
def symbol_stats(demo_keble):
    return sample_statistics(find_images(demo_keble)[0])


@pytest.fixture(scope="module")
def omniglot_stats():
    model = load_similarity_model("omniglot")
    return model_statistics(model.card, model.preprocessing.to_dict())


def test_photos_are_colour_and_drawings_are_light_grayscale(photo_stats, symbol_stats):
    assert photo_stats["colour"] >= 0.75 and photo_stats["n_images_looked_at"] == 48
    assert symbol_stats["colour"] == 0.0 and symbol_stats["light_background"] == 1.0


def test_pixel_statistics_of_constructed_images():
    gray = np.full((4, 3, 8, 8), 200, np.uint8)
    red = np.zeros((4, 3, 8, 8), np.uint8)
    red[:, 0] = 255
    stats = pixel_statistics(np.concatenate([gray, red]))
    assert stats == {"colour": 0.5, "light_background": 0.5, "n_images_looked_at": 8}


def test_a_symbol_model_does_not_fit_photos_and_says_why(photo_stats, symbol_stats, omniglot_stats):
    verdict = check_fit("omniglot", omniglot_stats, photo_stats)
    assert not verdict.fits
    assert "'omniglot'" in verdict.message and "colour images" in verdict.message
    assert check_fit("omniglot", omniglot_stats, symbol_stats).fits


def test_a_photo_model_does_not_fit_drawings(photo_stats, symbol_stats):
    verdict = check_fit("photos", photo_stats, symbol_stats)
    assert not verdict.fits and "drawings or scans" in verdict.message
    assert check_fit("photos", photo_stats, photo_stats).fits


def test_the_fitting_model_is_proposed(photo_stats, symbol_stats, omniglot_stats):
    models = {"omniglot": omniglot_stats, "photos": photo_stats}
    assert best_model(photo_stats, models) == "photos"
    assert best_model(symbol_stats, models) == "omniglot"
    assert best_model(photo_stats, {}) is None


def test_unreadable_files_do_not_count(tmp_path, demo_photos):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    files = [bad] + find_images(demo_photos)[0][:5]
    assert sample_statistics(files)["n_images_looked_at"] == 5
