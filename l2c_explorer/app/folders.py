"""The app's folders: its own working folder (:class:`Workspace`: thumbnails, maps, run outputs, models trained
in the app; the only folders ever served to the browser) and a first look at the user's image folders
(:func:`check_image_folder`: how many images, which files are skipped and why, a sample).

Light on imports (no torch, no gradio): the page imports this before anything heavy.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, check_folder
from ..thumbnails import ThumbnailCache

PACKAGE_DIR = Path(__file__).resolve().parent.parent
DEMO_DIR = PACKAGE_DIR.parent / "demo_data"


# ---------------------------------------------------------------------------------------------------
# the app's own folders


def default_work_dir() -> Path:
    """``$L2C_WORK_DIR``, else ``$XDG_CACHE_HOME/l2c-explorer``, else ``~/.cache/l2c-explorer``."""
    env = os.environ.get("L2C_WORK_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "l2c-explorer"


class _Part:
    """A sub-folder of the working folder, named like the attribute: ``workspace.maps`` is ``root / "maps"``."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, workspace, owner=None):
        return self if workspace is None else workspace.root / self.name


@dataclass
class Workspace:
    """The app's working folder and its parts. Everything the app writes, except user exports, goes here."""

    root: Path
    thumbnails = _Part()
    maps = _Part()
    runs = _Part()
    static = _Part()
    models = _Part()  # similarity models trained in the app

    def __post_init__(self):
        self.root = Path(self.root).expanduser().resolve()
        for d in (self.thumbnails, self.maps, self.runs, self.static, self.models):
            d.mkdir(parents=True, exist_ok=True)

    def run_dir(self, job_id: str) -> Path:
        d = self.runs / job_id
        d.mkdir(parents=True, exist_ok=True)
        return d

    def served_dirs(self) -> list[Path]:
        """The only folders whose files the browser may fetch: thumbnails, page scripts and run outputs."""
        return [self.thumbnails, self.static, self.runs]


def open_workspace(work_dir: str | os.PathLike | None = None) -> Workspace:
    """The working folder, falling back to a temporary one when the default cannot be written."""
    try:
        return Workspace(Path(work_dir) if work_dir else default_work_dir())
    except OSError:
        if work_dir:
            raise InputError(f"Cannot write to the working folder {work_dir}; choose another with --work-dir.") \
                from None
        user = os.getuid() if hasattr(os, "getuid") else "user"
        return Workspace(Path(tempfile.gettempdir()) / f"l2c-explorer-{user}")


# ---------------------------------------------------------------------------------------------------
# the user's image folders


@dataclass
class FolderReport:
    """What a look at a folder found.

    ``n_images`` counts the files that decode as images: every one of them in folders of up to
    :data:`FULL_CHECK_LIMIT` image files; above that only their names are looked at (``checked_all`` is
    False) and files that cannot be decoded are found, and listed, when the run reads them.
    """

    folder: Path
    n_images: int
    skipped: list[tuple[str, str]]
    sample: list[tuple[Path, str]]
    subfolders: list[str] = field(default_factory=list)
    checked_all: bool = True
    loose: int = 0  # images directly in the folder, in no sub-folder

    @property
    def looks_labelled(self) -> bool:
        """Whether the sub-folders' names may be the images' true categories: the rule a run's scores follow
        (:func:`~l2c_explorer.data.truth_problem`), on the categories found here."""
        from ..data import ROOT_LABEL, truth_problem

        return truth_problem([*self.subfolders, *[ROOT_LABEL] * self.loose]) is None


FULL_CHECK_LIMIT = 2000  # image files decoded by a folder check (a few tenths of a second on a laptop)


def check_image_folder(folder: str | os.PathLike, thumbs: ThumbnailCache, *, sample: int = 12) -> FolderReport:
    """Count a folder's images, list the files that will be skipped and why, and thumbnail a sample."""
    from ..data import ImageReadError, find_images, read_image

    root = check_folder(folder)
    files, ignored = find_images(root)
    skipped = list(ignored)
    checked_all = len(files) <= FULL_CHECK_LIMIT
    if checked_all:
        readable = []
        for f in files:
            try:
                read_image(f, size=8, channels=1)
                readable.append(f)
            except ImageReadError as exc:
                skipped.append((f.relative_to(root).as_posix(), str(exc)))
        files = readable
    picks = np.unique(np.linspace(0, len(files) - 1, num=min(sample, len(files))).round().astype(int)) if files else []
    shown = []
    for i in picks:
        rel = files[i].relative_to(root).as_posix()
        thumb = thumbs.get(files[i])
        if thumb is not None:
            shown.append((thumb, rel))
        elif not checked_all:
            skipped.append((rel, "cannot be decoded as an image"))
    n_images = len(files) - (0 if checked_all else len(picks) - len(shown))
    subfolders = sorted({f.relative_to(root).parts[0] for f in files if len(f.relative_to(root).parts) > 1})
    loose = sum(1 for f in files if len(f.relative_to(root).parts) == 1)
    return FolderReport(folder=root, n_images=n_images, skipped=sorted(skipped), sample=shown, subfolders=subfolders,
                        checked_all=checked_all, loose=loose)


def count_classes(folder: Path) -> int | None:
    """How many true categories a labelled folder has (its first-level sub-folders holding images); None when
    its folder names cannot be categories (:func:`~l2c_explorer.data.truth_problem`)."""
    from ..data import class_of, find_images, truth_problem

    files, _ = find_images(folder)
    labels = [class_of(f.relative_to(folder).as_posix()) for f in files]
    return None if truth_problem(labels) else len(set(labels))


def list_subfolders(folder: str | os.PathLike, limit: int = 500) -> list[str]:
    """Names of the visible sub-folders of ``folder`` (sorted, at most ``limit``); [] when unreadable."""
    try:
        with os.scandir(folder) as it:
            names = [e.name for e in it if not e.name.startswith(".") and e.is_dir(follow_symlinks=True)]
    except OSError:
        return []
    return sorted(names, key=str.lower)[:limit]


def demo_folders() -> dict[str, Path]:
    """The sample folders shipped in ``demo_data/`` (empty when not running from a source checkout)."""
    if not DEMO_DIR.is_dir():
        return {}
    return {d.name: d for d in sorted(DEMO_DIR.iterdir()) if d.is_dir() and not d.name.startswith(".")}
