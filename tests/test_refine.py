"""Correlation-clustering refinement: gains from cluster sums equal brute-force pair sums."""

import numpy as np
import pytest

from l2c_explorer.metrics import cluster_accuracy
from l2c_explorer.refine import merge_clusters, move_images, partition_log_odds, refine_partition

SCALE, BIAS = 10.0, -5.0


def blobs(n_per=20, k=5, d=16, noise=0.35, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.repeat(centres, n_per, axis=0) + noise * rng.normal(size=(k * n_per, d)) / np.sqrt(d)
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(k), n_per)


def brute_log_odds(emb, labels):
    total = 0.0
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            if labels[i] == labels[j]:
                total += SCALE * emb[i] @ emb[j] + BIAS
    return total


def test_partition_log_odds_matches_pair_sum():
    emb, y = blobs(n_per=6, k=3)
    labels = np.random.default_rng(1).integers(0, 4, len(y))
    assert partition_log_odds(emb, labels, SCALE, BIAS) == pytest.approx(brute_log_odds(emb, labels))


def test_moves_never_lower_the_objective_and_fix_misplaced_images():
    emb, y = blobs()
    labels = y.copy()
    rng = np.random.default_rng(2)
    wrong = rng.choice(len(y), 15, replace=False)
    labels[wrong] = (labels[wrong] + 1) % 5
    before = partition_log_odds(emb, labels, SCALE, BIAS)
    moved = move_images(emb, labels, SCALE, BIAS)
    assert partition_log_odds(emb, moved, SCALE, BIAS) >= before
    assert cluster_accuracy(y, moved) == 1.0


def test_merges_fuse_split_categories():
    emb, y = blobs()
    split = y * 2 + (np.arange(len(y)) % 2)  # every category cut in two
    merged = merge_clusters(emb, split, SCALE, BIAS)
    assert len(np.unique(merged)) == 5 and cluster_accuracy(y, merged) == 1.0


def test_refine_estimates_k_from_an_over_split_start():
    emb, y = blobs(k=7, seed=3)
    start = np.random.default_rng(4).integers(0, 40, len(y))  # 40 random clusters
    labels = refine_partition(emb, start, SCALE, BIAS)
    assert len(np.unique(labels)) == 7 and cluster_accuracy(y, labels) == 1.0


def test_fixed_k_keeps_the_number_of_clusters():
    emb, y = blobs()
    start = (y + (np.arange(len(y)) % 3 == 0)) % 5
    labels = refine_partition(emb, start, SCALE, BIAS, fixed_k=True)
    assert len(np.unique(labels)) == 5 and cluster_accuracy(y, labels) == 1.0


def test_dissimilar_points_leave_for_their_own_cluster():
    emb, y = blobs(k=2)
    labels = np.zeros(len(y), dtype=int)  # everything lumped together
    labels = refine_partition(emb, labels, SCALE, BIAS)
    assert len(np.unique(labels)) == 2
