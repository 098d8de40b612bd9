"""A cache of small thumbnail files, so pages show images without reading (or exposing) the originals.

Each thumbnail is a small WebP file named by a hash of the original's absolute path, modification time and
size (and the thumbnail size), so an edited image gets a new thumbnail and an unchanged one is made once.
Thumbnails are only ever written inside the cache folder, never next to the images.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from .files import atomic_path

THUMBNAIL_SUFFIX = ".webp"


class ThumbnailCache:
    """Small WebP copies of images, kept in one folder.

    Parameters
    ----------
    folder : path
        Where the thumbnails are written (created when needed).
    size : int
        Longest side of a thumbnail, in pixels.
    quality : int
        WebP quality (0-100).
    """

    def __init__(self, folder: str | os.PathLike, *, size: int = 128, quality: int = 80):
        self.folder = Path(folder)
        self.size = int(size)
        self.quality = int(quality)

    # -- names ------------------------------------------------------------------------------------------

    def key(self, image: str | os.PathLike) -> str | None:
        """The cache name of an image (without suffix), or None when the file cannot be read."""
        path = Path(image)
        try:
            st = path.stat()
        except OSError:
            return None
        text = f"{path.resolve()}|{st.st_mtime_ns}|{st.st_size}|{self.size}"
        return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:20]

    def keys(self, images: Iterable[str | os.PathLike]) -> list[str | None]:
        return [self.key(p) for p in images]

    def file_of(self, key: str) -> Path:
        """Where the thumbnail with this key lives (it may not exist yet)."""
        return self.folder / f"{key}{THUMBNAIL_SUFFIX}"

    # -- making thumbnails ------------------------------------------------------------------------------

    def get(self, image: str | os.PathLike) -> Path | None:
        """The thumbnail of ``image``, made now if needed; None when the image cannot be decoded."""
        key = self.key(image)
        if key is None:
            return None
        out = self.file_of(key)
        if out.exists():
            return out
        try:
            thumb = make_thumbnail(image, self.size)
        except Exception:  # any decoding problem: no thumbnail, the caller shows a placeholder
            return None
        with atomic_path(out) as tmp:  # a reader never sees half a file, two writers never clash
            thumb.save(tmp, format="WEBP", quality=self.quality, method=4)
        return out

    def get_many(
        self,
        images: Sequence[str | os.PathLike],
        *,
        workers: int = 2,
        stop: threading.Event | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Path | None]:
        """Thumbnails of many images, in order; None for those that failed (or were not made before ``stop``)."""
        total = len(images)
        out: list[Path | None] = [None] * total

        def work(i: int) -> None:
            if stop is None or not stop.is_set():
                out[i] = self.get(images[i])

        done = 0
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for _ in pool.map(work, range(total)):
                done += 1
                if progress is not None and (done % 50 == 0 or done == total):
                    progress(done, total)
        return out

    def clear(self) -> int:
        """Delete every thumbnail; returns how many files were removed."""
        removed = 0
        if self.folder.is_dir():
            for f in self.folder.glob(f"*{THUMBNAIL_SUFFIX}"):
                f.unlink(missing_ok=True)
                removed += 1
        return removed


def make_thumbnail(image: str | os.PathLike, size: int) -> Image.Image:
    """Decode ``image`` and shrink it so its longest side is at most ``size`` (aspect ratio kept)."""
    # the core's rules for odd modes (16-bit, alpha, palettes) and for the memory one image may take
    from .data import flatten_alpha, load_reduced, to_8bit

    with Image.open(image) as img:
        img.seek(0)
        img = load_reduced(img, size * 2, "RGB")  # JPEG: decoded at a reduced scale, much faster
        img = flatten_alpha(to_8bit(img))
        if img.mode not in ("L", "RGB"):
            img = img.convert("L" if img.mode == "1" else "RGB")
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
        return img.copy()
