"""Shared test helper: prove that a folder was only read."""
from pathlib import Path


def tree_snapshot(folder: Path) -> dict:
    """{relative path: (size, mtime_ns)} of every file under ``folder``."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }
