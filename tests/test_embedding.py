"""Embedding a folder chunk by chunk, here and on a local Dask cluster, and clustering the embeddings."""

import numpy as np
import pytest
import torch

from l2c_explorer.clustering import L2CClusterer
from l2c_explorer.embedding import adapt_model, embed_folder, embed_store, sample_indices
from l2c_explorer.similarity_model import load_similarity_model
from l2c_explorer.store import read_folder


def test_streamed_embeddings_equal_the_in_memory_ones(tmp_path, keble_subset):
    model = load_similarity_model("omniglot")
    memory = model.prepare(keble_subset)
    expected = model.embed(memory.pixels, device="cpu")  # batch-norm statistics of all 120 images
    size = model.preprocessing.size
    store = read_folder(keble_subset, tmp_path / "px.u8", size=size, channels=1, chunk=40)
    adapted = adapt_model(model, store.take, len(store), device=torch.device("cpu"))
    streamed = embed_store(adapted, store, device=torch.device("cpu"), batch_size=50)
    assert torch.allclose(streamed, expected, atol=1e-5)
    embedded = embed_folder(keble_subset, model, chunk=33, device="cpu")  # same kernels as ``expected``
    assert embedded.paths == memory.paths and np.allclose(embedded.embeddings, expected.numpy(), atol=1e-5)


def test_large_folders_estimate_the_statistics_on_a_seeded_sample():
    assert np.array_equal(sample_indices(50, 100), np.arange(50))
    a, b = sample_indices(1000, 100, seed=1), sample_indices(1000, 100, seed=1)
    assert np.array_equal(a, b) and len(np.unique(a)) == 100 and np.all(np.diff(a) > 0)


def test_fit_embeddings_clusters_precomputed_features(keble_subset):
    embedded = embed_folder(keble_subset, "omniglot", labelled=True)
    c = L2CClusterer(n_clusters=6, random_state=0).fit_embeddings(embedded)
    assert c.n_clusters_ == 6 and c.paths_ == embedded.paths and c.score() >= 0.85
    arrays = L2CClusterer(n_clusters=6, random_state=0).fit_embeddings(embedded.embeddings)
    assert np.array_equal(arrays.labels_, c.labels_) and arrays.paths_[0] == "image_000000"
    with pytest.raises(Exception, match="same images"):
        L2CClusterer(n_clusters=2).fit_embeddings(embedded.embeddings, paths=["a.png"])


@pytest.mark.slow
def test_embedding_on_a_local_dask_cluster(keble_subset):
    distributed = pytest.importorskip("distributed")
    here = embed_folder(keble_subset, "omniglot")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        there = embed_folder(keble_subset, "omniglot", client=client, chunk=25)  # 5 chunks over 2 workers
        c = L2CClusterer(n_clusters=6, random_state=0, self_training_steps=5, cache=False).fit(
            keble_subset, client=client, labelled=True)
    assert there.paths == here.paths and np.allclose(there.embeddings, here.embeddings, atol=1e-5)
    assert c.n_clusters_ == 6 and c.score() >= 0.85 and "self_training" in c.timings_
