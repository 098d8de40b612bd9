"""Rebuild the sample folders in demo_data/ from the public data sets (run from the repository root).

    python demo_data/make_demo_data.py --data ../shared/data

Omniglot images and Tiny ImageNet photos are copied byte for byte; MNIST and USPS digits are written as PNG
files.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
TARGET_ALPHABET = "Keble"  # an Omniglot *evaluation* alphabet: the shipped model never saw it
SOURCE_ALPHABETS = ("Latin", "Greek", "Cyrillic")  # background alphabets, for training a model in the app
DIGITS_PER_CLASS = 60
# Ten everyday categories of Tiny ImageNet's `novel-dev` classes (none of them in the `photos` model's
# training classes), chosen for variety (animals, vehicles, a building, food, objects) before any result on
# them was seen; every one of their 50 photos, in folders named after the category.
PHOTO_CATEGORIES = ("acorn", "barn", "gorilla", "guinea pig", "mushroom", "pomegranate", "school bus", "sock",
                    "tractor", "wok")


def copy_omniglot(data: Path) -> None:
    src = data / "omniglot" / "images_evaluation" / TARGET_ALPHABET
    dest = HERE / "omniglot_keble"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest)
    dest = HERE / "omniglot_source"
    shutil.rmtree(dest, ignore_errors=True)
    for alphabet in SOURCE_ALPHABETS:
        for char_dir in sorted((data / "omniglot" / "images_background" / alphabet).iterdir()):
            shutil.copytree(char_dir, dest / f"{alphabet}_{char_dir.name}")


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def write_digits(images: np.ndarray, labels: np.ndarray, dest: Path, seed: int) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    rng = np.random.default_rng(seed)
    for digit in range(10):
        idx = rng.choice(np.flatnonzero(labels == digit), DIGITS_PER_CLASS, replace=False)
        (dest / str(digit)).mkdir(parents=True)
        for i in sorted(idx):
            Image.fromarray(images[i]).save(dest / str(digit) / f"{i:05d}.png", optimize=True)


def copy_digits(data: Path) -> None:
    mnist = read_idx(data / "mnist" / "t10k-images-idx3-ubyte.gz")
    mnist_labels = read_idx(data / "mnist" / "t10k-labels-idx1-ubyte.gz")
    write_digits(mnist, mnist_labels, HERE / "digits_mnist", seed=0)
    usps = np.load(data / "usps" / "usps.npz")
    usps_images = np.clip(usps["x_test"] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    write_digits(usps_images, usps["y_test"], HERE / "digits_usps", seed=0)


def read_class_names(words: Path) -> dict[str, str]:
    """WordNet id -> the first of its English names (``words.txt``: ``id<TAB>name, other name, ...``)."""
    names = {}
    for line in words.read_text(encoding="utf-8").splitlines():
        wnid, _, text = line.partition("\t")
        names[wnid] = text.split(",")[0].strip()
    return names


def copy_photos(data: Path) -> None:
    root = data / "tiny-imagenet"
    names = read_class_names(root / "words.txt")
    dest = HERE / "photos_everyday"
    shutil.rmtree(dest, ignore_errors=True)
    for class_dir in sorted((root / "novel-dev").iterdir()):
        name = names.get(class_dir.name)
        if name in PHOTO_CATEGORIES:
            shutil.copytree(class_dir, dest / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data", help="folder holding omniglot/, mnist/, usps/ and tiny-imagenet/")
    args = parser.parse_args()
    data = Path(args.data)
    copy_omniglot(data)
    copy_digits(data)
    copy_photos(data)


if __name__ == "__main__":
    main()
