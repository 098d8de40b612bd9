"""The large folders of the scale benchmarks, built from ``../shared/data`` with their labels kept.

Each set is a folder of ``SOURCE/CLASS/file`` entries in a scratch folder (never in the repository): Omniglot
drawings and Tiny ImageNet photos are symbolic links to the shared files; MNIST and USPS, which are stored as
arrays, are written once as small PNG files. The sets are nested (every image of the 10k set is in the 25k set,
and so on) and made of whole classes, in a fixed seeded order, so they come out the same on every machine:

=======  ==========================================================================================  ======
set      content                                                                                      images
=======  ==========================================================================================  ======
10k      Omniglot evaluation (10 alphabets, 309 characters) + 191 background characters               10,000
25k      10k + 250 more background characters + MNIST test (10 digits)                                 25,000
50k      25k + USPS (train and test, 10 digits) + Tiny ImageNet novel-dev (25) + 36 source classes      49,948
100k     50k + the other 116 Tiny ImageNet source classes + 183 more background characters            100,008
=======  ==========================================================================================  ======

``omniglot-20k`` (every background character and the first 36 evaluation ones: 20,000 drawings of 1,000
characters) and ``omniglot-25k`` (every Omniglot character of ``../shared/data``: 25,460 drawings of 1,273) hold
drawings only, which the ``omniglot`` model suits throughout.

Omniglot background characters are the ones the ``omniglot`` similarity model learnt from (easier than new
ones); the photos are grey 32 x 32 squares to that model (harder): the sets measure speed, memory and
agreement with the exact pipeline, not transfer. A set names the similarity model it is run with
(``omniglot`` for all of these; a photo-only set can name ``photos`` once that model exists).

    python benchmarks/scale_sets.py 25k --scratch /tmp/l2c-scale     # prints the folder
"""

from __future__ import annotations

import argparse
import gzip
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@dataclass(frozen=True)
class ScaleSet:
    name: str
    parts: tuple[tuple[str, int | None], ...]  # (source, number of classes taken in order; None: all)
    model: str = "omniglot"


# (source, classes): each source's classes are taken in a fixed seeded order, so "omniglot-bg", 191 then 441
# gives the same first 191 characters.
SETS = {
    "10k": ScaleSet("10k", (("omniglot-eval", None), ("omniglot-bg", 191))),
    "25k": ScaleSet("25k", (("omniglot-eval", None), ("omniglot-bg", 441), ("mnist", None))),
    "50k": ScaleSet("50k", (("omniglot-eval", None), ("omniglot-bg", 441), ("mnist", None), ("usps", None),
                            ("tiny-novel", None), ("tiny-source", 36))),
    "100k": ScaleSet("100k", (("omniglot-eval", None), ("omniglot-bg", 624), ("mnist", None), ("usps", None),
                              ("tiny-novel", None), ("tiny-source", None))),
    # drawings only: folders the omniglot model suits from end to end, for new images assigned to a run
    # (benchmarks/assign.py); 20k has 1,000 characters, within a K estimate of at most 1,000
    "omniglot-20k": ScaleSet("omniglot-20k", (("omniglot-bg", None), ("omniglot-eval", 36))),
    "omniglot-25k": ScaleSet("omniglot-25k", (("omniglot-eval", None), ("omniglot-bg", None))),
    # photos only, for a colour photo model when one is available
    "photos-60k": ScaleSet("photos-60k", (("tiny-novel", None), ("tiny-source", None)), model="photos"),
}


def default_scratch() -> Path:
    return Path(tempfile.gettempdir()) / f"l2c-scale-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _order(names: list[str], seed: int) -> list[str]:
    names = sorted(names)
    return [names[i] for i in np.random.default_rng(seed).permutation(len(names))]


def _linked_classes(root: Path, depth: int, seed: int, shuffle: bool) -> list[tuple[str, list[Path]]]:
    """Class folders ``depth`` levels under ``root`` (name, files), in a seeded order (or sorted)."""
    dirs = [p for p in root.glob("/".join(["*"] * depth)) if p.is_dir()]
    by_name = {d.relative_to(root).as_posix(): d for d in dirs}
    order = _order(list(by_name), seed) if shuffle else sorted(by_name)
    return [(name, sorted(f for f in by_name[name].iterdir() if f.is_file())) for name in order]


def _array_classes(scratch: Path, source: str, data: Path) -> list[tuple[str, list[Path]]]:
    """MNIST / USPS written once as PNG files under ``scratch/_arrays/<source>/<digit>/``."""
    from PIL import Image

    out = scratch / "_arrays" / source
    done = out / ".complete"
    if not done.exists():
        if source == "mnist":
            x = _read_idx(data / "mnist" / "t10k-images-idx3-ubyte.gz")
            y = _read_idx(data / "mnist" / "t10k-labels-idx1-ubyte.gz")
        else:
            d = np.load(data / "usps" / "usps.npz")
            x = np.concatenate([d["x_train"], d["x_test"]])
            y = np.concatenate([d["y_train"], d["y_test"]])
            x = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
        for i, (img, label) in enumerate(zip(x, y)):
            path = out / str(int(label)) / f"{source}_{i:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(img, dtype=np.uint8), "L").save(path)
        done.touch()
    return [(d.name, sorted(d.glob("*.png"))) for d in sorted(p for p in out.iterdir() if p.is_dir())]


def source_classes(source: str, scratch: Path, data: Path = DATA, seed: int = 0) -> list[tuple[str, list[Path]]]:
    if source == "omniglot-eval":
        return _linked_classes(data / "omniglot" / "images_evaluation", 2, seed, shuffle=False)
    if source == "omniglot-bg":
        return _linked_classes(data / "omniglot" / "images_background", 2, seed, shuffle=True)
    if source == "tiny-novel":
        return _linked_classes(data / "tiny-imagenet" / "novel-dev", 1, seed, shuffle=False)
    if source == "tiny-source":
        return _linked_classes(data / "tiny-imagenet" / "source", 1, seed, shuffle=True)
    if source in ("mnist", "usps"):
        return _array_classes(scratch, source, data)
    raise ValueError(f"unknown source {source!r}")


def build_set(name: str, scratch: str | os.PathLike | None = None, data: Path = DATA) -> Path:
    """The folder of set ``name`` (made once, as links, under ``scratch``); its classes are
    ``SOURCE/CLASS`` (two levels; Omniglot's ``ALPHABET/CHARACTER`` is flattened to one name)."""
    spec = SETS[name]
    scratch = Path(scratch) if scratch else default_scratch()
    folder = scratch / name
    done = folder / ".complete"
    if done.exists():
        return folder
    for source, n_classes in spec.parts:
        classes = source_classes(source, scratch, data)
        if n_classes is not None:
            classes = classes[:n_classes]
        for cls, files in classes:
            dest = folder / source / cls.replace("/", "__")
            dest.mkdir(parents=True, exist_ok=True)
            for f in files:
                link = dest / f.name
                if not link.is_symlink():
                    link.symlink_to(f.resolve())
    done.touch()
    return folder


def true_label(relative_path: str) -> str:
    """The class of an image of a set from its path: ``SOURCE/CLASS``."""
    return "/".join(relative_path.split("/")[:2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("set", choices=sorted(SETS))
    ap.add_argument("--scratch", default=None)
    args = ap.parse_args()
    folder = build_set(args.set, args.scratch)
    n = sum(1 for _ in folder.rglob("*") if _.is_symlink() or _.suffix == ".png")
    print(folder, n)


if __name__ == "__main__":
    main()
