"""The app's folders: its working folder and a first look at a folder of images."""

from __future__ import annotations

from pathlib import Path

import pytest
from folder_snapshot import tree_snapshot as snapshot

from l2c_explorer.app import views
from l2c_explorer.app.folders import check_image_folder, default_work_dir, list_subfolders, open_workspace
from l2c_explorer.errors import InputError
from l2c_explorer.thumbnails import ThumbnailCache


def test_check_folder_reports_counts_skips_and_sample(keble6, tmp_path):
    thumbs = ThumbnailCache(tmp_path / "thumbnails")
    (keble6 / "notes.txt").write_text("not an image")
    (keble6 / "character01" / "broken.png").write_bytes(b"\x89PNG broken")
    before = snapshot(keble6)
    report = check_image_folder(keble6, thumbs, sample=200)
    assert report.n_images == 120 and report.looks_labelled and len(report.subfolders) == 6 and report.checked_all
    reasons = dict(report.skipped)
    assert "notes.txt" in reasons and "not an image" in reasons["notes.txt"]
    assert "character01/broken.png" in reasons and "not an image" in reasons["character01/broken.png"]
    assert len(report.sample) == 120 and all(Path(p).parent == thumbs.folder for p, _ in report.sample)
    assert snapshot(keble6) == before
    text = views.folder_markdown(report)
    assert "Found **120 images**, **2 files skipped**" in text


def test_list_subfolders_hides_dot_folders(tmp_path):
    for name in ("b", "A", ".hidden"):
        (tmp_path / name).mkdir()
    (tmp_path / "file.txt").write_text("x")
    assert list_subfolders(tmp_path) == ["A", "b"]
    assert list_subfolders(tmp_path / "missing") == []


def test_the_working_folder_follows_the_environment_and_a_bad_one_is_said_plainly(tmp_path, monkeypatch):
    monkeypatch.setenv("L2C_WORK_DIR", str(tmp_path / "work"))
    assert default_work_dir() == tmp_path / "work"
    monkeypatch.delenv("L2C_WORK_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_work_dir() == tmp_path / "cache" / "l2c-explorer"
    workspace = open_workspace(tmp_path / "given")
    assert all(d.is_dir() and d.parent == workspace.root for d in workspace.served_dirs())
    (tmp_path / "a file").write_text("x")
    with pytest.raises(InputError, match="Cannot write to the working folder .*--work-dir"):
        open_workspace(tmp_path / "a file" / "work")
