"""What discovery keeps between runs on the same folder: decoded pixels, embeddings and neighbour lists.

Entries are named by the folder's content fingerprint (every image's relative path, size and modification
time, :func:`l2c_explorer.store.folder_listing`) and what else they depend on (input size, the similarity
model's sha256, the search). A run on an unchanged folder with the same model skips reading, embedding and
the first neighbour search; any change to the folder gives new names, so a stale entry is never used.

The cache lives in ``$L2C_CACHE_DIR``, else ``<the app's working folder>/features`` (``~/.cache/l2c-explorer``
by default): never in the analysed folder. Entries are safetensors files (never pickle), each written to a
temporary name and renamed (:func:`l2c_explorer.files.atomic_path`). Deleting the folder is always safe.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def default_cache_dir() -> Path:
    """``$L2C_CACHE_DIR``, else ``$L2C_WORK_DIR/features``, else ``$XDG_CACHE_HOME/l2c-explorer/features``,
    else ``~/.cache/l2c-explorer/features``."""
    env = os.environ.get("L2C_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    work = os.environ.get("L2C_WORK_DIR")
    if work:
        return Path(work).expanduser() / "features"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "l2c-explorer" / "features"


def resolve_cache_dir(cache) -> Path | None:
    """``True`` -> the default folder, ``False``/``None`` -> no cache, a path -> that folder."""
    if cache is True:
        return default_cache_dir()
    if cache is False or cache is None:
        return None
    return Path(cache).expanduser()


class FolderCache:
    """The cache entries of one folder version: ``<cache>/<fingerprint[:32]>/``."""

    def __init__(self, cache_dir: Path, fingerprint: str):
        self.folder = Path(cache_dir) / fingerprint[:32]

    def pixels(self, size: int, channels: int) -> Path:
        return self.folder / f"pixels-{channels}x{size}x{size}.u8"

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.safetensors"

    def load(self, name: str, keys: tuple[str, ...]) -> dict[str, np.ndarray] | None:
        """The arrays saved under ``name``, or None when missing, damaged or lacking a key."""
        path = self._path(name)
        if not path.is_file():
            return None
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            data = load_file(path)
        except (OSError, ValueError, SafetensorError):
            return None
        return data if all(k in data for k in keys) else None

    def save(self, name: str, **arrays: np.ndarray) -> Path:
        from safetensors.numpy import save_file

        from .files import atomic_path

        path = self._path(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                save_file({k: np.ascontiguousarray(np.atleast_1d(v)) for k, v in arrays.items()}, str(tmp))
        except OSError:  # a full or read-only disk: the run goes on without caching
            pass
        return path
