"""Nearest-neighbour search: the exact blockwise search and the inverted-file approximation."""

import numpy as np
import pytest
import torch
from numerics import assert_close

from l2c_explorer.neighbours import (
    exact_neighbours,
    ivf_neighbours,
    nearest_neighbours,
    rerank,
    spherical_kmeans,
)


def blobs(k: int, per: int, dim: int = 16, noise: float = 0.3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(k, dim, generator=g), dim=1)
    x = centres.repeat_interleave(per, 0) + noise / dim**0.5 * torch.randn(k * per, dim, generator=g)
    return torch.nn.functional.normalize(x, dim=1)


def brute_force(x: torch.Tensor, k: int) -> np.ndarray:
    cos = (x.double() @ x.double().T).numpy()
    np.fill_diagonal(cos, -np.inf)
    return np.argsort(-cos, axis=1)[:, :k]


def test_exact_search_matches_brute_force_in_any_block_size():
    x = blobs(4, 30)
    found = exact_neighbours(x, 5, block_size=17)
    assert np.array_equal(found.indices.numpy(), brute_force(x, 5)) and found.exact
    assert torch.all(found.cosines[:, :-1] >= found.cosines[:, 1:])


def test_ivf_search_finds_most_true_neighbours_and_no_self():
    x = blobs(40, 50, dim=32)  # 2,000 points
    k = 10
    approx = ivf_neighbours(x, k, n_probe=8, seed=0)
    truth = brute_force(x, k)
    recall = np.mean([len(np.intersect1d(a, t)) / k for a, t in zip(approx.indices.numpy(), truth)])
    assert recall >= 0.95, recall
    assert not approx.exact and approx.indices.shape == (len(x), k)
    assert not torch.any(approx.indices == torch.arange(len(x))[:, None])
    # the reported cosines are the true cosines of the reported pairs, nearest first
    true_cos = (x[:, None, :] * x[approx.indices]).sum(-1)
    assert torch.allclose(approx.cosines, true_cos, atol=1e-5)
    assert torch.all(approx.cosines[:, :-1] >= approx.cosines[:, 1:] - 1e-6)


def test_ivf_with_every_list_probed_is_exact():
    x = blobs(5, 40)
    approx = ivf_neighbours(x, 6, n_lists=8, n_probe=8)
    exact = exact_neighbours(x, 6)
    assert_close(approx.cosines, exact.cosines, n_terms=16)  # same neighbours up to ties; 16-d dot products


def test_auto_method_is_exact_for_small_sets_and_checks_its_argument():
    x = blobs(3, 10)
    assert nearest_neighbours(x, 4).exact
    assert not nearest_neighbours(x, 4, method="ivf").exact or len(x) <= 16
    with pytest.raises(ValueError, match="method"):
        nearest_neighbours(x, 4, method="annoy")


def test_first_and_rerank():
    x = blobs(3, 20)
    found = exact_neighbours(x, 8)
    assert found.first(3).k == 3 and torch.equal(found.first(3).indices, found.indices[:, :3])
    with pytest.raises(ValueError):
        found.first(9)
    # re-ranking the candidates by the same features gives the same order
    again = rerank(x, found.indices, 5)
    assert_close(again.cosines, found.cosines[:, :5], n_terms=16)
    # by other features: the best candidates in that space
    other = torch.nn.functional.normalize(torch.randn(len(x), 4, generator=torch.Generator().manual_seed(1)), dim=1)
    picked = rerank(other, found.indices, 2)
    cand_cos = (other[:, None, :] * other[found.indices]).sum(-1)
    assert_close(picked.cosines, torch.topk(cand_cos, 2, dim=1).values, n_terms=4)


def test_spherical_kmeans_gives_unit_centres_near_the_blobs():
    x = blobs(4, 50, noise=0.1)
    centres = spherical_kmeans(x, 4, iterations=20, seed=0)
    assert centres.shape == (4, 16) and torch.allclose(centres.norm(dim=1), torch.ones(4), atol=1e-5)
    assert (x @ centres.T).max(1).values.min() > 0.8
