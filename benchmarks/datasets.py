"""The benchmarks' data: where it lives, and the folders the scripts build from it (a library, not a script).

Every data path of the benchmarks is named here, under one root, ``DATA``: ``../shared/data`` beside the
repository (resolved from this file, not from the working directory), e.g. ``OMNIGLOT_EVALUATION``. The scripts'
``--data``-like flags default to these names; :func:`shown` writes a path as the documented commands spell it
(relative to the repository root).

Folders built from the data (links or copies in a scratch folder, never in the repository):

* :func:`thousand_drawings`: 1,000 Omniglot drawings of 50 characters (Kannada's 41 and Keble's first 9);
* :func:`background_split`, :func:`validation_setup`, :func:`train_fold_model`: the 6 folds of the 30 Omniglot
  background alphabets the K rule and the self-training settings were chosen on;
* :func:`held_out_photo_folder`, :func:`photo_validation_folders`, :func:`photo_sample`: seeded samples of the
  Tiny ImageNet source classes (the `photos` model's held-out classes, or all of them); :func:`photo_subset`,
  the first classes and photos of a folder;
* :func:`build_set`: the large folders of the scale benchmarks (``SETS``, below); ``benchmarks/scale_sets.py``
  builds one from the command line.

The scale sets are folders of ``SOURCE/CLASS/file`` entries: Omniglot drawings and Tiny ImageNet photos are
symbolic links to the shared files; MNIST and USPS, which are stored as arrays, are written once as small PNG
files. The sets are nested (every image of the 10k set is in the 25k set, and so on) and made of whole classes,
in a fixed seeded order, so they come out the same on every machine:

=======  ==========================================================================================  ======
set      content                                                                                      images
=======  ==========================================================================================  ======
10k      Omniglot evaluation (10 alphabets, 309 characters) + 191 background characters               10,000
25k      10k + 250 more background characters + MNIST test (10 digits)                                 25,000
50k      25k + USPS (train and test, 10 digits) + Tiny ImageNet novel-dev (25) + 36 source classes      49,948
100k     50k + the other 116 Tiny ImageNet source classes + 183 more background characters            100,008
=======  ==========================================================================================  ======

``omniglot-20k`` (every background character and the first 36 evaluation ones: 20,000 drawings of 1,000
characters) and ``omniglot-25k`` (every Omniglot character of ``DATA``: 25,460 drawings of 1,273) hold
drawings only, which the ``omniglot`` model suits throughout.

Omniglot background characters are the ones the ``omniglot`` similarity model learnt from (easier than new
ones); the photos are grey 32 x 32 squares to that model (harder): the sets measure speed, memory and
agreement with the exact pipeline, not transfer. A set names the similarity model it is run with
(``omniglot`` for all of these; a photo-only set can name ``photos`` once that model exists).

Nothing here imports ``l2c_explorer`` at import time: the scale benchmarks import this module in processes that
run an older version of the package.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------------------------------
# where the data is

ROOT = Path(__file__).resolve().parents[1]  # the repository
DATA = ROOT.parent / "shared" / "data"
OMNIGLOT = DATA / "omniglot"
OMNIGLOT_BACKGROUND = OMNIGLOT / "images_background"
OMNIGLOT_EVALUATION = OMNIGLOT / "images_evaluation"
TINY_IMAGENET = DATA / "tiny-imagenet"
TINY_SOURCE = TINY_IMAGENET / "source"
TINY_NOVEL = TINY_IMAGENET / "novel-dev"
# the photo development sets, as paths under a data root (the photo scripts take the root as --data)
PHOTO_SETS = {"novel-dev": "tiny-imagenet/novel-dev", "birds-dev": "photos-clean/birds-dev",
              "seedlings-dev": "photos-clean/seedlings-dev"}
MNIST = DATA / "mnist"
USPS = DATA / "usps"


def shown(path: str | os.PathLike) -> str:
    """``path`` as the documented commands write it: relative to the repository root (``../shared/data/...``)."""
    return os.path.relpath(os.path.abspath(path), ROOT)


# ---------------------------------------------------------------------------------------------------
# folders of links and copies


def link_tree(files: list[Path], base: Path, dest: Path) -> Path:
    """``dest`` holding a link to each of ``files`` at its path under ``base`` (made once: marked complete)."""
    if (dest / ".complete").exists():
        return dest
    for f in files:
        target = dest / f.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_symlink():
            target.symlink_to(f.resolve())
    (dest / ".complete").touch()
    return dest


def link_folders(classes: list[Path], dest: Path) -> Path:
    """A folder of links to the given class folders (the data is never copied)."""
    dest.mkdir(parents=True)
    for c in classes:
        (dest / c.name).symlink_to(c.resolve(), target_is_directory=True)
    return dest


def link_sample(source: Path, classes, dest: Path, per_class: int, rng: np.random.Generator) -> Path:
    """``dest/<class>/`` holding links to ``per_class`` photos of each of ``classes`` (names of folders of
    ``source``), drawn in that order without replacement by ``rng`` from each folder's sorted files."""
    for c in classes:
        files = sorted((source / c).iterdir())
        (dest / c).mkdir(parents=True)
        for f in rng.choice(files, min(per_class, len(files)), replace=False):
            (dest / c / f.name).symlink_to(f.resolve())
    return dest


# ---------------------------------------------------------------------------------------------------
# Omniglot


def thousand_drawings(evaluation: Path, dest: Path) -> Path:
    """1,000 Omniglot drawings of 50 characters the `omniglot` model never saw, copied into ``dest``: Kannada's
    41 characters and the first 9 of Keble, each ``<alphabet>_<character>`` (the folder of the speed benchmarks)."""
    chars = sorted((evaluation / "Kannada").iterdir()) + sorted((evaluation / "Keble").iterdir())[:9]
    for c in chars:
        shutil.copytree(c, dest / f"{c.parent.name}_{c.name}")
    return dest


# The 30 background alphabets in 6 folds (alphabet i, in name order, in fold i mod 6): the K rule was chosen by
# cross-validation over them (omniglot_k_rule.py), the self-training settings on fold 5 (the single-split
# benchmarks hold it out: omniglot_self_training.py, omniglot_resolution.py).
N_FOLDS = 6
VALIDATION_FOLD = 5


def background_split(background: Path, work: Path, fold: int = VALIDATION_FOLD) -> tuple[Path, Path]:
    """Copy the background alphabets into ``work``/train25 and ``work``/valid5 (alphabet i -> fold i mod 6)."""
    train, valid = work / "train25", work / "valid5"
    for i, alphabet in enumerate(sorted(p for p in background.iterdir() if p.is_dir())):
        shutil.copytree(alphabet, (valid if i % N_FOLDS == fold else train) / alphabet.name)
    return train, valid


def train_fold_model(train: Path, out: Path, name: str, *options: str) -> None:
    """Train the shipped `omniglot` recipe on ``train`` into ``out`` (a .safetensors path); ``options``: more
    `train-similarity` flags, which win over the recipe's."""
    subprocess.run(["l2c-explorer", "train-similarity", str(train), "--recipe", "omniglot", *options,
                    "--out", str(out.with_suffix("")), "--name", name], check=True)


def validation_setup(background: Path, work: Path, model: str | None, fold: int = VALIDATION_FOLD) -> tuple[Path, str]:
    """Copy the split into ``work``; return the validation folder and a model trained on the 25 others.

    ``model``: a file already trained on the fold's 25 training alphabets; when None or missing, one is
    trained with the shipped recipe (and saved there when a path is given).
    """
    train, valid = background_split(background, work, fold)
    if model is None or not Path(model).exists():
        model = work / "train25_model.safetensors" if model is None else Path(model).with_suffix(".safetensors")
        train_fold_model(train, model, f"train25_fold{fold}")
    return valid, str(model)


# ---------------------------------------------------------------------------------------------------
# photos


def held_out_photo_folder(source: Path, dest: Path, *, per_class: int = 50, seed: int = 1) -> tuple[Path, list[str]]:
    """Symlinks to ``per_class`` seeded photos of each of the `photos` recipe's held-out source classes (the
    split its training makes, seed 0): the folder the photo recipe and its settings are chosen on."""
    import torch

    from l2c_explorer.class_sampling import split_classes
    from l2c_explorer.recipes import similarity_recipe

    names = sorted(p.name for p in source.iterdir() if p.is_dir())
    _, held = split_classes(np.arange(len(names)), similarity_recipe("photos")["holdout"],
                            torch.Generator().manual_seed(0))
    link_sample(source, [names[i] for i in held], dest, per_class, np.random.default_rng(seed))
    return dest, [names[i] for i in held]


def photo_validation_folders(source: Path, classes: list[str], scratch: Path, *, per_class: int = 50, full: int = 3,
                             subsets: int = 6, subset_size: int = 10, seed: int = 0) -> list[Path]:
    """Folders of symlinks to ``per_class`` seeded photos of each class: ``full`` folders of all ``classes`` (a
    model's held-out source classes), then ``subsets`` of random ``subset_size``-class subsets."""
    rng = np.random.default_rng(seed)
    plans = [list(classes)] * full + [sorted(rng.choice(classes, subset_size, replace=False)) for _ in range(subsets)]
    return [link_sample(source, plan, scratch / f"val{i:02d}", per_class, rng) for i, plan in enumerate(plans)]


def photo_sample(source: Path, per_class: int, scratch: Path, seed: int = 0) -> Path:
    """A folder of symlinks to ``per_class`` seeded random photos of every class of ``source``."""
    classes = sorted(p.name for p in source.iterdir() if p.is_dir())
    return link_sample(source, classes, scratch / "sample", per_class, np.random.default_rng(seed))


def photo_subset(source: Path, n_classes: int | None, per_class: int | None, into: Path) -> Path:
    """``source`` itself, or a copy of its first ``n_classes`` classes with their first ``per_class`` images."""
    if n_classes is None and per_class is None:
        return source
    for c in sorted(d for d in source.iterdir() if d.is_dir())[:n_classes]:
        (into / c.name).mkdir(parents=True)
        for f in sorted(x for x in c.rglob("*") if x.is_file())[:per_class]:
            shutil.copy2(f, into / c.name / f.name)
    return into


# ---------------------------------------------------------------------------------------------------
# digits (stored as arrays)


def read_idx(path: Path) -> np.ndarray:
    """An array of an (gzipped) IDX file, MNIST's format."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def mnist_test(data: Path = DATA) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 MNIST test digits (n, 28, 28) uint8 and their labels (n,)."""
    return (read_idx(data / "mnist" / "t10k-images-idx3-ubyte.gz"),
            read_idx(data / "mnist" / "t10k-labels-idx1-ubyte.gz"))


def usps(data: Path = DATA, splits: tuple[str, ...] = ("train",)) -> tuple[np.ndarray, np.ndarray]:
    """USPS digits (n, 16, 16) as uint8 0-255 and their labels (n,), the given splits ("train", "test") in order."""
    d = np.load(data / "usps" / "usps.npz")
    x = np.concatenate([d[f"x_{s}"] for s in splits])
    y = np.concatenate([d[f"y_{s}"] for s in splits])
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8), y


# ---------------------------------------------------------------------------------------------------
# the scale sets


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
        x, y = mnist_test(data) if source == "mnist" else usps(data, ("train", "test"))
        for i, (img, label) in enumerate(zip(x, y)):
            path = out / str(int(label)) / f"{source}_{i:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(img, dtype=np.uint8), "L").save(path)
        done.touch()
    return [(d.name, sorted(d.glob("*.png"))) for d in sorted(p for p in out.iterdir() if p.is_dir())]


def source_classes(source: str, scratch: Path, data: Path = DATA, seed: int = 0) -> list[tuple[str, list[Path]]]:
    """The classes of one source of the scale sets, in the order the sets take them: (name, files)."""
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


def set_images(folder: Path) -> list[Path]:
    """The images of a built set (links, and the PNG files written for the digits)."""
    return [p for p in folder.rglob("*") if p.is_symlink() or p.suffix == ".png"]


def true_label(relative_path: str) -> str:
    """The class of an image of a set from its path: ``SOURCE/CLASS``."""
    return "/".join(relative_path.split("/")[:2])
