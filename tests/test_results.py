"""Results on disk: per-group folders that sort, never overwritten without a go-ahead, named groups."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from l2c_explorer.errors import FolderNotEmptyError, InputError
from l2c_explorer.results import EXPORT_MANIFEST, check_output_folder, export_cluster_folders, export_folder_names


@pytest.fixture
def images(tmp_path) -> tuple[Path, list[str], np.ndarray]:
    """12 small files in two sub-folders, in 12 groups (two-digit group numbers)."""
    root = tmp_path / "images"
    paths = []
    for i in range(12):
        rel = f"{'a' if i < 6 else 'b'}/img{i:02d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(bytes([i]) * 10)
        paths.append(rel)
    return root, paths, np.arange(12)


def test_group_folders_are_zero_padded_so_they_sort(images, tmp_path):
    root, paths, labels = images
    counts = export_cluster_folders(root, paths, labels, tmp_path / "out")
    folders = sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir())
    assert folders == [f"cluster_{i:02d}" for i in range(12)] and sum(counts.values()) == 12
    assert (tmp_path / "out" / "cluster_10" / "b__img10.png").read_bytes() == bytes([10]) * 10


def test_an_export_never_overwrites_without_a_go_ahead(images, tmp_path):
    root, paths, labels = images
    out = tmp_path / "out"
    export_cluster_folders(root, paths, labels, out)
    (out / "cluster_00" / "mine.txt").write_text("a file the user put there")
    (out / "notes.txt").write_text("another")
    with pytest.raises(FolderNotEmptyError, match="already holds"):
        export_cluster_folders(root, paths, labels % 3, out)
    assert len([p for p in out.iterdir() if p.is_dir()]) == 12  # nothing changed

    # with the go-ahead: the earlier export's files go, the user's own files stay
    counts = export_cluster_folders(root, paths, labels % 3, out, names={0: "round things"}, overwrite=True)
    assert counts == {"round_things": 4, "cluster_01": 4, "cluster_02": 4}
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["round_things", "cluster_01", "cluster_02", "cluster_00", "notes.txt", EXPORT_MANIFEST])
    assert [p.name for p in (out / "cluster_00").iterdir()] == ["mine.txt"]
    assert sum(1 for _ in out.rglob("*.png")) == 12


def test_groups_given_the_same_name_keep_separate_folders():
    assert export_folder_names([0, 1, 2], {0: "cats", 1: "Cats", 2: "a/b"}) == {0: "cats", 1: "Cats_2", 2: "a_b"}


def test_an_output_folder_inside_the_analysed_one_is_refused(images):
    root, _, _ = images
    with pytest.raises(InputError, match="inside the folder being analysed"):
        check_output_folder(root / "out", root)


def test_assignments_carry_group_names_when_known(tmp_path, keble_subset):
    from l2c_explorer.clustering import L2CClusterer
    from l2c_explorer.results import write_discovery_results

    clusterer = L2CClusterer(n_clusters=6, steps=5, self_training_steps=0).fit(keble_subset)
    write_discovery_results(clusterer, tmp_path / "plain")
    with open(tmp_path / "plain" / "assignments.csv", newline="") as f:
        assert next(csv.reader(f)) == ["path", "cluster", "confidence"]
    names = [f"group {chr(65 + i)}" for i in range(6)]
    summary = write_discovery_results(clusterer, tmp_path / "named", names=names)
    with open(tmp_path / "named" / "assignments.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(r["name"] == names[int(r["cluster"])] for r in rows) and summary["group_names"] == names


def test_an_output_folder_is_checked_before_any_work_and_nothing_is_left_by_the_check(tmp_path, images):
    import json
    import os

    root, _, _ = images
    with pytest.raises(InputError, match="system folder"):
        check_output_folder("/", root)
    with pytest.raises(InputError, match="system folder"):
        check_output_folder("/proc/results", root)
    with pytest.raises(InputError, match="system's own folder"):
        check_output_folder(tmp_path / "fine", "/proc")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(InputError, match="Cannot write into the output folder"):
        check_output_folder(tmp_path / "a_file" / "out", root)
    with pytest.raises(InputError, match="at most 4,096"):
        check_output_folder(tmp_path / ("x" * 10_000), root)
    # someone else's folder, even with a summary.json: refused for results unless forced, and left as it was
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "summary.json").write_text('{"my": "notes"}')
    with pytest.raises(InputError, match="not an earlier run's results.*--force"):
        check_output_folder(theirs, root, results=True)
    assert check_output_folder(theirs, root, results=True, force=True) == theirs
    assert check_output_folder(theirs, root) == theirs  # an export checks for files itself
    assert sorted(p.name for p in theirs.iterdir()) == ["summary.json"]
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "summary.json").write_text(json.dumps({"n_images": 3}))
    (earlier / "assignments.csv").write_text("path,cluster,confidence\n")
    assert check_output_folder(earlier, root, results=True) == earlier  # an earlier run's: replaced
    # the run a command reads from is not its output; a new folder is checked, not created
    with pytest.raises(InputError, match="run's own folder"):
        check_output_folder(earlier, root, run=earlier, results=True)
    assert check_output_folder(tmp_path / "new" / "deeper", root) == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(InputError, match="Cannot write into the output folder"):
            check_output_folder(locked, root)
