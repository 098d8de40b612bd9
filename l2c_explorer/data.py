"""Reading folders of images into tensors, robustly.

The rules every entry point shares:

* a folder is searched recursively for the extensions in :data:`IMAGE_EXTENSIONS`;
* a file that cannot be decoded is skipped and reported (path and reason), never fatal;
* only regular files are read (a pipe named ``x.png`` would block forever), names that are not text are
  skipped and listed, and the system's folders (``/proc``, ``/sys``, ``/dev``) are never entered;
* links that lead outside the folder are skipped and listed unless ``follow_links`` is asked for;
* decoding one image costs at most :data:`DECODE_BUDGET` bytes, however large it is;
* the folder is only read, never written to;
* every image is converted to what a model expects (:class:`Preprocessing`): its channel count, a square
  of its input size (aspect ratio kept, padded with the image's own border colour) and, at model-input
  time, its inversion and normalisation.

Importing this module changes no process-wide setting: a truncated file fails to decode under Pillow's
own default (``ImageFile.LOAD_TRUNCATED_IMAGES`` is False), and images larger than Pillow's
``Image.MAX_IMAGE_PIXELS`` are refused by :func:`read_image` itself, call by call.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import InputError, check_folder, system_folder

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
ROOT_LABEL = "."  # the class name given to images that sit directly in a labelled folder's root
# torchvision's ImageNet channel statistics, which pretrained backbone weights expect their input in
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How raw pixels become model input; stored inside every model file.

    Attributes
    ----------
    size : int
        Side of the square input, in pixels.
    channels : int
        1 (grayscale) or 3 (RGB).
    invert : bool
        Whether intensities are flipped (x -> 1 - x) so that a light background becomes 0. Dark strokes on
        white paper then look like signal on an empty canvas, which is what zero padding and the affine
        augmentation assume.
    mean, std : tuple of float
        Per-channel normalisation applied after inversion.
    mirror_average : bool
        Whether an image's embedding is the average of its own and its mirror image's (for models that
        learnt that a mirrored photo shows the same thing: a cheap, steadier embedding).
    """

    size: int = 32
    channels: int = 1
    invert: bool = False
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    mirror_average: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(
            size=int(d["size"]),
            channels=int(d["channels"]),
            invert=bool(d["invert"]),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
            mirror_average=bool(d.get("mirror_average", False)),  # absent from files written before it existed
        )


@dataclass
class ImageSet:
    """Decoded images of one folder (or of in-memory arrays), at a model's input size.

    Attributes
    ----------
    pixels : torch.Tensor of shape (n_images, channels, size, size), dtype uint8
        Raw intensities, neither inverted nor normalised.
    paths : list of str
        Each image's path relative to ``root`` (POSIX separators), or a generated name for arrays.
    root : Path or None
        The folder the images came from.
    labels : list of str or None
        Class names taken from the folder structure (see :func:`load_image_folder`), when requested.
    skipped : list of (str, str)
        Files that could not be used, with the reason.
    """

    pixels: torch.Tensor
    paths: list[str]
    root: Path | None = None
    labels: list[str] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def class_names(self) -> list[str]:
        """Sorted distinct labels (empty without labels)."""
        return sorted(set(self.labels)) if self.labels is not None else []

    def label_ids(self) -> np.ndarray:
        """Integer labels, shape (n_images,), indexing :attr:`class_names`."""
        if self.labels is None:
            raise InputError("These images carry no labels (the folder was read without class folders).")
        index = {name: i for i, name in enumerate(self.class_names)}
        return np.array([index[name] for name in self.labels], dtype=np.int64)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageSet:
        idx = np.asarray(indices, dtype=np.int64)
        return ImageSet(
            pixels=self.pixels[torch.from_numpy(idx)],
            paths=[self.paths[i] for i in idx],
            root=self.root,
            labels=None if self.labels is None else [self.labels[i] for i in idx],
            skipped=list(self.skipped),
        )


# ---------------------------------------------------------------------------------------------------
# folders


def find_images(folder: str | os.PathLike, *, follow_links: bool = False) -> tuple[list[Path], list[tuple[str, str]]]:
    """List the image files under ``folder``, recursively and in a stable order.

    Parameters
    ----------
    follow_links : bool
        Also follow links (to files or folders) that lead outside ``folder``; by default they are skipped and
        listed. Links that stay inside it are always followed.

    Returns
    -------
    images : list of Path
        Regular files with an image extension, sorted by relative path. Hidden files and folders are
        ignored; links to folders are followed (each real folder is read once, so a link loop ends), never
        into the system's folders (``/proc``, ``/sys``, ``/dev``).
    ignored : list of (str, str)
        Other files, with the reason they were not read: other extensions, pipes, devices and sockets (reading
        one could wait forever), links to nowhere, links that leave the folder (unless ``follow_links``), and
        names that are not valid text (shown with ``?``).
    """
    root = check_folder(folder)
    real_root = root.resolve()
    images: list[Path] = []
    ignored: list[tuple[str, str]] = []
    seen = {real_root}  # linked folders are followed, each real folder once (a link loop ends there)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        kept = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            real = (Path(dirpath) / d).resolve()
            rel = (Path(dirpath) / d).relative_to(root).as_posix()
            if not follow_links and not system_folder(real) and not real.is_relative_to(real_root):
                ignored.append((shown_name(rel), OUTSIDE_LINK))
                continue
            if real in seen:
                continue
            seen.add(real)
            if system_folder(real):
                ignored.append((shown_name(rel), f"a link into {system_folder(real)}, the system's folder (not followed)"))
            elif not valid_name(d):
                ignored.append((shown_name(rel), "folder name is not valid text (UTF-8)"))
            else:
                kept.append(d)
        dirnames[:] = kept
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            why = _not_readable(path, name)
            if not why and not follow_links and path.is_symlink() and not path.resolve().is_relative_to(real_root):
                why = OUTSIDE_LINK
            if why:
                ignored.append((shown_name(rel), why))
            elif path.suffix.lower() in IMAGE_EXTENSIONS:
                images.append(path)
            else:
                ignored.append((rel, "not an image file (unknown extension)"))
    images.sort(key=lambda p: p.relative_to(root).as_posix())
    return images, ignored


OUTSIDE_LINK = "a link to a place outside the chosen folder (not followed; --follow-links follows it)"


def valid_name(name: str) -> bool:
    """Whether a file name decoded from the file system is text (a name that is not UTF-8 decodes with lone
    surrogates, which no CSV, JSON or web page can carry)."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def shown_name(name: str) -> str:
    """A file name as text that can be written anywhere: bytes that are not UTF-8 shown as ``?``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("\ufffd", "?")


def _not_readable(path: Path, name: str) -> str | None:
    """Why the directory entry ``path`` is not read as an image file (None: it can be)."""
    import stat

    if not valid_name(name):
        return "file name is not valid text (UTF-8)"
    try:
        mode = path.stat().st_mode  # through a link: what it points to
    except OSError:
        return "a link to nothing, or a file that cannot be opened"
    if not stat.S_ISREG(mode):
        return "not a regular file (a pipe, device or socket)"
    if path.is_symlink() and system_folder(path.resolve()):
        return f"a link into {system_folder(path.resolve())}, the system's folder (not followed)"
    return None


def class_of(relative_path: str, depth: int = 1) -> str:
    """The class name of an image from its path relative to a labelled root: its first ``depth`` folders."""
    parts = relative_path.split("/")[:-1]
    if not parts:
        return ROOT_LABEL
    return "/".join(parts[:depth])


def truth_problem(labels: Sequence[str]) -> str | None:
    """Why folder labels (:func:`class_of`) cannot be the true categories of the images, in plain words;
    None when they can.

    Every score against them would mean nothing: an image directly in the folder names no category, and
    with a single category any grouping into one group scores a perfect 1.000.
    """
    loose = sum(1 for label in labels if label == ROOT_LABEL)
    if loose:
        some = "1 image sits" if loose == 1 else f"{loose:,} images sit"
        whose = "its" if loose == 1 else "their"
        return f"{some} directly in the folder, not in a sub-folder named after {whose} category"
    if len(set(labels)) < 2:
        return "the sub-folders do not name at least two categories"
    return None


# ---------------------------------------------------------------------------------------------------
# single images


class ImageReadError(Exception):
    """One file that could not be turned into an image; the message is the reason shown to users."""


def to_8bit(img: Image.Image) -> Image.Image:
    """Bring 16-bit, 32-bit integer and float images to 8 bits per channel, scaling by their range."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        if img.mode.startswith("I;16"):
            arr = arr / 65535.0
        else:
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    return img


def flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite transparent images over white paper; resolve palettes."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return img


def fit_square(arr: np.ndarray, size: int) -> np.ndarray:
    """Resize an (H, W, C) uint8 array into a ``size`` x ``size`` square, keeping the aspect ratio.

    The margin is filled with the median colour of the image's border, so a white page stays white.
    """
    h, w, c = arr.shape
    scale = size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    mode = "L" if c == 1 else "RGB"
    img = Image.fromarray(arr[..., 0] if c == 1 else arr, mode=mode)
    if (new_w, new_h) != (w, h):
        shrinking = new_w < w or new_h < h
        resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
        img = img.resize((new_w, new_h), resample=resample)
    out = np.asarray(img, dtype=np.uint8).reshape(new_h, new_w, c)
    if (new_w, new_h) == (size, size):
        return out
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]], axis=0)
    fill = np.median(border, axis=0).astype(np.uint8)
    canvas = np.empty((size, size, c), dtype=np.uint8)
    canvas[...] = fill
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = out
    return canvas


# What decoding one image may cost: above it an image is refused, before anything is decoded. A JPEG is
# decoded at a reduced scale (``draft``) first; other large images are reduced right after decoding, before
# any conversion; and large ones are decoded one at a time (the reading threads would otherwise hold several).
DECODE_BUDGET = 200 * 2**20  # bytes
LARGE_DECODE = 32 * 2**20  # bytes: an image this large waits for the others of its size
REDUCED_SIDE = 4  # x the model's input size: what a large image is reduced to before it is converted
_large_decode = threading.Lock()


def decoded_bytes(img: Image.Image) -> int:
    """The memory Pillow takes for ``img`` decoded: 1 byte a pixel for 1, L and P, 2 for 16-bit grey, and 4
    for every other mode (Pillow keeps RGB in 4 bytes too)."""
    per_pixel = 1 if img.mode in ("1", "L", "P") else 2 if img.mode.startswith("I;16") else 4
    return img.width * img.height * per_pixel


def load_reduced(img: Image.Image, side: int, mode: str) -> Image.Image:
    """Decode an opened image within :data:`DECODE_BUDGET`, its longest side reduced to at most ``side``.

    A JPEG is decoded at 1/2, 1/4 or 1/8 of its size when that still covers ``side`` (``mode``: what it will
    be converted to); anything else is reduced right after decoding, before a conversion copies it.

    Raises
    ------
    ImageReadError
        When decoding would cost more than the budget.
    """
    if img.format == "JPEG":
        img.draft(mode, (side, side))
    cost = decoded_bytes(img)
    if cost > DECODE_BUDGET:
        raise ImageReadError(f"image too large to decode ({img.width} x {img.height} pixels in mode "
                             f"{img.mode}: {cost / 2**20:.0f} MB, more than {DECODE_BUDGET // 2**20} MB)")
    with _large_decode if cost > LARGE_DECODE else contextlib.nullcontext():
        img.load()
        if max(img.size) > side:
            scale = side / max(img.size)
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                             resample=Image.Resampling.BOX)
    return img


def read_image(path: str | os.PathLike, *, size: int, channels: int) -> np.ndarray:
    """Decode one image file into an array of shape (channels, size, size), dtype uint8.

    Decoding costs at most :data:`DECODE_BUDGET` bytes of memory, however large the image.

    Raises
    ------
    ImageReadError
        With a short reason when the file is not a readable image.
    """
    try:
        with Image.open(path) as img:
            # Pillow only warns between its limit and twice that; a possible decompression bomb is refused
            # here, before anything is decoded (no process-wide warnings filter needed)
            if Image.MAX_IMAGE_PIXELS and img.width * img.height > Image.MAX_IMAGE_PIXELS:
                raise Image.DecompressionBombError(f"{img.width} x {img.height} pixels")
            img.seek(0)  # first frame of animations and multi-page TIFFs
            img = load_reduced(img, max(REDUCED_SIDE * size, 256), "L" if channels == 1 else "RGB")
            img = flatten_alpha(to_8bit(img))
            img = img.convert("L" if channels == 1 else "RGB")
            arr = np.asarray(img, dtype=np.uint8)
    except UnidentifiedImageError:
        raise ImageReadError("not an image, or a format Pillow cannot read") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated, corrupt or unsupported data
        raise ImageReadError(f"unreadable image ({_short(exc)})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # the warning: when a host made it an error
        raise ImageReadError("image too large (possible decompression bomb)") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError("empty image (zero width or height)")
    return fit_square(arr, size).transpose(2, 0, 1).copy()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]


# ---------------------------------------------------------------------------------------------------
# whole folders


ProgressFn = Callable[[int, int], None]


def load_image_folder(
    folder: str | os.PathLike,
    *,
    size: int,
    channels: int,
    labelled: bool = False,
    class_depth: int = 1,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    workers: int | None = None,
    follow_links: bool = False,
) -> ImageSet:
    """Read every image under ``folder`` at the given size.

    Parameters
    ----------
    folder : path
        The folder to search (recursively). It is never written to.
    size, channels : int
        Output square size and channel count (1 or 3).
    labelled : bool
        Also record each image's class: the first ``class_depth`` folder levels under ``folder``.
    progress : callable(done, total), optional
        Called as files are decoded.
    should_stop : callable() -> bool, optional
        Polled between files; when it returns True the images read so far are returned.
    follow_links : bool
        Also read links that lead outside ``folder`` (see :func:`find_images`).

    Raises
    ------
    InputError
        When the folder does not exist, is not a folder, or holds no readable image.
    """
    if channels not in (1, 3):
        raise InputError(f"channels must be 1 or 3, not {channels}.")
    root = check_folder(folder)
    files, skipped = find_images(root, follow_links=follow_links)
    if not files:
        raise InputError(
            f"No images found in {root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, in all subfolders)."
        )
    total = len(files)
    arrays: list[np.ndarray | None] = [None] * total
    reasons: dict[int, str] = {}

    def work(i: int) -> None:
        if should_stop is not None and should_stop():
            reasons[i] = "not read: stopped"
            return
        try:
            arrays[i] = read_image(files[i], size=size, channels=channels)
        except ImageReadError as exc:
            reasons[i] = str(exc)

    n_workers = workers or min(8, (os.cpu_count() or 2) * 2)
    done = 0
    if progress is not None:  # the count is known: a first estimate of the whole run can be shown now
        progress(0, total)
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        for _ in pool.map(work, range(total)):
            done += 1
            if progress is not None and (done % 64 == 0 or done == total):
                progress(done, total)

    rel = [f.relative_to(root).as_posix() for f in files]
    keep = [i for i in range(total) if arrays[i] is not None]
    skipped = skipped + [(rel[i], reasons[i]) for i in range(total) if i in reasons and reasons[i] != "not read: stopped"]
    if not keep:
        raise InputError(f"None of the {total} image files in {root} could be read; see the skipped list.")
    pixels = torch.from_numpy(np.stack([arrays[i] for i in keep]))
    paths = [rel[i] for i in keep]
    labels = [class_of(p, class_depth) for p in paths] if labelled else None
    return ImageSet(pixels=pixels, paths=paths, root=root, labels=labels, skipped=sorted(skipped))


def images_from_arrays(
    images: np.ndarray | torch.Tensor | Sequence[np.ndarray],
    *,
    size: int,
    channels: int,
    labels: Sequence | None = None,
    names: Sequence[str] | None = None,
) -> ImageSet:
    """Build an :class:`ImageSet` from in-memory images (uint8 0-255 or float 0-1).

    ``images`` is an array of shape (n, H, W), (n, H, W, C) or (n, C, H, W), or a list of such single images.
    """
    items = list(images) if not isinstance(images, (np.ndarray, torch.Tensor)) else list(np.asarray(images))
    out = []
    for item in items:
        arr = np.asarray(item)
        if arr.dtype != np.uint8:
            arr = np.clip(arr.astype(np.float64) * (255.0 if arr.max() <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8)
        if arr.ndim == 2:
            arr = arr[..., None]
        elif arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
            arr = arr.transpose(1, 2, 0)
        if arr.ndim != 3:
            raise InputError(f"Each image must be 2-D or 3-D, got shape {arr.shape}.")
        if arr.shape[-1] == 4:
            arr = arr[..., :3]
        if channels == 1 and arr.shape[-1] == 3:
            arr = np.asarray(Image.fromarray(arr, "RGB").convert("L"))[..., None]
        elif channels == 3 and arr.shape[-1] == 1:
            arr = np.repeat(arr, 3, axis=-1)
        out.append(fit_square(arr, size).transpose(2, 0, 1))
    if not out:
        raise InputError("No images given.")
    n = len(out)
    paths = list(names) if names is not None else [f"image_{i:06d}" for i in range(n)]
    if len(paths) != n or (labels is not None and len(labels) != n):
        raise InputError("images, labels and names must have the same length.")
    return ImageSet(
        pixels=torch.from_numpy(np.stack(out)),
        paths=paths,
        labels=None if labels is None else [str(v) for v in labels],
    )


def as_image_set(images, *, size: int, channels: int, labelled: bool = False, **folder_kwargs) -> ImageSet:
    """Accept a folder path, an :class:`ImageSet` or in-memory arrays, and return an :class:`ImageSet`."""
    if isinstance(images, ImageSet):
        if images.pixels.shape[1:] != (channels, size, size):
            raise InputError(
                f"These images are {tuple(images.pixels.shape[1:])} but the model expects ({channels}, {size}, {size})."
            )
        return images
    if isinstance(images, (str, os.PathLike)):
        return load_image_folder(images, size=size, channels=channels, labelled=labelled, **folder_kwargs)
    return images_from_arrays(images, size=size, channels=channels)


# ---------------------------------------------------------------------------------------------------
# model input


def light_background(pixels: torch.Tensor) -> bool:
    """Whether images of shape (n, C, H, W), uint8, mostly have a light border (dark ink on light paper)."""
    border = torch.cat(
        [pixels[..., 0, :], pixels[..., -1, :], pixels[..., :, 0], pixels[..., :, -1]], dim=-1
    ).float()
    return bool(border.median() > 127.5)


def to_unit(pixels: torch.Tensor, invert: bool) -> torch.Tensor:
    """uint8 pixels -> float in [0, 1], inverted when asked."""
    x = pixels.float().div_(255.0)
    return 1.0 - x if invert else x


def normalise(x: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """Apply the per-channel mean/std of ``prep`` to unit-range images of shape (n, C, H, W)."""
    mean = torch.tensor(prep.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(prep.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def channel_stats(images: torch.Tensor, invert: bool = False) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of images (n, C, H, W): uint8 pixels (inverted when asked) or unit-range floats.

    Accumulated in float64 over chunks, so 60,000 photos never become one float copy in memory.
    """
    n_channels = images.shape[1]
    total = torch.zeros(n_channels, dtype=torch.float64)
    squares = torch.zeros(n_channels, dtype=torch.float64)
    count = 0
    for start in range(0, len(images), 4096):
        chunk = images[start : start + 4096]
        unit = to_unit(chunk, invert) if chunk.dtype == torch.uint8 else chunk
        unit = unit.double()
        total += unit.sum(dim=(0, 2, 3))
        squares += (unit * unit).sum(dim=(0, 2, 3))
        count += unit.numel() // n_channels
    mean = total / count
    std = ((squares / count - mean * mean).clamp_min(0.0) * count / max(count - 1, 1)).sqrt().clamp_min(1e-3)
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)


def model_input(pixels: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """uint8 pixels of shape (n, C, size, size) -> the normalised float tensor a model takes."""
    return normalise(to_unit(pixels, prep.invert), prep)
