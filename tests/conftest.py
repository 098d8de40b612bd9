"""Shared fixtures: paths to the real data sets and small real image folders built from them."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Discovery keeps decoded images and features between runs; the tests keep theirs in a folder of their own.
os.environ.setdefault("L2C_CACHE_DIR", tempfile.mkdtemp(prefix="l2c-test-cache-"))
torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("L2C_SHARED_DATA", REPO.parent / "shared" / "data"))
DEMO_DATA = REPO / "demo_data"
OMNIGLOT = SHARED_DATA / "omniglot"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"data not available: {path}")
    return path


@pytest.fixture(scope="session")
def omniglot_background() -> Path:
    return _need(OMNIGLOT / "images_background")


@pytest.fixture(scope="session")
def omniglot_evaluation() -> Path:
    return _need(OMNIGLOT / "images_evaluation")


@pytest.fixture(scope="session")
def tiny_imagenet() -> Path:
    """Colour photos in folders named by WordNet ids, with ``words.txt`` naming them."""
    return _need(SHARED_DATA / "tiny-imagenet")


@pytest.fixture
def wordnet_photos(tmp_path, tiny_imagenet) -> Path:
    """3 novel-dev categories x 8 photos in folders named by WordNet ids, with ``words.txt`` one level up."""
    target = tmp_path / "photos" / "set"
    codes = sorted(p.name for p in (tiny_imagenet / "novel-dev").iterdir() if p.is_dir())[:3]
    for code in codes:
        (target / code).mkdir(parents=True)
        for f in sorted((tiny_imagenet / "novel-dev" / code).iterdir())[:8]:
            shutil.copy(f, target / code / f.name)
    shutil.copy(tiny_imagenet / "words.txt", tmp_path / "photos" / "words.txt")
    return target


@pytest.fixture(scope="session")
def demo_keble() -> Path:
    """The shipped demo target: 26 Keble characters x 20 drawings."""
    return _need(DEMO_DATA / "omniglot_keble")


@pytest.fixture(scope="session")
def demo_photos() -> Path:
    """The shipped photo demo: 10 everyday categories x 50 colour photos (Tiny ImageNet, unseen classes)."""
    return _need(DEMO_DATA / "photos_everyday")


@pytest.fixture(scope="session")
def demo_source() -> Path:
    return _need(DEMO_DATA / "omniglot_source")


@pytest.fixture
def keble_subset(tmp_path, demo_keble) -> Path:
    """A copy of 6 Keble characters (120 real images), safe to modify."""
    dest = tmp_path / "keble6"
    for char_dir in sorted(demo_keble.iterdir())[:6]:
        shutil.copytree(char_dir, dest / char_dir.name)
    return dest


