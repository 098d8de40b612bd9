"""The L2CClusterer estimator on real Omniglot drawings with the shipped similarity model."""

import threading

import numpy as np
import pytest

from l2c_explorer.clustering import L2CClusterer, pair_targets
from l2c_explorer.errors import InputError
from l2c_explorer.model_io import read_model_file


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, demo_keble):
    import shutil

    dest = tmp_path_factory.mktemp("k") / "keble8"
    for char_dir in sorted(demo_keble.iterdir())[:8]:
        shutil.copytree(char_dir, dest / char_dir.name)
    progress = []
    clusterer = L2CClusterer(similarity="omniglot", random_state=0).fit(dest, callback=progress.append, labelled=True)
    return clusterer, progress


def test_fitted_attributes_are_consistent(fitted):
    c, _ = fitted
    n = len(c.paths_)
    assert n == 160 and c.labels_.shape == (n,) and c.embedding_.shape[0] == n
    assert c.probabilities_.shape == (n, c.n_clusters_)
    assert np.allclose(c.probabilities_.sum(1), 1.0, atol=1e-5)
    assert np.all((c.confidence_ >= 0) & (c.confidence_ <= 1))
    assert set(np.unique(c.labels_)) == set(range(c.n_clusters_))
    sizes = np.bincount(c.labels_)
    assert np.all(np.diff(sizes) <= 0)  # numbered by decreasing size


def test_k_is_estimated_and_accuracy_is_real(fitted):
    c, _ = fitted
    scores = c.score()
    assert abs(c.n_clusters_ - 8) <= 1, c.n_clusters_
    assert scores["acc"] >= 0.85 and scores["k_true"] == 8


def test_progress_reports_loss_and_k(fitted):
    c, progress = fitted
    training = [p for p in progress if p.stage == "training"]
    assert training and all("loss" in p.metrics for p in training)
    assert any("k_estimated" in p.metrics for p in training)
    assert c.history_ and {"loss", "k_estimated"} <= set(c.history_[-1])


def test_known_k_gives_exactly_k_clusters(keble_subset):
    c = L2CClusterer(n_clusters=6, random_state=0).fit(keble_subset, labelled=True)
    assert c.n_clusters_ == 6 and len(np.unique(c.labels_)) == 6
    assert c.score()["acc"] >= 0.85


def test_same_seed_same_result(keble_subset):
    a = L2CClusterer(random_state=3).fit(keble_subset).labels_
    b = L2CClusterer(random_state=3).fit(keble_subset).labels_
    assert np.array_equal(a, b)


def test_stop_keeps_what_was_learnt(keble_subset):
    stop = threading.Event()

    def callback(p):
        if p.stage == "training" and p.step >= 2:
            stop.set()

    c = L2CClusterer(random_state=0).fit(keble_subset, callback=callback, stop=stop)
    assert c.labels_.shape == (120,) and c.n_clusters_ >= 1
    assert c.stopped_


def test_in_memory_arrays(demo_keble):
    from PIL import Image

    files = sorted((demo_keble / "character02").glob("*.png"))[:10] + sorted((demo_keble / "character03").glob("*.png"))[:10]
    arrays = [np.asarray(Image.open(f).convert("L")) for f in files]
    c = L2CClusterer(n_clusters=2).fit(arrays)
    assert c.labels_.shape == (20,)


def test_save_clustering_model(tmp_path, fitted):
    c, _ = fitted
    path = c.save(tmp_path / "ccn")
    tensors, config, _ = read_model_file(path, kind="clustering")
    assert config["n_clusters"] == c.n_clusters_ and config["similarity_sha256"] == c.similarity_model_.digest
    assert tensors["centres"].shape[0] == c.n_clusters_


@pytest.mark.parametrize("kwargs, message", [
    ({"loss": "xyz"}, "loss must be one of"),
    ({"n_clusters": 0}, "at least 1"),
    ({"max_clusters": 1}, "max_clusters"),
    ({"threshold": 1.5}, "threshold"),
    ({"n_clusters": 500}, "only 120 images"),
])
def test_bad_parameters_are_explained(keble_subset, kwargs, message):
    with pytest.raises(InputError, match=message):
        L2CClusterer(**kwargs).fit(keble_subset)


def test_pair_targets_threshold():
    import torch

    t = pair_targets(torch.tensor([[0.9, 0.2], [0.51, 0.5]]))
    assert t.tolist() == [[1.0, -1.0], [1.0, -1.0]]
