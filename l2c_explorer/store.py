"""A folder's images decoded once into a file of model-input pixels, then read back in chunks.

:func:`l2c_explorer.data.load_image_folder` keeps every decoded image in memory: fine for thousands of images,
1.2 GB for 100,000 colour 64 x 64 ones. Discovery reads a folder through :func:`read_folder` instead: the
files are decoded a chunk at a time (in a thread pool) and appended to one flat uint8 file, and every later
pass (embedding, self-training, the second embedding) reads back only the rows it needs with ordinary file
reads (not a memory map, so they never count as the process's resident memory). Memory stays at a chunk
of images, whatever the folder size.

In-memory images (arrays, an :class:`~l2c_explorer.data.ImageSet`) are wrapped without a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data import IMAGE_EXTENSIONS, ImageReadError, ImageSet, class_of, find_images, read_image
from .errors import InputError, StoppedError, check_folder
from .files import partial_name, remove_orphan_partials, write_text

CHUNK = 2048  # images decoded (and held in memory) at a time


@dataclass
class PixelStore:
    """Model-input pixels (n, C, S, S), uint8, of a folder or of in-memory images.

    Attributes
    ----------
    paths : list of str
        Each image's path relative to ``root`` (POSIX separators).
    shape : tuple of int
        (C, S, S) of one image.
    root : Path or None
    labels : list of str or None
        Class names from the folder structure, when requested.
    skipped : list of (str, str)
        Files that could not be used, with the reason.
    file : Path or None
        The flat uint8 file holding the rows (None: ``array`` holds them).
    array : Tensor of shape (n, C, S, S), optional
    features : dict
        Pooled features of a frozen pretrained trunk, computed once (:func:`~l2c_explorer.embedding.trunk_features`).
    cache : FolderCache or None
    """

    paths: list[str]
    shape: tuple[int, int, int]
    root: Path | None = None
    labels: list[str] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    file: Path | None = None
    array: torch.Tensor | None = None
    # features computed from these pixels by a frozen pretrained trunk, by trunk (embedding.trunk_features),
    # and the folder's cache (l2c_explorer.cache.FolderCache) they are also kept in, when there is one
    features: dict = field(default_factory=dict, repr=False)
    cache: object | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def row_bytes(self) -> int:
        c, s, t = self.shape
        return c * s * t

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Images start..stop-1 as a uint8 tensor (stop - start, C, S, S)."""
        stop = min(stop, len(self))
        if self.array is not None:
            return self.array[start:stop]
        count = max(0, stop - start)
        data = np.fromfile(self.file, dtype=np.uint8, count=count * self.row_bytes, offset=start * self.row_bytes)
        return torch.from_numpy(data.reshape(count, *self.shape))

    def take(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """The images at ``indices`` (any order, repeats allowed) as a uint8 tensor (m, C, S, S)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if self.array is not None:
            return self.array[torch.from_numpy(idx)]
        out = np.empty((len(idx), self.row_bytes), dtype=np.uint8)
        with open(self.file, "rb") as f:
            for j, i in enumerate(idx.tolist()):
                f.seek(i * self.row_bytes)
                out[j] = np.frombuffer(f.read(self.row_bytes), dtype=np.uint8)
        return torch.from_numpy(out.reshape(len(idx), *self.shape))

    def chunks(self, size: int = CHUNK) -> Iterator[tuple[int, torch.Tensor]]:
        """(start, images) for consecutive chunks of at most ``size`` images."""
        for start in range(0, len(self), size):
            yield start, self.rows(start, start + size)

    def to_image_set(self) -> ImageSet:
        """All images in memory (small folders, tests)."""
        return ImageSet(pixels=self.rows(0, len(self)), paths=list(self.paths), root=self.root,
                        labels=self.labels, skipped=list(self.skipped))


def from_image_set(data: ImageSet) -> PixelStore:
    return PixelStore(paths=list(data.paths), shape=tuple(data.pixels.shape[1:]), root=data.root,
                      labels=data.labels, skipped=list(data.skipped), array=data.pixels)


# ---------------------------------------------------------------------------------------------------
# folders


def folder_listing(folder: str | os.PathLike, *, follow_links: bool = False
                   ) -> tuple[Path, list[Path], list[tuple[str, str]], str]:
    """The images of a folder, the files ignored, and a fingerprint of its content (``follow_links``: see
    :func:`l2c_explorer.data.find_images`).

    The fingerprint (sha256 of every image's relative path, size and modification time) changes when any
    image is added, removed, replaced or edited; it names the folder's cache entries.
    """
    import hashlib

    root = check_folder(folder)
    files, ignored = find_images(root, follow_links=follow_links)
    h = hashlib.sha256()
    for f in files:
        try:
            st = f.stat()
            h.update(f"{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        except OSError:
            h.update(f"{f.relative_to(root).as_posix()}\0missing\n".encode("utf-8", "surrogateescape"))
    return root, files, ignored, h.hexdigest()


def read_folder(
    folder: str | os.PathLike,
    file: str | os.PathLike,
    *,
    size: int,
    channels: int,
    labelled: bool = False,
    class_depth: int = 1,
    listing: tuple[Path, list[Path], list[tuple[str, str]], str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    workers: int | None = None,
    chunk: int = CHUNK,
    follow_links: bool = False,
) -> PixelStore:
    """Decode every image under ``folder`` at ``size`` x ``size`` x ``channels`` into the flat file ``file``.

    Reads (and holds) ``chunk`` images at a time. Writes ``file`` and ``file.json`` (paths, skipped files,
    shape) atomically, so an interrupted run leaves no half store behind. The folder is only read; links that
    lead outside it are read only with ``follow_links``.

    Raises
    ------
    InputError
        When the folder does not exist, holds no image, or none could be read.
    StoppedError
        When ``should_stop()`` became true.
    """
    if channels not in (1, 3):
        raise InputError(f"channels must be 1 or 3, not {channels}.")
    root, files, ignored, _ = listing or folder_listing(folder, follow_links=follow_links)
    if not files:
        raise InputError(
            f"No images found in {root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, in all subfolders)."
        )
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    remove_orphan_partials(file.parent)  # what a killed run left there
    tmp = partial_name(file)
    total = len(files)
    kept: list[str] = []
    skipped = list(ignored)
    n_workers = workers or min(8, (os.cpu_count() or 2) * 2)
    done = 0
    if progress is not None:  # the count is known: a first estimate of the whole run can be shown now
        progress(0, total)

    def work(path: Path):
        if should_stop is not None and should_stop():
            return None, "stopped"
        try:
            return read_image(path, size=size, channels=channels), None
        except ImageReadError as exc:
            return None, str(exc)

    try:
        with open(tmp, "wb") as out, ThreadPoolExecutor(max_workers=n_workers) as pool:
            for start in range(0, total, chunk):
                batch = files[start : start + chunk]
                for path, (arr, reason) in zip(batch, pool.map(work, batch)):
                    rel = path.relative_to(root).as_posix()
                    if arr is not None:
                        out.write(np.ascontiguousarray(arr).tobytes())
                        kept.append(rel)
                    elif reason != "stopped":
                        skipped.append((rel, reason))
                done += len(batch)
                if progress is not None:
                    progress(done, total)
                if should_stop is not None and should_stop():
                    raise StoppedError("Stopped while reading the images; nothing was learnt.")
        if not kept:
            raise InputError(f"None of the {total} image files in {root} could be read; see the skipped list.")
        meta = {"paths": kept, "skipped": sorted(skipped), "shape": [channels, size, size]}
        write_json_atomic(file.with_name(file.name + ".json"), meta)
        os.replace(tmp, file)
    finally:
        tmp.unlink(missing_ok=True)
    labels = [class_of(p, class_depth) for p in kept] if labelled else None
    return PixelStore(paths=kept, shape=(channels, size, size), root=root, labels=labels, skipped=sorted(skipped),
                      file=file)


def open_store(file: str | os.PathLike, root: Path, *, labelled: bool = False, class_depth: int = 1) -> PixelStore | None:
    """A store written by :func:`read_folder`, or None when it is missing or incomplete."""
    file = Path(file)
    meta_file = file.with_name(file.name + ".json")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        shape = tuple(int(v) for v in meta["shape"])
        paths = list(meta["paths"])
        if file.stat().st_size != len(paths) * int(np.prod(shape)):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    labels = [class_of(p, class_depth) for p in paths] if labelled else None
    return PixelStore(paths=paths, shape=shape, root=root, labels=labels,
                      skipped=[tuple(s) for s in meta.get("skipped", [])], file=file)


def paths_digest(paths: list[str]) -> bytes:
    """sha256 of a list of relative paths: whether cached rows belong to these very images, in this order."""
    import hashlib

    return hashlib.sha256("\n".join(paths).encode("utf-8", "surrogateescape")).digest()


def write_json_atomic(path: Path, data) -> None:
    write_text(path, json.dumps(data))
