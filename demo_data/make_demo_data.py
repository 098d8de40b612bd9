"""Rebuild the sample folders in demo_data/ from the public data sets (run from the repository root).

    python demo_data/make_demo_data.py --data ../shared/data

Omniglot images are copied byte for byte; MNIST and USPS digits are written as PNG files.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data", help="folder holding omniglot/, mnist/ and usps/")
    args = parser.parse_args()
    data = Path(args.data)
    copy_omniglot(data)
    copy_digits(data)


if __name__ == "__main__":
    main()
