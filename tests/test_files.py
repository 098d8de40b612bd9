"""Writing files atomically, with ordinary permissions, and no process-wide setting changed to do it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading

import pytest

from l2c_explorer.files import atomic_path, write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out" / "summary.json"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["summary.json"]


def test_concurrent_writers_of_one_file_never_clash(tmp_path):
    target = tmp_path / "thumb.webp"
    errors = []

    def write(i: int) -> None:
        try:
            for _ in range(20):
                write_text(target, f"writer {i}")
        except Exception as exc:  # pragma: no cover - the failure this test is about
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and target.read_text().startswith("writer ")
    assert [p.name for p in tmp_path.iterdir()] == ["thumb.webp"]


def test_files_get_the_umask_and_the_umask_is_left_alone(tmp_path):
    """Run in a fresh process with its own umask: the written files follow it, and it is never changed."""
    code = f"""
import os, stat, torch
os.umask(0o027)
from l2c_explorer.files import write_text
from l2c_explorer.model_io import save_model_file
modes = [stat.S_IMODE(os.stat(write_text({str(tmp_path / 'a.txt')!r}, 'x')).st_mode)]
path = save_model_file({str(tmp_path / 'm.safetensors')!r}, {{'w': torch.zeros(2)}}, kind='test', config={{}})
modes.append(stat.S_IMODE(os.stat(path).st_mode))
print(modes, oct(os.umask(0)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[416,", "416]", "0o27"]  # 0o640 twice: 0o666 less the umask
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640


def test_importing_the_package_changes_no_process_wide_setting():
    code = """
import os, warnings
from PIL import Image, ImageFile
import numpy, scipy.optimize, scipy.sparse, safetensors.torch, sklearn.base, sklearn.metrics, torch  # noqa: F401
os.umask(0o027)
filters = list(warnings.filters)  # as the libraries left them
ImageFile.LOAD_TRUNCATED_IMAGES = True  # whatever the host program chose
import l2c_explorer.data, l2c_explorer.model_io, l2c_explorer.clustering, l2c_explorer.adaptation
import l2c_explorer.cli, l2c_explorer.options, l2c_explorer.thumbnails
print(warnings.filters == filters, ImageFile.LOAD_TRUNCATED_IMAGES, oct(os.umask(0)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "0o27"]


def test_temporary_files_of_a_killed_writer_are_removed_later_and_a_live_ones_kept(tmp_path):
    """A process killed with SIGKILL runs no clean-up: the next writer in that folder removes what it left."""
    from l2c_explorer.files import partial_name, remove_orphan_partials

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)  # a process that has ended (its pid is not reused within this test)
    orphans = [tmp_path / f"pixels-1x32x32.u8.{dead}.partial", tmp_path / f"knn.0a1b2c3d4e5f.{dead}.partial.safetensors"]
    for f in orphans:
        f.write_bytes(b"half")
    mine = partial_name(tmp_path / "pixels-3x64x64.u8")
    mine.write_bytes(b"being written")
    keep = [tmp_path / "knn.safetensors", tmp_path / "notes.partial.txt"]
    for f in keep:
        f.write_text("kept")
    assert sorted(remove_orphan_partials(tmp_path)) == sorted(orphans)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name] + [f.name for f in keep])
    with atomic_path(tmp_path / "x.json") as tmp:
        assert f".{os.getpid()}.partial" in tmp.name  # the writer's pid is in every temporary name
        tmp.write_text("{}")
