"""Names people can read: padded group names, names files for category codes, groups named by truth."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from l2c_explorer.names import (
    category_names,
    find_names_file,
    group_names,
    has_readable_names,
    names_from_truth,
    read_names_file,
)

def test_group_names_are_zero_padded_so_they_sort():
    names = group_names(26)
    assert names[0] == "cluster 00" and names[25] == "cluster 25"
    assert sorted(names) == names
    assert group_names(3) == ["cluster 00", "cluster 01", "cluster 02"]
    assert group_names(101)[100] == "cluster 100" and group_names(101)[7] == "cluster 007"


@pytest.fixture
def coded(tmp_path) -> Path:
    """Category folders named by WordNet ids, a words.txt beside them (as Tiny ImageNet ships them)."""
    root = tmp_path / "tiny"
    for code in ("n02927161", "n04146614", "n02012849", "n03126707", "x_unknown"):
        (root / "set" / code).mkdir(parents=True)
    (root / "words.txt").write_text(
        "n02927161\tbutcher shop, meat market\n"
        "n04146614\tschool bus\n"
        "n02012849\tcrane\n"
        "n03126707\tcrane\n"
        "a line without a tab\n", encoding="utf-8")
    return root / "set"


def test_a_names_file_beside_or_above_the_folder_names_its_codes(coded):
    assert find_names_file(coded) == coded.parent / "words.txt"
    assert read_names_file(coded.parent / "words.txt")["n02927161"] == ["butcher shop", "meat market"]
    names = category_names([p.name for p in sorted(coded.iterdir())], coded)
    assert names["n02927161"] == "butcher shop" and names["n04146614"] == "school bus"
    # two categories share a first name: each keeps its code, so no two are confused
    assert names["n02012849"] == "crane (n02012849)" and names["n03126707"] == "crane (n03126707)"
    assert names["x_unknown"] == "x_unknown"  # not in the file: its folder name
    assert has_readable_names(names)


def test_folders_of_class_names_keep_their_names(tmp_path):
    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
    names = category_names(["cats", "dogs"], tmp_path)
    assert names == {"cats": "cats", "dogs": "dogs"} and not has_readable_names(names)
    assert category_names(["a"], None) == {"a": "a"}


def test_the_tiny_imagenet_names_file(tiny_imagenet):
    folder = tiny_imagenet / "novel-dev"
    codes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    names = category_names(codes, folder)
    assert len(set(names.values())) == len(codes)
    assert all(not name.startswith("n0") for name in names.values()), names


def test_groups_named_after_their_main_true_category():
    labels = [0, 0, 0, 1, 1, 2, 2, 2]
    truth = ["bus", "bus", "cat", "cat", "cat", "bus", "bus", "dog"]
    assert names_from_truth(labels, truth) == ["bus", "cat", "bus 2"]


def test_names_module_is_light():
    code = "import sys, l2c_explorer.names; print(sorted(m for m in ('torch', 'gradio') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "[]", out.stderr
