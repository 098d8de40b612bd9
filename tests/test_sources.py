"""Opening the images of a discovery: a folder into a pixel store, in-memory arrays, a folder's files."""

import numpy as np
import pytest
from PIL import Image

from l2c_explorer.errors import InputError
from l2c_explorer.similarity_model import load_similarity_model
from l2c_explorer.sources import FileSource, embedded_new_images, open_images, scratch_folder


@pytest.fixture(scope="module")
def model():
    return load_similarity_model("omniglot")


def small_folder(root, n_per_class=3):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(root / cls / f"{i}.png")
    (root / "b" / "broken.png").write_bytes(b"not an image")
    return root


def test_a_folder_is_read_once_into_a_pixel_store(tmp_path, model):
    folder = small_folder(tmp_path / "images")
    heard = []
    with scratch_folder() as scratch:
        opened = open_images(folder, model, labelled=True, follow_links=False, cache=False, scratch=scratch,
                             reading=lambda done, total, message=None: heard.append((done, total)))
        source = opened.source
        size = model.preprocessing.size
        assert opened.folder_cache is None and not opened.pixels_cached
        assert len(source) == 6 and source.labels == ["a"] * 3 + ["b"] * 3
        assert [f for f, _ in source.skipped] == ["b/broken.png"]
        assert tuple(source.take([0, 5]).shape) == (2, model.preprocessing.channels, size, size)
    assert heard and heard[-1][0] == heard[-1][1]


def test_a_second_opening_reads_the_folders_cache(tmp_path, model):
    folder = small_folder(tmp_path / "images")
    with scratch_folder() as scratch:
        first = open_images(folder, model, labelled=False, follow_links=False, cache=tmp_path / "cache",
                            scratch=scratch, reading=lambda *a, **k: None)
        again = open_images(folder, model, labelled=False, follow_links=False, cache=tmp_path / "cache",
                            scratch=scratch, reading=lambda *a, **k: None)
    assert not first.pixels_cached and again.pixels_cached
    assert np.array_equal(first.source.take([0, 1]).numpy(), again.source.take([0, 1]).numpy())


def test_arrays_open_in_memory_and_an_empty_folder_is_explained(tmp_path, model):
    arrays = np.random.default_rng(0).integers(0, 255, (4, 28, 28), dtype=np.uint8)
    with scratch_folder() as scratch:
        opened = open_images(arrays, model, labelled=False, follow_links=False, cache=False, scratch=scratch,
                             reading=lambda *a, **k: None)
        assert len(opened.source) == 4 and opened.folder_cache is None
        (tmp_path / "empty").mkdir()
        with pytest.raises(InputError, match="No images found"):
            open_images(tmp_path / "empty", model, labelled=False, follow_links=False, cache=False, scratch=scratch,
                        reading=lambda *a, **k: None)


def test_a_file_source_reads_its_images_on_demand(tmp_path, model):
    from l2c_explorer.store import folder_listing

    folder = small_folder(tmp_path / "images")
    source = FileSource(folder, folder_listing(folder), model.preprocessing, labelled=True)
    # every listed file: an unreadable one is found out (and skipped) by the worker that reads it
    assert len(source) == 7 and source.labels[0] == "a" and "b/broken.png" in source.paths
    assert source.take([1]).shape[0] == 1


def test_new_images_are_read_and_embedded_with_the_runs_model(tmp_path, model):
    import torch

    from l2c_explorer.progress import Reporter

    folder = small_folder(tmp_path / "new")
    heard = []
    emb, data = embedded_new_images(folder, model, device=torch.device("cpu"), report=Reporter(heard.append),
                                    labelled=True)
    assert emb.shape[0] == len(data.paths) == 6 and data.labels == ["a"] * 3 + ["b"] * 3
    assert [path for path, _ in data.skipped] == ["b/broken.png"]
    assert torch.allclose(emb.norm(dim=1), torch.ones(6), atol=1e-4)  # unit embeddings
    assert {p.stage for p in heard} == {"reading", "features"}
