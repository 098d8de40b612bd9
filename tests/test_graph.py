"""The similarity graph, its diffusion features and the eigengap estimate of K."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from numerics import assert_close, assert_neighbours, clear_neighbours

from l2c_explorer import graph
from l2c_explorer.graph import (
    COARSE_GROUP,
    COARSE_K,
    LANCZOS_TOL,
    NEIGHBOUR_SHARE,
    SPLIT_MIN,
    coarse_to_fine_k,
    diffusion_features,
    eigengap_k,
    knn_graph,
    median_gap_k,
    neighbourhood,
    normalised_adjacency,
    self_tuning_graph,
    spectral_parts,
    top_eigenpairs,
    top_eigenvalues,
)
from l2c_explorer.neighbours import exact_neighbours

pytestmark = pytest.mark.numerical  # .ci/run runs these again on one thread


def blobs(k: int, per: int, dim: int = 16, noise: float = 0.15, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(k, dim, generator=g), dim=1)
    x = centres.repeat_interleave(per, 0) + noise / dim**0.5 * torch.randn(k * per, dim, generator=g)  # noise = norm
    return torch.nn.functional.normalize(x, dim=1), np.repeat(np.arange(k), per)


def test_knn_graph_matches_brute_force_and_is_symmetric():
    x, _ = blobs(3, 20)
    a = knn_graph(x, k=4, block_size=7).toarray()  # several blocks
    surely_in, surely_out = clear_neighbours(x, 4)  # near-ties may go either way
    assert np.array_equal(a, a.T) and a.diagonal().sum() == 0 and set(np.unique(a)) <= {0.0, 1.0}
    assert np.all(a[surely_in | surely_in.T] == 1) and np.all(a[surely_out & surely_out.T] == 0)
    assert np.all(a.sum(1) >= 4)
    mutual = knn_graph(x, k=4, mutual=True).toarray()
    assert np.all(mutual[surely_in & surely_in.T] == 1) and np.all(mutual[surely_out | surely_out.T] == 0)


def test_knn_graph_caps_k_for_tiny_sets():
    x, _ = blobs(1, 3)
    assert knn_graph(x, k=10).toarray().sum() == 6  # everyone linked to the two others


def test_exact_neighbours_come_nearest_first_in_any_block_size():
    x, _ = blobs(3, 20)
    for block_size in (7, 2048):
        found = exact_neighbours(x, 5, block_size=block_size)
        idx, cos = found.indices, found.cosines
        assert_neighbours(x, idx, cos, 5)  # cosines of 16 terms; near-ties may go either way


def test_self_tuning_graph_matches_its_formula():
    x, _ = blobs(3, 20)
    w = self_tuning_graph(x, k=6, scale_neighbour=3, block_size=7).toarray()
    # The formula, written out in float64 from the same neighbours and float32 cosines: the weights divide
    # by products of small distances, so float32 cosines from another kernel would differ far more than
    # the formula's own rounding (the neighbour search is tested on its own above).
    found = exact_neighbours(x, 6, block_size=7)  # as the graph finds them
    order, cos = found.indices, found.cosines
    order, cos = order.numpy(), cos.double().numpy()
    half_sq_dist = 1.0 - cos  # |x_i - x_j|^2 / 2 of unit vectors (the 2 cancels against s_i s_j)
    scale = np.sqrt(half_sq_dist[:, 2]) + 1e-12  # distance to the 3rd neighbour (never 0)
    brute = np.zeros((len(x), len(x)))
    for i in range(len(x)):
        brute[i, order[i]] = np.exp(-half_sq_dist[i] / (scale[i] * scale[order[i]]))
    assert_close(w, np.maximum(brute, brute.T), n_terms=8, dtype=np.float64)  # a handful of float64 steps
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
    assert_close(values[:4], np.ones(4), n_terms=len(x), dtype=np.float64)  # dense eigh of 100 x 100
    assert values[4] < 0.99 and np.all(np.diff(values) <= 0)  # descending


@pytest.mark.parametrize("noise", [0.3, 1.0])  # five separate components / one connected graph
def test_sparse_solver_agrees_with_dense(monkeypatch, noise):
    x, _ = blobs(5, 60, noise=noise)
    a = knn_graph(x, k=8)
    dense_values, _ = top_eigenpairs(normalised_adjacency(a), 12)
    monkeypatch.setattr(graph, "LANCZOS_FROM", 10)
    monkeypatch.setattr(graph, "LANCZOS_SHARE", 0.5)
    sparse_values, _ = top_eigenpairs(normalised_adjacency(a), 12)
    # Lanczos gives each eigenvalue to a relative accuracy of LANCZOS_TOL (its residual bounds the error)
    assert np.all(np.abs(dense_values - sparse_values) <= 2 * LANCZOS_TOL * np.abs(dense_values) + 1e-12)


def test_diffusion_features_make_groups_compact():
    x, y = blobs(6, 30, noise=0.8)
    feats, _values = diffusion_features(knn_graph(x, k=8), n_components=10, diffusion_time=3.0)
    assert feats.shape == (180, 10)
    assert_close(np.linalg.norm(feats, axis=1), np.ones(180), n_terms=10)  # float32 rows of 10
    cos = feats @ feats.T
    same = y[:, None] == y[None, :]
    assert cos[same].mean() > 0.9 and cos[~same].mean() < 0.1
    raw = (x @ x.T).numpy()
    assert cos[same].mean() - cos[~same].mean() > raw[same].mean() - raw[~same].mean()


@pytest.mark.parametrize("k", [2, 7, 15])
def test_eigengap_finds_the_number_of_groups(k):
    x, _ = blobs(k, 20, dim=32, noise=0.8, seed=k)
    _, values = diffusion_features(knn_graph(x, k=8), n_components=40, diffusion_time=3.0)
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


def test_graph_neighbourhoods_shrink_only_for_tiny_folders():
    assert neighbourhood(10, 11, share=NEIGHBOUR_SHARE) == 2
    assert neighbourhood(10, 40, share=NEIGHBOUR_SHARE) == 10 and neighbourhood(10, 5000, share=0.25) == 10
    assert neighbourhood(10, 2, share=NEIGHBOUR_SHARE) == 1


def _nested_blocks(cliques_per_part, *, size=20, across=0.5, between=1e-3):
    """Cliques of ``size`` images (weight 1) grouped in parts (weight ``across`` between cliques of a part),
    the parts barely linked (``between``): (adjacency, clique of each image, part of each image)."""
    clique = np.repeat(np.arange(sum(cliques_per_part)), size)
    part = np.repeat(np.repeat(np.arange(len(cliques_per_part)), cliques_per_part), size)
    weights = np.where(part[:, None] == part[None, :], across, between)
    weights[clique[:, None] == clique[None, :]] = 1.0
    np.fill_diagonal(weights, 0.0)
    return sp.csr_matrix(weights), clique, part


def test_coarse_to_fine_k_reads_again_inside_the_parts_a_few_big_drops_set_apart():
    adjacency, _clique, part = _nested_blocks([4, 3, 1])
    values = top_eigenvalues(normalised_adjacency(adjacency), 100)
    # 3 eigenvalues near 1 (the parts), then 5 at about 0.2: the whole spectrum's rule stops at the parts
    assert eigengap_k(values, max_k=99, significance=0.5) == 3
    assert coarse_to_fine_k(adjacency, values, max_k=99, significance=0.5, split_min=50) == (8, 3)
    # the parts the split found are the three parts, largest first (a one-clique part counts as one group)
    found = spectral_parts(normalised_adjacency(adjacency), 3)
    assert [sorted(set(part[p])) for p in found] == [[0], [1], [2]] and [len(p) for p in found] == [80, 60, 20]
    # capped by max_k
    assert coarse_to_fine_k(adjacency, values, max_k=6, significance=0.5, split_min=50)[0] == 6


def test_a_reading_of_many_large_groups_is_read_again_inside_them():
    # 18 parts of 2 cliques of 20: the whole spectrum's rule stops at the 18 parts, more than COARSE_K
    adjacency, _, _ = _nested_blocks([2] * 18, across=0.7)
    values = top_eigenvalues(normalised_adjacency(adjacency), 100)
    assert eigengap_k(values, max_k=99, significance=0.5) == 18 > COARSE_K
    rule = {"max_k": 99, "significance": 0.5, "split_min": 40}
    # 720 images in 18 groups: 40 per group; read again when that is at least coarse_group
    assert coarse_to_fine_k(adjacency, values, coarse_group=40, **rule) == (36, 18)
    assert coarse_to_fine_k(adjacency, values, coarse_group=41, **rule) == (18, 1)
    assert COARSE_GROUP >= 1000


def test_coarse_to_fine_k_leaves_small_folders_and_fine_spectra_alone():
    adjacency, _, _ = _nested_blocks([4, 3, 1])
    values = top_eigenvalues(normalised_adjacency(adjacency), 100)
    assert coarse_to_fine_k(adjacency, values, max_k=99, significance=0.5) == (3, 1)  # 160 < SPLIT_MIN images
    assert SPLIT_MIN > 1000  # every Omniglot alphabet and photo subset of the benchmarks keeps its K
    loose, _, _ = _nested_blocks([4, 3, 1], across=0.2)  # the cliques' drop is the clearest: no need to split
    values = top_eigenvalues(normalised_adjacency(loose), 100)
    assert coarse_to_fine_k(loose, values, max_k=99, significance=0.5, split_min=50) == (8, 1)


def test_an_estimated_spectrum_is_read_as_the_median_of_independent_probe_sets():
    # 40 groups of 4-13 images with uneven links inside and a few random links across: the estimated spectra
    # of different probe seeds put the K rule's drop a few groups apart
    rng = np.random.default_rng(0)
    group = np.repeat(np.arange(40), rng.integers(4, 14, size=40))
    n = len(group)
    weights = rng.uniform(0.3, 1.0, (n, n)) * (group[:, None] == group[None, :])
    weights += (rng.random((n, n)) < 0.04) * rng.uniform(0.1, 0.6, (n, n))
    weights = np.triu(weights, 1)
    adjacency = sp.csr_matrix(weights + weights.T)
    matrix = normalised_adjacency(adjacency)
    rule = {"max_k": 80, "significance": 0.5}
    ks = [eigengap_k(top_eigenvalues(matrix, 81, seed=s, method="stochastic"), **rule) for s in (0, 1, 2)]
    assert len(set(ks)) > 1  # the probe sets disagree: the median matters
    first = top_eigenvalues(matrix, 81, seed=0, method="stochastic")
    assert median_gap_k(matrix, first, seed=0, method="stochastic", **rule) == sorted(ks)[1]
    assert median_gap_k(matrix, first, seed=0, readings=1, method="stochastic", **rule) == ks[0]
    # 393 images, fewer than SPLIT_MIN: one reading of the whole graph
    assert coarse_to_fine_k(adjacency, first, readings=3, method="stochastic", **rule) == (sorted(ks)[1], 1)
    # an exact spectrum is read once
    exact = top_eigenvalues(matrix, 81, method="exact")
    assert median_gap_k(matrix, exact, method="exact", **rule) == eigengap_k(exact, **rule)


def test_the_parts_of_a_split_are_read_as_medians_too(monkeypatch):
    adjacency, _, _ = _nested_blocks([4, 3, 1])
    values = top_eigenvalues(normalised_adjacency(adjacency), 100)
    calls = []
    median = graph.median_gap_k

    def spy(matrix, eigenvalues, **kwargs):
        calls.append((matrix.shape[0], kwargs["readings"]))
        return median(matrix, eigenvalues, **kwargs)

    monkeypatch.setattr(graph, "median_gap_k", spy)
    k, parts = coarse_to_fine_k(adjacency, values, max_k=99, significance=0.5, split_min=50, readings=3)
    assert (k, parts) == (8, 3)
    # the whole graph, each part, and the parts' own parts: each asked for the median of 3 probe sets (which
    # median_gap_k takes where the spectrum is estimated; these small ones are exact)
    assert {size for size, _ in calls} == {160, 80, 60, 20} and {r for _, r in calls} == {3}
