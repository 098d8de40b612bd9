"""Counting the clusters the data really uses."""

import numpy as np

from l2c_explorer.kestimate import dominant_clusters, estimate_k, merge_into_dominant


def labels_from_sizes(sizes):
    return np.concatenate([np.full(n, k) for k, n in enumerate(sizes)])


def test_stragglers_are_not_counted():
    labels = labels_from_sizes([20] * 10 + [1, 1, 2])
    assert estimate_k(labels) == 10


def test_estimate_does_not_depend_on_unused_outputs():
    # the same used clusters whatever k_max was: ids are all that matter, empty outputs are invisible
    labels = labels_from_sizes([30, 25, 20, 3])
    assert estimate_k(labels) == estimate_k(labels + 50) == 3


def test_uneven_real_clusters_are_kept():
    labels = labels_from_sizes([40, 20, 10, 6])
    assert estimate_k(labels) == 4


def test_ratio_rule_like_dtc():
    labels = labels_from_sizes([200, 100, 3, 1])
    assert estimate_k(labels, rule="ratio", ratio=0.01) == 3
    assert estimate_k(labels, rule="ratio", ratio=0.1) == 2


def test_dominant_ids_sorted_by_size():
    labels = labels_from_sizes([5, 30, 12])
    assert dominant_clusters(labels).tolist() == [1, 2, 0]


def test_degenerate_input_keeps_one_cluster():
    assert estimate_k(np.arange(5)) == 1  # five singletons: no cluster reaches the minimum size


def test_merge_gives_stragglers_to_their_best_dominant_cluster():
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.3, 0.5]])
    assert merge_into_dominant(probs, np.array([0, 1])).tolist() == [0, 1, 1]
