"""Named hyper-parameter presets, so a shipped model is reproduced by one documented command.

A recipe replaces some defaults of :data:`l2c_explorer.options.TRAIN_SIMILARITY`; like the options, it is
plain data (the jitter ranges as a mapping), so the command line reads it without importing torch.
"""

from __future__ import annotations

from .errors import InputError

SIMILARITY_RECIPES: dict[str, dict] = {
    # Sensible for any labelled folder: the options' defaults (short, modest augmentation, no rotation classes).
    "default": {},
    # The shipped `omniglot` model: handwritten symbols, alphabet/character folders.
    "omniglot": {
        "epochs": 20,
        "class_depth": 2,
        "proto_weight": 1.0,
        "same_group": 0.5,
        "quarter_turns": True,
        "jitter": {"rotation": 10.0, "scale": 0.15, "shift": 0.1, "shear": 0.15},
    },
}


def similarity_recipe(name: str) -> dict:
    """A copy of the named recipe's values for :data:`~l2c_explorer.options.TRAIN_SIMILARITY` options."""
    if name not in SIMILARITY_RECIPES:
        raise InputError(f"Unknown recipe {name!r}; choose from {', '.join(SIMILARITY_RECIPES)}.")
    return dict(SIMILARITY_RECIPES[name])
