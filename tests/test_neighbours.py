"""Nearest-neighbour search: the exact blockwise search, the inverted-file approximation (ours and faiss's) and
the choice between them."""

import numpy as np
import pytest
import torch
from numerics import assert_close

from l2c_explorer import neighbours
from l2c_explorer.neighbours import (
    IVF_PROBES,
    exact_neighbours,
    faiss_ivf_neighbours,
    ivf_neighbours,
    nearest_neighbours,
    rerank,
    search_backend,
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


def test_ivf_rows_short_of_k_candidates_are_searched_exactly(monkeypatch):
    x = blobs(4, 10, dim=16, seed=1)  # 40 points in 20 lists, one probed: most lists hold fewer than 6 others
    short, exact_rows = [], neighbours.exact_rows
    monkeypatch.setattr(neighbours, "exact_rows", lambda x_, rows, k_: short.append(rows) or exact_rows(x_, rows, k_))
    found = ivf_neighbours(x, 5, n_lists=20, n_probe=1)
    assert short and len(short[0]) > 0
    assert_close(found.cosines[short[0]], exact_neighbours(x, 5).cosines[short[0]], n_terms=16)
    assert found.indices.shape == (40, 5) and bool(((found.indices >= 0) & (found.indices < 40)).all())
    assert not torch.any(found.indices == torch.arange(40)[:, None])


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


def recall(found: torch.Tensor, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(np.intersect1d(a, t)) / k for a, t in zip(found.numpy(), truth)]))


@pytest.mark.parametrize("n_probe", [4, IVF_PROBES])
def test_faiss_ivf_finds_the_true_neighbours_as_often_as_ours(n_probe):
    pytest.importorskip("faiss")
    # 3,000 points in 30 overlapping clusters: about 55 lists cut through them, so probing matters
    x = blobs(30, 100, dim=64, noise=1.6, seed=0)
    k = 10
    truth = brute_force(x, k)
    ours = ivf_neighbours(x, k, n_probe=n_probe, seed=0)
    theirs = faiss_ivf_neighbours(x, k, n_probe=n_probe, seed=0)
    if n_probe == IVF_PROBES:
        assert recall(theirs.indices, truth) >= 0.95
    assert abs(recall(theirs.indices, truth) - recall(ours.indices, truth)) <= 0.02
    # the same kind of result as ours: shapes, dtypes, device, approximate
    assert theirs.indices.shape == ours.indices.shape == (len(x), k)
    assert theirs.indices.dtype == ours.indices.dtype == torch.int64
    assert theirs.cosines.dtype == ours.cosines.dtype == torch.float32
    assert theirs.indices.device == ours.indices.device and not theirs.exact
    assert not torch.any(theirs.indices == torch.arange(len(x))[:, None])  # never itself
    # the reported cosines are the true cosines of the reported pairs, nearest first
    true_cos = (x[:, None, :] * x[theirs.indices]).sum(-1)
    assert_close(theirs.cosines, true_cos, n_terms=64)
    assert torch.all(theirs.cosines[:, :-1] >= theirs.cosines[:, 1:])


def test_faiss_ivf_rows_short_of_k_candidates_are_searched_exactly(monkeypatch):
    pytest.importorskip("faiss")
    x = blobs(4, 10, dim=16, seed=1)  # 40 points in 20 lists, one probed: most lists hold fewer than 6 others
    k = 5
    short, exact_rows = [], neighbours.exact_rows
    monkeypatch.setattr(neighbours, "exact_rows", lambda x_, rows, k_: short.append(rows) or exact_rows(x_, rows, k_))
    found = faiss_ivf_neighbours(x, k, n_lists=20, n_probe=1)
    assert short and len(short[0]) > 0
    assert found.indices.shape == (len(x), k) and found.indices.dtype == torch.int64
    assert bool(((found.indices >= 0) & (found.indices < len(x))).all())
    assert not torch.any(found.indices == torch.arange(len(x))[:, None])
    rows = short[0]
    assert_close(found.cosines[rows], exact_neighbours(x, k).cosines[rows], n_terms=16)


def test_faiss_ivf_leaves_each_image_out_even_among_duplicates():
    pytest.importorskip("faiss")
    x = torch.cat([blobs(2, 20, seed=2), blobs(1, 1, seed=3).repeat(20, 1)])  # 20 copies of one point
    found = faiss_ivf_neighbours(x, 5, n_lists=4, n_probe=4)
    assert found.indices.shape == (60, 5)
    assert not torch.any(found.indices == torch.arange(60)[:, None])
    assert bool((found.indices[40:] >= 40).all())  # a copy's nearest are the other copies


def test_search_backend_takes_faiss_on_the_cpu_above_the_limit_else_ours(monkeypatch):
    monkeypatch.setattr(neighbours, "EXACT_LIMIT", 100)
    monkeypatch.setattr(neighbours, "faiss_available", lambda: True)
    assert search_backend(100, 5) == "exact" and search_backend(101, 5) == "faiss-ivf"
    assert search_backend(50, 5, method="ivf") == "faiss-ivf" and search_backend(101, 5, method="exact") == "exact"
    assert search_backend(101, 30) == "exact"  # too few images for the lists asked for
    assert search_backend(101, 5, device=torch.device("cuda")) == "ivf"  # a CUDA tensor: ours
    monkeypatch.setattr(neighbours, "faiss_available", lambda: False)
    assert search_backend(101, 5) == "ivf" and search_backend(100, 5) == "exact"
    with pytest.raises(ValueError, match="method"):
        search_backend(101, 5, method="annoy")


def test_nearest_neighbours_runs_faiss_on_the_cpu_and_ours_without_it(monkeypatch):
    pytest.importorskip("faiss")
    monkeypatch.setattr(neighbours, "EXACT_LIMIT", 100)
    calls = []
    for name in ("faiss_ivf_neighbours", "ivf_neighbours"):
        search = getattr(neighbours, name)
        monkeypatch.setattr(neighbours, name,
                            lambda *a, _name=name, _search=search, **kw: calls.append(_name) or _search(*a, **kw))
    x = blobs(10, 30)  # 300 points
    found = nearest_neighbours(x, 8)
    assert calls == ["faiss_ivf_neighbours"] and not found.exact and found.indices.shape == (300, 8)
    assert not torch.any(found.indices == torch.arange(300)[:, None])
    monkeypatch.setattr(neighbours, "faiss_available", lambda: False)
    found = nearest_neighbours(x, 8)
    assert calls == ["faiss_ivf_neighbours", "ivf_neighbours"] and not found.exact


def test_faiss_available_is_a_cached_answer():
    assert neighbours.faiss_available() is neighbours.faiss_available()
    assert neighbours.faiss_available.cache_info().hits >= 1
