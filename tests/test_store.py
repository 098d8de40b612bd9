"""Decoding a folder into a pixel file and reading it back in chunks; the per-folder cache."""

import shutil

import numpy as np
import pytest
import torch
from folder_snapshot import tree_snapshot as snapshot

from l2c_explorer.cache import FolderCache, default_cache_dir, resolve_cache_dir
from l2c_explorer.data import load_image_folder
from l2c_explorer.errors import InputError, StoppedError
from l2c_explorer.store import folder_listing, from_image_set, open_store, read_folder


def test_store_holds_what_the_in_memory_reader_reads(tmp_path, keble_subset):
    (keble_subset / "broken.png").write_bytes(b"not a png")
    before = snapshot(keble_subset)
    ticks = []
    store = read_folder(keble_subset, tmp_path / "px.u8", size=32, channels=1, labelled=True, chunk=50,
                        progress=lambda d, t: ticks.append((d, t)))
    memory = load_image_folder(keble_subset, size=32, channels=1, labelled=True)
    assert snapshot(keble_subset) == before  # the folder is only read
    assert store.paths == memory.paths and store.labels == memory.labels and len(store) == 120
    assert [f for f, _ in store.skipped] == ["broken.png"]
    assert torch.equal(store.rows(0, len(store)), memory.pixels)
    assert ticks[0] == (0, 121) and ticks[-1] == (121, 121) and len(ticks) == 4  # the start, 3 chunks of <= 50
    assert torch.equal(store.take([5, 0, 5]), memory.pixels[[5, 0, 5]])
    starts = [s for s, chunk in store.chunks(32)]
    assert starts == [0, 32, 64, 96] and sum(len(c) for _, c in store.chunks(32)) == 120
    again = open_store(tmp_path / "px.u8", store.root, labelled=True)
    assert again.paths == store.paths and torch.equal(again.take([7]), store.take([7]))
    assert not list(tmp_path.glob("*.partial"))


def test_in_memory_store_and_incomplete_files(tmp_path, keble_subset):
    memory = load_image_folder(keble_subset, size=16, channels=1)
    store = from_image_set(memory)
    assert torch.equal(store.take([3, 1]), memory.pixels[[3, 1]]) and store.file is None
    store_file = tmp_path / "cut.u8"
    read_folder(keble_subset, store_file, size=16, channels=1)
    with open(store_file, "r+b") as f:  # cut short: not a store any more
        f.truncate(100)
    assert open_store(store_file, keble_subset) is None
    assert open_store(tmp_path / "missing.u8", keble_subset) is None


def test_stop_and_empty_folders(tmp_path, keble_subset):
    with pytest.raises(StoppedError):
        read_folder(keble_subset, tmp_path / "a.u8", size=16, channels=1, should_stop=lambda: True)
    assert not (tmp_path / "a.u8").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="No images"):
        read_folder(empty, tmp_path / "b.u8", size=16, channels=1)


def test_fingerprint_follows_the_folder_content(tmp_path, keble_subset):
    *_, first = folder_listing(keble_subset)
    *_, same = folder_listing(keble_subset)
    victim = sorted(keble_subset.rglob("*.png"))[0]
    shutil.copy(sorted(keble_subset.rglob("*.png"))[1], victim)  # edited image
    *_, edited = folder_listing(keble_subset)
    assert first == same != edited


def test_cache_round_trip_and_locations(tmp_path, monkeypatch):
    cache = FolderCache(tmp_path, "ab" * 32)
    assert cache.load("emb", ("x",)) is None
    cache.save("emb", x=np.arange(6, dtype=np.float32).reshape(2, 3), flag=np.array(True))
    loaded = cache.load("emb", ("x",))
    assert np.array_equal(loaded["x"], [[0, 1, 2], [3, 4, 5]]) and bool(loaded["flag"])
    assert cache.load("emb", ("x", "y")) is None  # a missing key: not what was asked for
    (cache.folder / "emb.safetensors").write_bytes(b"damaged")
    assert cache.load("emb", ("x",)) is None
    monkeypatch.setenv("L2C_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" and resolve_cache_dir(True) == tmp_path / "c"
    monkeypatch.delenv("L2C_CACHE_DIR")
    monkeypatch.setenv("L2C_WORK_DIR", str(tmp_path / "w"))
    assert default_cache_dir() == tmp_path / "w" / "features"
    assert resolve_cache_dir(False) is None and resolve_cache_dir(str(tmp_path)) == tmp_path
