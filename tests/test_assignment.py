"""Assigning new images to a run's clusters: the vote, the unlike-any rule."""

import numpy as np
import pytest
import torch

from l2c_explorer.assignment import assign_embeddings, unlike_threshold, vote
from l2c_explorer.neighbours import Neighbours


def test_vote_and_unlike_threshold_rules():
    # one heavy vote outweighs two light ones; the winner's share of all votes is the confidence
    labels, confidence = vote(np.array([[0, 0, 1], [2, 1, 1]]), np.array([[1.0, 0.5, 2.5], [3.0, 1.0, 1.0]]), 3)
    assert labels.tolist() == [1, 2] and np.allclose(confidence, [0.625, 0.6])
    idx = torch.tensor([[1, 2], [0, 2], [0, 1], [0, 1]])
    cos = torch.tensor([[0.9, 0.5], [0.9, 0.4], [0.5, 0.4], [0.2, 0.1]])
    # nearest cluster-mates: 0.9, 0.9, 0.5 (image 2's first is in its cluster), none for image 3 -> -1
    threshold = unlike_threshold(Neighbours(idx, cos), np.array([0, 0, 0, 1]), 0.0)
    assert threshold == -1.0
    assert unlike_threshold(Neighbours(idx[:3], cos[:3]), np.array([0, 0, 0]), 0.0) == pytest.approx(0.5)


def test_new_embeddings_go_to_the_cluster_of_their_nearest_and_far_ones_are_unlike_any():
    rng = np.random.default_rng(0)
    centres = np.eye(4, dtype=np.float32)[:2]
    run = np.concatenate([centres[0] + 0.05 * rng.normal(size=(10, 4)), centres[1] + 0.05 * rng.normal(size=(10, 4))])
    run = (run / np.linalg.norm(run, axis=1, keepdims=True)).astype(np.float32)
    labels = np.repeat([0, 1], 10)
    new = torch.tensor([[1.0, 0.05, 0.0, 0.0], [0.0, 1.0, 0.05, 0.0], [0.0, 0.0, 0.0, 1.0]])
    found = assign_embeddings(new, run, labels, 2, k=5, unlike_below=0.5, pair_scale=10.0, pair_bias=-5.0)
    assert found.labels[:2].tolist() == [0, 1]
    assert found.unlike_any.tolist() == [False, False, True]
    assert np.all((found.confidence > 0) & (found.confidence <= 1))
    assert found.nearest[0] == pytest.approx(float(np.max(run[:10] @ (new[0] / new[0].norm()).numpy())), abs=1e-5)
