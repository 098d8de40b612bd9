"""The paper's clustering network as a baseline: dense targets, over-provisioned outputs, dominant clusters."""

from __future__ import annotations

import numpy as np
import torch

from l2c_explorer.metrics import clustering_scores
from l2c_explorer.paper import dense_pair_targets, dominant_clusters, train_paper_ccn
from l2c_explorer.similarity_model import load_similarity_model


def test_dense_targets_threshold_at_one_half_and_ignore_nothing():
    p = torch.tensor([[0.9, 0.2], [0.51, 0.5]])
    assert dense_pair_targets(p).tolist() == [[1.0, -1.0], [1.0, -1.0]]


def test_dominant_clusters_count_outputs_with_the_uniform_share():
    labels = np.array([0] * 50 + [1] * 40 + [2] * 9 + [3])  # 100 images, 10 outputs: the share is 10
    assert dominant_clusters(labels, n_outputs=10) == 2
    assert dominant_clusters(np.zeros(5, dtype=int), n_outputs=100) == 1


def test_the_paper_ccn_groups_real_drawings(keble_subset):
    model = load_similarity_model("omniglot")
    data = model.prepare(keble_subset, labelled=True)  # 6 characters x 20 drawings
    emb = model.embed(data.pixels, device="cpu")
    probs = train_paper_ccn(emb, model.pair_probabilities, n_outputs=20, loss="kcl", epochs=30, seed=0)
    assert probs.shape == (120, 20)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    labels = probs.argmax(1)
    # a margin well below what the method reaches here (about 0.9), far above chance (about 0.25)
    assert clustering_scores(np.array(data.labels), labels)["acc"] >= 0.6
    assert 3 <= dominant_clusters(labels, 20) <= 12
