"""The clustering network's pure steps: pair targets, answer weights, mini-batches, training, clusters."""

import numpy as np
import pytest
import torch

from l2c_explorer.ccn import (
    clusters_from_labels,
    clusters_in_use,
    kmeans_centres,
    pair_targets,
    ranked_clusters,
    sample_batch,
    train_cluster_head,
)


def test_pair_targets_use_links_and_far_pairs_only():
    import scipy.sparse as sp

    feats = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.7, 0.7]]), dim=1)
    links = sp.csr_matrix(np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=float))
    t = pair_targets(feats, links, negative_below=0.3)
    assert t[0, 1] == 1 and t[1, 0] == 1  # linked: same
    assert t[0, 2] == -1 and t[2, 1] == -1  # orthogonal features: different
    assert t[0, 3] == 0 and t[2, 3] == 0  # in between: not used
    sub = pair_targets(feats, links, torch.tensor([1, 0, 2]), negative_below=0.3)
    assert sub.tolist() == [[0, 1, -1], [1, 0, -1], [-1, -1, 0]]


def test_answers_override_the_graphs_targets_and_weigh_like_a_whole_image():
    import scipy.sparse as sp

    from l2c_explorer.ccn import answer_weights
    from l2c_explorer.constraints import ConstraintSet

    feats = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.7, 0.7]]), dim=1)
    links = sp.csr_matrix(np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=float))
    answers = ConstraintSet(4, [(0, 1, 0), (2, 3, 1)]).pair_matrix()
    t = pair_targets(feats, links, negative_below=0.3, answers=answers)
    assert t[0, 1] == -1 and t[1, 0] == -1  # linked, but a person said different
    assert t[2, 3] == 1 and t[0, 2] == -1  # said same; far apart and not asked about: different as before
    w = answer_weights(t, answers)
    assert w[0, 1] == 4 and w[2, 3] == 4 and w[0, 2] == 1 and w[3, 3] == 1
    sub = pair_targets(feats, links, torch.tensor([1, 0]), negative_below=0.3, answers=answers)
    assert sub.tolist() == [[0, -1], [-1, 0]]
    assert answer_weights(sub, answers, torch.tensor([1, 0])).tolist() == [[1, 2], [2, 1]]
    assert answer_weights(t, None) is None


@pytest.mark.numerical
def test_the_clustering_network_keeps_apart_what_a_person_said_differs():
    """Two tight groups and an image between them, a little closer to the first; a person says it differs
    from an image of the first: trained with the answer, the network puts it in the other group (K stays 2),
    in full batches and in mini-batches."""
    from l2c_explorer.constraints import ConstraintSet
    from l2c_explorer.graph import knn_graph

    g = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(2, 8, generator=g), dim=1)
    feats = centres.repeat_interleave(100, 0) + 0.05 * torch.randn(200, 8, generator=g)
    feats[0] = 0.55 * centres[0] + 0.45 * centres[1]
    feats = torch.nn.functional.normalize(feats, dim=1)
    links = knn_graph(feats, k=5, mutual=True)
    answers = ConstraintSet(200, [(0, 1, 0)]).pair_matrix()
    for batch_size in (4096, 64):
        _, plain = train_cluster_head(feats, links, centres, steps=60, batch_size=batch_size)
        _, told = train_cluster_head(feats, links, centres, steps=60, batch_size=batch_size, answers=answers)
        assert plain.argmax(1)[0] == plain.argmax(1)[1]
        labels = told.argmax(1).numpy()
        assert labels[0] != labels[1] and len(np.unique(labels)) == 2
        assert (labels[2:100] == labels[2]).all() and (labels[100:] == labels[100]).all()


def test_mini_batches_pair_anchors_with_linked_partners():
    import scipy.sparse as sp

    n = 1000
    links = sp.csr_matrix((np.ones(n), (np.arange(n), (np.arange(n) + 1) % n)), shape=(n, n))
    links = links.maximum(links.T).tocsr()
    index = sample_batch(links, 64, torch.Generator().manual_seed(0)).numpy()
    inside = set(index.tolist())
    linked_pairs = sum(((i + 1) % n in inside) or ((i - 1) % n in inside) for i in index)
    assert len(index) <= 64 and linked_pairs == len(index)  # every image has a linked partner in the batch


@pytest.mark.numerical
def test_full_and_mini_batch_training_both_separate_two_groups():
    from l2c_explorer.graph import knn_graph

    g = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(2, 8, generator=g), dim=1)
    feats = torch.nn.functional.normalize(centres.repeat_interleave(100, 0) + 0.05 * torch.randn(200, 8, generator=g), dim=1)
    links = knn_graph(feats, k=5, mutual=True)
    start = torch.nn.functional.normalize(torch.randn(2, 8, generator=g), dim=1)
    truth = np.repeat([0, 1], 100)
    for batch_size in (4096, 64):
        history = []
        _, probs = train_cluster_head(feats, links, start, steps=60, batch_size=batch_size, history=history)
        labels = probs.argmax(1).numpy()
        assert max((labels == truth).mean(), (labels != truth).mean()) == 1.0
        assert history[0]["step"] == 1 and history[-1]["k_estimated"] == 2
        assert history[-1]["loss"] < history[0]["loss"]


def test_ranked_clusters_number_the_outputs_in_use_by_size():
    probs = np.array([[0.1, 0.2, 0.7], [0.2, 0.1, 0.7], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)
    c = ranked_clusters(probs)
    assert c.labels.tolist() == [0, 0, 1, 0] and c.n_clusters == 2 and c.head_state is None
    assert c.probabilities.shape == (4, 2)
    np.testing.assert_allclose(c.probabilities.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(c.confidence, c.probabilities[np.arange(4), c.labels])
    kept = ranked_clusters(probs, keep_empty=True)  # K given: the unused output stays, last
    assert kept.n_clusters == 3 and kept.labels.tolist() == [0, 0, 1, 0]
    np.testing.assert_allclose(kept.probabilities[:, 2], probs[:, 1], atol=1e-6)


def test_clusters_from_labels_make_every_label_its_images_most_probable_cluster():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(30, 5))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    labels = rng.integers(0, 4, 30)
    labels[:4] = np.arange(4)
    c = clusters_from_labels(labels, features)
    assert c.n_clusters == 4 and np.array_equal(c.labels, labels)
    assert np.array_equal(c.probabilities.argmax(1), labels)
    np.testing.assert_allclose(c.probabilities.sum(1), 1.0, atol=1e-9)
    assert c.head_state["centres"].shape == (4, 5)


def test_kmeans_centres_are_unit_and_clusters_in_use_counts_argmax_winners():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.05, (20, 3)) + [1, 0, 0], rng.normal(0, 0.05, (20, 3)) + [0, 1, 0]])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    centres = kmeans_centres(x, 2, seed=0)
    np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 1.0, atol=1e-5)
    assert clusters_in_use(torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0]])) == 1
