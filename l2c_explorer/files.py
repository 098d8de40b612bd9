"""Writing files so that a reader never sees half of one: a temporary file, then one atomic rename.

Every file the package writes (model files, results, thumbnails, cached maps, the page's scripts) goes
through :func:`atomic_path`. The temporary file has a unique name, so two writers of the same file never
clash, and it is created with mode 0o666 for the kernel to apply the process's umask: the result is an
ordinary file like any other output, and no process-wide setting is touched to get there.
"""

from __future__ import annotations

import csv
import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL = ".partial"  # marks the temporary files (``name.<random>.<pid>.partial.ext``) until they are renamed


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path`` to write to; when the block ends without error it becomes ``path``.

    The temporary name keeps the suffix of ``path`` (writers such as ``numpy.save`` go by it). On an error
    the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{secrets.token_hex(6)}.{os.getpid()}{PARTIAL}{path.suffix}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def partial_name(path: str | os.PathLike) -> Path:
    """A temporary name for a large file written in place of ``path`` (``name.<pid>.partial``), removed or
    renamed by its writer; :func:`remove_orphan_partials` removes it when its writer was killed."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}{PARTIAL}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or no way to tell: keep its file
    return True


def remove_orphan_partials(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files in ``folder`` whose writing process is gone (killed, crashed, powered off:
    no ``finally`` ran); returns them. Files of running processes are left to them."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        head, sep, _ = entry.name.rpartition(PARTIAL)
        pid = head.rpartition(".")[2]
        if not sep or not pid.isdigit() or not entry.is_file(follow_symlinks=False) or _alive(int(pid)):
            continue
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_csv(path: str | os.PathLike, header: list[str], rows) -> Path:
    """A CSV file with a header row, written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return Path(path)
