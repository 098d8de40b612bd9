"""The similarity graph, its diffusion features and the eigengap estimate of K."""

import numpy as np
import pytest
import torch

from l2c_explorer import graph
from l2c_explorer.graph import (
    diffusion_features,
    eigengap_k,
    knn_graph,
    nearest_neighbours,
    normalised_adjacency,
    self_tuning_graph,
    top_eigenpairs,
)


def blobs(k: int, per: int, dim: int = 16, noise: float = 0.15, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(k, dim, generator=g), dim=1)
    x = centres.repeat_interleave(per, 0) + noise / dim**0.5 * torch.randn(k * per, dim, generator=g)  # noise = norm
    return torch.nn.functional.normalize(x, dim=1), np.repeat(np.arange(k), per)


def test_knn_graph_matches_brute_force_and_is_symmetric():
    x, _ = blobs(3, 20)
    a = knn_graph(x, k=4, block_size=7)  # several blocks
    cos = (x @ x.T).numpy()
    np.fill_diagonal(cos, -np.inf)
    brute = np.zeros_like(cos)
    brute[np.repeat(np.arange(len(x)), 4), np.argsort(-cos, axis=1)[:, :4].ravel()] = 1
    assert np.array_equal(a.toarray(), np.maximum(brute, brute.T))
    assert a.diagonal().sum() == 0
    mutual = knn_graph(x, k=4, mutual=True).toarray()
    assert np.array_equal(mutual, np.minimum(brute, brute.T))


def test_knn_graph_caps_k_for_tiny_sets():
    x, _ = blobs(1, 3)
    assert knn_graph(x, k=10).toarray().sum() == 6  # everyone linked to the two others


def test_nearest_neighbours_come_nearest_first_in_any_block_size():
    x, _ = blobs(3, 20)
    idx, cos = nearest_neighbours(x, 5, block_size=7)
    full_idx, full_cos = nearest_neighbours(x, 5)
    assert torch.equal(idx, full_idx) and torch.allclose(cos, full_cos)
    assert torch.all(cos[:, :-1] >= cos[:, 1:]) and not torch.any(idx == torch.arange(len(x))[:, None])


def test_self_tuning_graph_matches_its_formula():
    x, _ = blobs(3, 20)
    w = self_tuning_graph(x, k=6, scale_neighbour=3, block_size=7).toarray()
    cos = (x @ x.T).double().numpy()
    np.fill_diagonal(cos, -np.inf)
    order = np.argsort(-cos, axis=1)[:, :6]
    sq_dist = 2.0 * (1.0 - np.take_along_axis(cos, order, 1))  # |x_i - x_j|^2 of unit vectors
    scale = np.sqrt(sq_dist[:, 2])  # distance to the 3rd neighbour
    brute = np.zeros_like(cos)
    for i in range(len(x)):
        brute[i, order[i]] = np.exp(-sq_dist[i] / (scale[i] * scale[order[i]]))
    assert np.allclose(w, np.maximum(brute, brute.T), atol=1e-6)
    assert np.array_equal(w > 0, knn_graph(x, k=6).toarray() > 0)  # same links as the 0/1 graph
    assert w.max() <= 1.0 and w.diagonal().sum() == 0


def test_self_tuning_weights_adapt_to_each_groups_spread():
    # two groups, one ten times tighter than the other: a global scale would make one group's
    # links all ~1 and the other's all ~0; local scales give both the same kind of weights
    tight, _ = blobs(1, 30, noise=0.02, seed=1)
    loose, _ = blobs(1, 30, noise=0.2, seed=2)
    w = self_tuning_graph(torch.cat([tight, loose]), k=10).toarray()
    inside_tight, inside_loose = w[:30, :30], w[30:, 30:]
    mean_tight, mean_loose = inside_tight[inside_tight > 0].mean(), inside_loose[inside_loose > 0].mean()
    assert 0.2 < mean_tight < 0.8 and 0.2 < mean_loose < 0.8
    assert abs(mean_tight - mean_loose) < 0.15
    assert w[:30, 30:].sum() == 0  # no links across the groups


def test_disconnected_groups_have_eigenvalue_one_each():
    x, _ = blobs(4, 25, noise=0.01)
    a = knn_graph(x, k=5)
    values, _ = top_eigenpairs(normalised_adjacency(a), 10)
    assert np.allclose(values[:4], 1.0, atol=1e-6) and values[4] < 0.99
    assert np.all(np.diff(values) <= 1e-9)  # descending


@pytest.mark.parametrize("noise", [0.3, 1.0])  # five separate components / one connected graph
def test_sparse_solver_agrees_with_dense(monkeypatch, noise):
    x, _ = blobs(5, 60, noise=noise)
    a = knn_graph(x, k=8)
    dense_values, _ = top_eigenpairs(normalised_adjacency(a), 12)
    monkeypatch.setattr(graph, "DENSE_EIGEN_LIMIT", 10)
    sparse_values, _ = top_eigenpairs(normalised_adjacency(a), 12)
    assert np.allclose(dense_values, sparse_values, atol=1e-5)


def test_diffusion_features_make_groups_compact():
    x, y = blobs(6, 30, noise=0.8)
    feats, values = diffusion_features(knn_graph(x, k=8), n_components=10, diffusion_time=3.0)
    assert feats.shape == (180, 10) and np.allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-5)
    cos = feats @ feats.T
    same = y[:, None] == y[None, :]
    assert cos[same].mean() > 0.9 and cos[~same].mean() < 0.1
    raw = (x @ x.T).numpy()
    assert cos[same].mean() - cos[~same].mean() > raw[same].mean() - raw[~same].mean()


@pytest.mark.parametrize("k", [2, 7, 15])
def test_eigengap_finds_the_number_of_groups(k):
    x, _ = blobs(k, 20, dim=32, noise=0.8, seed=k)
    _, values = diffusion_features(knn_graph(x, k=8), n_components=40)
    assert eigengap_k(values, max_k=30) == k


def test_eigengap_respects_bounds():
    values = np.array([1.0, 0.99, 0.98, 0.5, 0.49, 0.1])
    assert eigengap_k(values, max_k=5, significance=1.0) == 3
    assert eigengap_k(values, max_k=2) == 2  # the drop after 3 is out of range
    assert eigengap_k(np.array([1.0, 0.2]), max_k=100) == 1


def test_eigengap_significance_prefers_the_last_large_drop():
    # a big drop after 3 well-separated groups, a slightly smaller one at the true 6
    values = np.array([1.0, 0.99, 0.98, 0.60, 0.59, 0.58, 0.25, 0.24, 0.23])
    assert eigengap_k(values, max_k=8, significance=1.0) == 3
    assert eigengap_k(values, max_k=8, significance=0.8) == 6
    assert eigengap_k(values, max_k=8, significance=0.9) == 3  # 0.33 < 0.9 * 0.38
