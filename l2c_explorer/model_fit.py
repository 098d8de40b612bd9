"""Does a similarity model fit a folder? Colour photos with a model of grayscale symbols (or the reverse)
give meaningless groups, and a new user cannot tell why. This compares what the model learnt from with a
sample of the folder and says so in plain words, and picks the model that fits best.

Torch-free (numpy and Pillow only), so the app can run it the moment a folder is chosen.

The two facts compared are cheap and robust:

``colour``
    the share of images whose mean spread over R, G and B exceeds :data:`COLOUR_CHROMA`;
``light_background``
    the share of images whose border is light (dark ink or objects on paper).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# An image counts as colour when its pixels' mean spread over R, G and B exceeds this (0-255): JPEG
# artefacts and scanner tints of grayscale images stay below about 6, photographs of everyday things lie
# well above (Tiny ImageNet photos: median 33, about 90% above 12).
COLOUR_CHROMA = 12.0
# A folder is "colour" when at least this share of its images are, "grayscale" when at most LOW_SHARE are.
HIGH_SHARE = 0.5
LOW_SHARE = 0.1
SAMPLE_IMAGES = 48  # images looked at per folder: the answer settles long before (it is a share)
SAMPLE_SIDE = 48  # side the sampled images are reduced to


def pixel_statistics(pixels: np.ndarray) -> dict:
    """``colour`` and ``light_background`` shares of uint8 images of shape (n, C, H, W), C = 1 or 3."""
    x = np.asarray(pixels, dtype=np.float32)
    if len(x) == 0:
        return {"colour": 0.0, "light_background": 0.0, "n_images_looked_at": 0}
    chroma = (x.max(axis=1) - x.min(axis=1)).mean(axis=(1, 2)) if x.shape[1] == 3 else np.zeros(len(x))
    border = np.concatenate([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], axis=-1).mean(axis=(1, 2))
    return {
        "colour": round(float((chroma > COLOUR_CHROMA).mean()), 4),
        "light_background": round(float((border > 127.5).mean()), 4),
        "n_images_looked_at": int(len(x)),
    }


def image_statistics(pixels, *, sample: int = 2000, seed: int = 0) -> dict:
    """What kind of images these are (:func:`pixel_statistics`), from uint8 pixels (n, C, H, W) (a torch tensor);
    at most ``sample`` images (a seeded random subset) are looked at."""
    import torch

    n = len(pixels)
    if n > sample:
        pixels = pixels[torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:sample]]
    return pixel_statistics(pixels.numpy())


def sample_statistics(paths: Sequence[str | os.PathLike], *, n: int = SAMPLE_IMAGES, seed: int = 0) -> dict:
    """:func:`pixel_statistics` of up to ``n`` of the image files ``paths`` (an evenly spread, seeded sample);
    unreadable files are passed over."""
    from PIL import Image

    from .data import load_reduced

    paths = list(paths)
    if len(paths) > n:
        paths = [paths[i] for i in np.sort(np.random.default_rng(seed).choice(len(paths), n, replace=False))]
    arrays = []
    for path in paths:
        try:
            with Image.open(path) as img:
                # within the decoding budget, reduced before any conversion (a JPEG decoded at reduced size)
                rgb = load_reduced(img, 4 * SAMPLE_SIDE, "RGB").convert("RGB").resize((SAMPLE_SIDE, SAMPLE_SIDE))
                arrays.append(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1))
        except Exception:  # the reading step reports bad files; here they simply do not count
            continue
    return pixel_statistics(np.stack(arrays) if arrays else np.zeros((0, 3, 1, 1), np.uint8))


def model_statistics(card: dict, preprocessing: dict | None = None) -> dict:
    """What a model learnt from, from its card; older cards without statistics are described by their
    preprocessing (a grayscale model has seen no colour; an inverting one, dark ink on light paper)."""
    recorded = card.get("trained_on", {}).get("image_statistics")
    if recorded:
        return recorded
    prep = preprocessing or {}
    channels = int(prep.get("channels", card.get("architecture", {}).get("in_channels", 1)))
    return {"colour": 0.0 if channels == 1 else None, "light_background": 1.0 if prep.get("invert") else None}


def describe(stats: dict) -> str:
    """'colour photos', 'grayscale drawings on light paper', ... for people."""
    colour, light = stats.get("colour"), stats.get("light_background")
    if colour is not None and colour >= HIGH_SHARE:
        return "colour images"
    if light is not None and light >= HIGH_SHARE:
        return "grayscale drawings or scans on a light background"
    if colour is not None and colour <= LOW_SHARE:
        return "grayscale images"
    return "a mix of colour and grayscale images"


@dataclass(frozen=True)
class FitVerdict:
    """The outcome of :func:`check_fit`: ``fits`` False comes with a ``message`` for the user."""

    fits: bool
    message: str = ""


def check_fit(model_name: str, model_stats: dict, folder_stats: dict) -> FitVerdict:
    """Whether a model that learnt from ``model_stats`` suits a folder with ``folder_stats``."""
    m_colour, f_colour = model_stats.get("colour"), folder_stats.get("colour")
    m_light, f_light = model_stats.get("light_background"), folder_stats.get("light_background")
    if not folder_stats.get("n_images_looked_at", 1):
        return FitVerdict(True)
    mismatch = (
        (m_colour is not None and m_colour <= LOW_SHARE and f_colour >= HIGH_SHARE)
        or (m_colour is not None and m_colour >= HIGH_SHARE and f_colour <= LOW_SHARE)
        or (m_light is not None and f_light is not None and m_colour is not None and f_colour <= LOW_SHARE
            and abs(m_light - f_light) >= HIGH_SHARE)
    )
    if not mismatch:
        return FitVerdict(True)
    return FitVerdict(
        False,
        f"This folder holds {describe(folder_stats)}, but the similarity model '{model_name}' learnt from "
        f"{describe(model_stats)}: it will group these images by look (brightness, strokes), not by category.",
    )


def best_model(folder_stats: dict, models: dict[str, dict]) -> str | None:
    """The name of the model (``name -> model statistics``) that fits the folder best; None when none is given.

    Fitting models come first; among them, the one whose colour and background shares are closest.
    """
    if not models:
        return None

    def distance(item) -> tuple:
        name, stats = item
        gaps = [abs((stats.get(key) if stats.get(key) is not None else 0.5) - folder_stats.get(key, 0.5))
                for key in ("colour", "light_background")]
        return (not check_fit(name, stats, folder_stats).fits, sum(gaps), name)

    return min(models.items(), key=distance)[0]


def advice(model_name: str, model_stats: dict, folder_stats: dict, others: dict[str, dict]) -> tuple[str | None, str]:
    """What to tell a user who is about to run ``model_name`` on a folder: (the model to use instead, message).

    ``others`` maps the other available models to their statistics. No advice: ``(None, "")``.
    """
    verdict = check_fit(model_name, model_stats, folder_stats)
    if verdict.fits:
        return None, ""
    candidates = {name: stats for name, stats in others.items() if name != model_name}
    better = best_model(folder_stats, candidates)
    if better is not None and check_fit(better, candidates[better], folder_stats).fits:
        return better, f"{verdict.message} The model '{better}' learnt from {describe(candidates[better])}: use it."
    return None, verdict.message + " No available model fits them better: train one on labelled images like these."
