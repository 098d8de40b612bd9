"""Groups' mean directions and typical members: the one implementation."""

import numpy as np
import pytest
import torch

from l2c_explorer.groups import (
    cluster_prototypes,
    group_directions,
    is_representative,
    representative,
    same_logit,
    same_probability,
    typicality,
)


@pytest.fixture
def grouped():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(12, 6))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb.astype(np.float32), np.repeat([0, 1, 2], 4)


def test_group_directions_are_unit_means_and_an_empty_group_is_zero(grouped):
    emb, labels = grouped
    directions = group_directions(emb, labels, 4)
    assert directions.shape == (4, 6) and directions.dtype == np.float64
    for g in range(3):
        mean = emb[labels == g].astype(np.float64).sum(0)
        np.testing.assert_allclose(directions[g], mean / np.linalg.norm(mean), atol=1e-12)
    assert not directions[3].any()
    prototypes = cluster_prototypes(emb, labels, 3)
    assert prototypes.dtype == np.float32
    np.testing.assert_allclose(prototypes, directions[:3], atol=1e-6)


def test_the_representative_is_the_most_typical_member(grouped):
    emb, labels = grouped
    members = np.flatnonzero(labels == 1)
    best = representative(emb, members)
    scores = typicality(emb, labels, members)
    assert best == members[int(np.argmax(scores))]
    assert is_representative(emb, labels, best) and not is_representative(emb, labels, members[members != best][0])
    # float32 sums of 4 unit vectors against a float64 reference
    np.testing.assert_allclose(scores, emb[members] @ group_directions(emb, labels)[1], atol=1e-5)


def test_same_probability_is_the_sigmoid_of_the_pair_logit():
    cos = np.array([-1.0, 0.0, 0.5, 1.0])
    p = same_probability(cos, scale=10.0, bias=-5.0)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-(10 * cos - 5))))
    assert p[2] == pytest.approx(0.5)
    logits = same_logit(torch.tensor(cos, dtype=torch.float32), scale=torch.tensor(10.0), bias=torch.tensor(-5.0))
    np.testing.assert_allclose(torch.sigmoid(logits).numpy(), p, atol=1e-6)
