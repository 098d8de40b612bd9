"""Named hyper-parameter presets, so a shipped model is reproduced by one documented command."""

from __future__ import annotations

from .augment import AffineJitter
from .errors import InputError

SIMILARITY_RECIPES: dict[str, dict] = {
    # Sensible for any labelled folder: short, modest augmentation, no rotation classes.
    "default": {},
    # The shipped `omniglot` model: handwritten symbols, alphabet/character folders.
    "omniglot": {
        "epochs": 20,
        "class_depth": 2,
        "proto_weight": 1.0,
        "same_group": 0.5,
        "quarter_turns": True,
        "jitter": AffineJitter(rotation=10.0, scale=0.15, shift=0.1, shear=0.15),
    },
}


def similarity_recipe(name: str) -> dict:
    """A copy of the named recipe's keyword arguments for :class:`~l2c_explorer.similarity.SimilarityLearner`."""
    if name not in SIMILARITY_RECIPES:
        raise InputError(f"Unknown recipe {name!r}; choose from {', '.join(SIMILARITY_RECIPES)}.")
    return dict(SIMILARITY_RECIPES[name])
