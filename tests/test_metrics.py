"""Clustering accuracy, NMI/ARI and pair scores on hand-made cases."""

import numpy as np
import pytest

from l2c_explorer.metrics import cluster_accuracy, clustering_scores, dense_pair_scores, hungarian_mapping, pair_scores

pytestmark = pytest.mark.numerical  # .ci/run runs these again on one thread


def test_accuracy_is_invariant_to_cluster_names():
    y = np.array([0, 0, 1, 1, 2, 2])
    assert cluster_accuracy(y, np.array([5, 5, 3, 3, 9, 9])) == 1.0


def test_accuracy_with_one_error():
    y = np.array([0, 0, 0, 1, 1, 1])
    assert cluster_accuracy(y, np.array([1, 1, 0, 0, 0, 0])) == pytest.approx(5 / 6)


def test_extra_clusters_count_as_errors():
    # 2 classes split into 4 clusters: only 2 clusters can be matched, the other images are errors.
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    pred = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    assert cluster_accuracy(y, pred) == pytest.approx(4 / 8)


def test_fewer_clusters_than_classes():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 0, 0, 1, 1])
    assert cluster_accuracy(y, pred) == pytest.approx(4 / 6)


def test_mapping_is_one_to_one():
    y = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([7, 7, 8, 8, 8, 8])
    mapping = hungarian_mapping(y, pred)
    assert len(set(mapping.values())) == len(mapping) == 2
    assert mapping[7] == 0 and mapping[8] == 1


def test_clustering_scores_perfect_and_random():
    y = np.repeat(np.arange(5), 20)
    perfect = clustering_scores(y, (y + 2) % 5)
    assert perfect["acc"] == perfect["nmi"] == pytest.approx(1.0)
    assert perfect["ari"] == pytest.approx(1.0) and perfect["k_true"] == 5
    rng = np.random.default_rng(0)
    noise = clustering_scores(y, rng.integers(0, 5, size=100))
    assert noise["acc"] < 0.45 and noise["ari"] < 0.1


def test_string_labels_are_accepted():
    assert cluster_accuracy(np.array(["a", "a", "b"]), np.array([1, 1, 0])) == 1.0


def test_pair_scores_hand_computed():
    prob = np.array([0.9, 0.8, 0.3, 0.6, 0.1])
    same = np.array([True, True, True, False, False])
    s = pair_scores(prob, same)
    # predicted same: pairs 0, 1, 3 -> tp 2, fp 1, fn 1
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3)
    assert s["roc_auc"] == pytest.approx(5 / 6)


def test_dense_pair_scores_skip_self_pairs():
    labels = np.array([0, 0, 1])
    probs = np.eye(3) * 0.9 + 0.05
    s = dense_pair_scores(probs, labels)
    assert s["n_pairs"] == 3 and s["n_similar"] == 1 and s["recall"] == 0.0
