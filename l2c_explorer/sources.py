"""Where a discovery's pixels come from: a folder read once into a pixel store (or from the folder's cache),
in-memory images, or a folder's files read on demand by a Dask cluster's workers (:class:`FileSource`).

:func:`open_images` is the discovery's first step; it returns an :class:`OpenedImages` and changes nothing else.
:func:`embedded_new_images` reads and embeds the new images a finished run assigns to its clusters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .similarity_model import SimilarityModel


@dataclass
class OpenedImages:
    """The images of a discovery: ``source`` (a :class:`~l2c_explorer.store.PixelStore` or a
    :class:`FileSource`: ``paths``, ``skipped``, ``labels``, ``root``, ``take(indices)``), the folder's cache
    (a :class:`~l2c_explorer.cache.FolderCache`, or None), and whether the pixels were read from it."""

    source: object
    folder_cache: object | None = None
    pixels_cached: bool = False


def open_images(images, model: SimilarityModel, *, labelled: bool, follow_links: bool, cache, scratch: Path,
                reading, should_stop=None, client=None) -> OpenedImages:
    """Open ``images`` (a folder, an :class:`~l2c_explorer.data.ImageSet` or arrays) at ``model``'s input size.

    A folder is decoded into a pixel store once: in its cache (``cache``: True, a path, or False, as
    :func:`~l2c_explorer.cache.resolve_cache_dir` reads it) when there is one, else in ``scratch``; with a Dask
    ``client`` its files are read by the workers instead (:class:`FileSource`). ``reading(done, total,
    message=None)`` hears how far it is; ``should_stop()`` ends the reading.
    """
    from .cache import FolderCache, resolve_cache_dir
    from .data import as_image_set
    from .store import folder_listing, from_image_set, open_store, read_folder

    prep = model.preprocessing
    if not isinstance(images, (str, os.PathLike)):
        store = from_image_set(as_image_set(images, size=prep.size, channels=prep.channels))
        reading(len(store), len(store))
        return OpenedImages(store)
    listing = folder_listing(images, follow_links=follow_links)
    root, files, _, fingerprint = listing
    if not files:
        from .data import IMAGE_EXTENSIONS

        raise InputError(
            f"No images found in {root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, in all subfolders)."
        )
    cache_dir = resolve_cache_dir(cache)
    folder_cache = FolderCache(cache_dir, fingerprint) if cache_dir is not None else None
    if client is not None:
        return OpenedImages(FileSource(root, listing, prep, labelled), folder_cache)
    file = folder_cache.pixels(prep.size, prep.channels) if folder_cache else scratch / "pixels.u8"
    store = open_store(file, root, labelled=labelled) if folder_cache else None
    cached = store is not None
    if cached:
        reading(len(store), len(store), message=f"Read {len(store)} images (cached)")
    else:
        store = read_folder(
            root, file, size=prep.size, channels=prep.channels, labelled=labelled, listing=listing,
            progress=reading, should_stop=should_stop,
        )
    store.cache = folder_cache  # where features of a pretrained trunk are kept too
    return OpenedImages(store, folder_cache, cached)


def embedded_images(embedded, paths: list[str] | None = None, *, root=None, labels: list[str] | None = None,
                    similarity="omniglot") -> tuple[torch.Tensor, SimilarityModel, object]:
    """Precomputed embeddings as a discovery's images: (unit embeddings (n, d), the model that made them, a
    source without pixels: ``paths``, ``root``, ``labels`` and ``skipped``).

    ``embedded``: an :class:`~l2c_explorer.embedding.EmbeddedImages` (which describes its images), or an array
    (n, d), described by ``paths`` (default: generated names), ``root`` and ``labels`` and made by ``similarity``.
    """
    from .embedding import EmbeddedImages
    from .similarity_model import load_similarity_model
    from .store import PixelStore

    if isinstance(embedded, EmbeddedImages):
        emb, model = embedded.embeddings, embedded.model
        paths, root, labels = embedded.paths, embedded.root, embedded.labels
        skipped = embedded.skipped
    else:
        emb, model, skipped = np.asarray(embedded), load_similarity_model(similarity), []
    emb = torch.nn.functional.normalize(torch.as_tensor(np.asarray(emb, dtype=np.float32)), dim=1)
    paths = list(paths) if paths is not None else [f"image_{i:06d}" for i in range(len(emb))]
    if len(paths) != len(emb) or (labels is not None and len(labels) != len(emb)):
        raise InputError("embeddings, paths and labels must describe the same images.")
    source = PixelStore(paths=paths, shape=(0, 0, 0), root=Path(root) if root else None,
                        labels=list(labels) if labels is not None else None, skipped=list(skipped))
    return emb, model, source


def embedded_new_images(images, model: SimilarityModel, *, device, report, labelled: bool = False,
                        follow_links: bool = False) -> tuple[torch.Tensor, object]:
    """New images to assign to a run's clusters (a folder, an :class:`~l2c_explorer.data.ImageSet` or arrays),
    read at ``model``'s input size and embedded with it: (unit embeddings (m, d), the
    :class:`~l2c_explorer.data.ImageSet`: ``paths``, ``skipped``, ``labels``). ``report`` (a
    :class:`~l2c_explorer.progress.Reporter`) hears the ``reading`` and ``features`` stages."""
    from .data import as_image_set
    from .embedding import embed_store
    from .store import from_image_set

    prep = model.preprocessing
    data = as_image_set(images, size=prep.size, channels=prep.channels, labelled=labelled,
                        progress=lambda d, t: report("reading", d, t, message=f"Reading images {d}/{t}"),
                        follow_links=follow_links)
    emb = embed_store(model, from_image_set(data), device=device,
                      progress=lambda d, t: report("features", d, t, message=f"Computing features {d}/{t}"))
    return emb, data


class scratch_folder:
    """A temporary folder for the pixels of an uncached run (removed afterwards)."""

    def __enter__(self) -> Path:
        import tempfile

        self._tmp = tempfile.TemporaryDirectory(prefix="l2c-run-")
        return Path(self._tmp.name)

    def __exit__(self, *exc):
        self._tmp.cleanup()



class FileSource:
    """The images of a folder read from their files on demand (when a cluster embeds them)."""

    def __init__(self, root: Path, listing, prep, labelled: bool):
        from .data import class_of

        self.root = root
        self.files = listing[1]
        self.prep = prep
        self.paths = [f.relative_to(root).as_posix() for f in self.files]
        self.skipped = list(listing[2])
        self.labels = [class_of(p) for p in self.paths] if labelled else None
        self.shape = (prep.channels, prep.size, prep.size)
        self._labelled = labelled

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, indices) -> torch.Tensor:
        from .data import read_image

        arrays = [read_image(self.root / self.paths[i], size=self.prep.size, channels=self.prep.channels)
                  for i in np.asarray(indices, dtype=np.int64).reshape(-1).tolist()]
        return torch.from_numpy(np.stack(arrays))

    def embed_on(self, client, model: SimilarityModel, progress) -> torch.Tensor:
        """Embed every image on the cluster's workers; files that fail to read are dropped (and listed)."""
        from .data import class_of
        from .embedding import embed_on_cluster

        emb, ok, reasons = embed_on_cluster(client, model, [str(self.root / p) for p in self.paths])
        if len(ok) < len(self.paths):  # unreadable files are skipped, as when reading locally
            self.skipped = sorted(self.skipped + [(self.paths[i], r) for i, r in enumerate(reasons) if r])
            self.paths = [self.paths[i] for i in ok]
            self.labels = [class_of(p) for p in self.paths] if self._labelled else None
        progress(len(self.paths), len(self.paths))
        return torch.from_numpy(emb)
