"""Exceptions with messages meant for people, not stack traces.

Everything the command line and the app report to a user derives from :class:`L2CError`; the CLI turns
these into a one-line message and exit code 2.
"""

from __future__ import annotations

from pathlib import Path


class L2CError(Exception):
    """Base class for errors caused by the user's input, with a message a person can act on."""


class InputError(L2CError, ValueError):
    """A folder, an image set or an option that cannot be used as given.

    A :class:`ValueError`, as scikit-learn raises for parameters it cannot use.
    """


class ModelFileError(InputError):
    """A model file (or model name) that is missing, foreign, truncated or tampered with."""


class FolderNotEmptyError(InputError):
    """An output folder that already holds files: writing there needs the user's go-ahead."""

    def __init__(self, folder: Path, n_entries: int):
        self.folder = Path(folder)
        things = f"{n_entries} file{'s' if n_entries != 1 else ''} or folder{'s' if n_entries != 1 else ''}"
        super().__init__(f"The folder {folder} already holds {things} (an earlier export?).")


class StoppedError(L2CError):
    """A job was asked to stop before it produced anything usable."""


def check_folder(folder, *, what: str = "") -> Path:
    """Return ``folder`` as a resolved Path, or raise :class:`InputError` saying what is wrong with it.

    ``what`` (e.g. ``"Source folder"``) starts the message when one command reads several folders. Lives
    here, with the errors, because it must stay importable without torch (the app's start-up path).
    """
    prefix = f"{what}: " if what else ""
    if folder is None or str(folder).strip() == "":
        raise InputError(f"{prefix}No folder given.")
    if len(str(folder)) > MAX_PATH_CHARS:
        raise InputError(f"{prefix}This folder name is {len(str(folder)):,} characters long; no folder has a name "
                         f"that long (at most {MAX_PATH_CHARS:,}).")
    path = Path(folder).expanduser()
    try:
        if not path.exists():
            raise InputError(f"{prefix}Folder not found: {path}")
        if not path.is_dir():
            raise InputError(f"{prefix}Not a folder: {path} (give the folder that contains the images).")
        resolved = path.resolve()
    except (OSError, ValueError) as exc:  # a name the system refuses (a NUL byte), no permission, a loop
        raise InputError(f"{prefix}Cannot open the folder {path}: {getattr(exc, 'strerror', None) or exc}.") from None
    system = system_folder(resolved)
    if system:
        where = "" if resolved.as_posix() == system else f"inside {system}, "
        raise InputError(f"{prefix}{resolved} is {where}the system's own folder of processes or devices, not a folder "
                         "of images; choose another folder.")
    return resolved


MAX_PATH_CHARS = 4096  # Linux's PATH_MAX: a longer name is no folder's
SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")  # live views of processes and devices: reading them can hang or leak


def system_folder(path: Path) -> str | None:
    """The system folder (``/proc``, ``/sys``, ``/dev``) that the resolved ``path`` is or lies in, else None."""
    text = path.as_posix()
    return next((s for s in SYSTEM_FOLDERS if text == s or text.startswith(s + "/")), None)
