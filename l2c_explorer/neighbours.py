"""Each image's nearest other images by cosine: exact below :data:`EXACT_LIMIT` images, approximate above.

The exact search takes blocks of rows against all images (matrix products; O(n^2 d) time, O(block n)
memory). Above the limit an inverted-file search (IVF) costs O(n^1.5 d): spherical k-means splits the images
into about sqrt(n) lists, and each image is compared only with the members of the ``n_probe`` lists whose
centres are nearest to it. On the CPU that search is faiss's ``IndexIVFFlat`` (:func:`faiss_ivf_neighbours`,
faiss-cpu, a dependency except on macOS); on a GPU, or where faiss is not installed, it is this module's own,
plain torch matrix products (:func:`ivf_neighbours`) that need no compilation and run on any torch device.

``benchmarks/knn_search.py`` measures the exact search, both IVF searches, faiss's HNSW and pynndescent
(installed with umap-learn) on the similarity model's embeddings of 5,000 to 93,828 images: recall of the exact
20 nearest, wall and CPU seconds, peak memory (``benchmarks/results/knn_search.md``). With the same lists and
probes faiss finds as many of the true neighbours as ours (16 probes at 93,828 images: 0.985 against 0.984) for
no more CPU time (on one thread 12.3 against 12.9 s, on two busy ones about half) and 3-6x less memory (108-141
MB against 400-739 MB at 93,828), so it is used on the CPU; ours stays for CUDA tensors and as the fallback.
The limit and probe count below were set from the same benchmark.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

# Exact search up to this many images. Below it an IVF search saves a few CPU seconds at most, and its
# recall is below 1 (benchmarks/results/knn_search.md, embeddings of the 100k set without the evaluation
# alphabets, 2 threads: at 20,000 images exact 3.6 CPU s, faiss's IVF with 16 probes 1.3 s (ours 6.7 s), recall
# 0.993; at 93,828, exact 72.6 CPU s, faiss 14.1 s (ours 27.4 s), recall 0.985).
EXACT_LIMIT = 20_000
# Lists probed per image, by either IVF search: recall of the 20 nearest 0.985 (faiss) / 0.984 (ours) at 93,828
# images and 0.993 / 0.992 at 20,000 (same benchmark; 8 probes: 0.940-0.965, 32: 0.996-0.999 at about twice the
# time).
IVF_PROBES = 16
from .options import NEIGHBOUR_SEARCHES as NEIGHBOUR_METHODS  # noqa: E402  (the choices have one home)


@dataclass
class Neighbours:
    """The ``k`` nearest other images of each image, nearest first.

    Attributes
    ----------
    indices : Tensor of shape (n, k), int64
    cosines : Tensor of shape (n, k), float32
    exact : bool
        Whether they come from the exact search.
    """

    indices: torch.Tensor
    cosines: torch.Tensor
    exact: bool = True

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def first(self, k: int) -> Neighbours:
        """The ``k`` nearest only (k at most :attr:`k`)."""
        if k > self.k:
            raise ValueError(f"only {self.k} neighbours were searched, not {k}")
        return Neighbours(self.indices[:, :k], self.cosines[:, :k], self.exact)


def exact_neighbours(embedding: torch.Tensor, k: int, *, block_size: int = 2048) -> Neighbours:
    """The exact ``k`` nearest neighbours of unit embeddings (n, d), found in blocks of rows."""
    emb = embedding.float()
    indices, cosines = [], []
    for start in range(0, len(emb), block_size):
        block = emb[start : start + block_size] @ emb.T  # (b, n) cosines
        rows = torch.arange(start, start + len(block))
        block[torch.arange(len(block)), rows] = -float("inf")  # no self-loops
        top = torch.topk(block, k, dim=1)
        indices.append(top.indices)
        cosines.append(top.values)
    return Neighbours(torch.cat(indices), torch.cat(cosines), exact=True)


def spherical_kmeans(
    x: torch.Tensor, n_centres: int, *, iterations: int = 10, sample: int | None = None, seed: int = 0
) -> torch.Tensor:
    """Unit centres (c, d) of unit vectors (n, d) by cosine k-means, fitted on a random sample of ``sample`` rows."""
    g = torch.Generator().manual_seed(seed)
    if sample is not None and len(x) > sample:
        x = x[torch.randperm(len(x), generator=g)[:sample]]
    n_centres = int(min(n_centres, len(x)))
    centres = x[torch.randperm(len(x), generator=g)[:n_centres]].clone()
    for _ in range(iterations):
        nearest = (x @ centres.T).argmax(1)
        sums = torch.zeros_like(centres).index_add_(0, nearest, x)
        empty = torch.bincount(nearest, minlength=n_centres) == 0
        sums[empty] = centres[empty]  # an empty list keeps its centre
        centres = torch.nn.functional.normalize(sums, dim=1)
    return centres


def ivf_neighbours(
    embedding: torch.Tensor,
    k: int,
    *,
    n_lists: int | None = None,
    n_probe: int = IVF_PROBES,
    seed: int = 0,
    chunk: int = 8192,
) -> Neighbours:
    """Approximate ``k`` nearest neighbours of unit embeddings (n, d) by an inverted-file search.

    The images are split into ``n_lists`` (default sqrt(n)) lists by spherical k-means; each image is compared
    with the members of its ``n_probe`` nearest lists, list by list (one matrix product per list), and keeps
    the best ``k``. Memory: O(n * n_probe * k).
    """
    x = embedding.float()
    n = len(x)
    n_lists = int(n_lists or max(1, round(np.sqrt(n))))
    n_probe = int(min(n_probe, n_lists))
    centres = spherical_kmeans(x, n_lists, sample=max(40 * n_lists, 20_000), seed=seed)
    n_lists = len(centres)
    n_probe = int(min(n_probe, n_lists))
    probes = torch.cat([torch.topk(x[s : s + chunk] @ centres.T, n_probe, dim=1).indices for s in range(0, n, chunk)])
    home = probes[:, 0]  # each image is a member of its nearest list
    members_order = torch.argsort(home, stable=True)
    member_counts = torch.bincount(home, minlength=n_lists)
    member_starts = torch.cumsum(member_counts, 0) - member_counts
    probe_slots = probes.reshape(-1)  # slot s = image s // n_probe probing list probe_slots[s]
    slot_order = torch.argsort(probe_slots, stable=True)
    slot_counts = torch.bincount(probe_slots, minlength=n_lists)
    slot_starts = torch.cumsum(slot_counts, 0) - slot_counts
    best_index = torch.full((n * n_probe, k), -1, dtype=torch.int32, device=x.device)
    best_cosine = torch.full((n * n_probe, k), -float("inf"), device=x.device)
    for c in range(n_lists):
        if member_counts[c] == 0 or slot_counts[c] == 0:
            continue
        members = members_order[member_starts[c] : member_starts[c] + member_counts[c]]
        slots = slot_order[slot_starts[c] : slot_starts[c] + slot_counts[c]]
        queries = slots // n_probe
        scores = x[queries] @ x[members].T
        scores[queries[:, None] == members[None, :]] = -float("inf")
        top = torch.topk(scores, min(k, len(members)), dim=1)
        best_index[slots, : top.indices.shape[1]] = members[top.indices].to(torch.int32)
        best_cosine[slots, : top.values.shape[1]] = top.values
    best_cosine = best_cosine.view(n, n_probe * k)
    top = torch.topk(best_cosine, k, dim=1)
    indices = torch.gather(best_index.view(n, n_probe * k), 1, top.indices).long()
    cosines = top.values
    exact_short_rows(x, indices, cosines, k)  # tiny lists
    return Neighbours(indices, cosines, exact=False)


def exact_short_rows(x: torch.Tensor, indices: torch.Tensor, cosines: torch.Tensor, k: int) -> None:
    """Search exactly, in place, the rows of an approximate search that found fewer than ``k`` candidates
    (index -1)."""
    missing = indices < 0
    if bool(missing.any()):
        rows = torch.nonzero(missing.any(1)).flatten()
        fixed = exact_rows(x, rows, k)
        indices[rows], cosines[rows] = fixed.indices, fixed.cosines


def exact_rows(x: torch.Tensor, rows: torch.Tensor, k: int) -> Neighbours:
    """Exact ``k`` nearest neighbours of the images ``rows`` among all of ``x``."""
    scores = x[rows] @ x.T
    scores[torch.arange(len(rows)), rows] = -float("inf")
    top = torch.topk(scores, k, dim=1)
    return Neighbours(top.indices, top.values)


@cache
def faiss_available() -> bool:
    """Whether faiss can be used here: installed, and not on macOS (faiss-cpu is no dependency there, and with
    torch in the same process their two OpenMP runtimes can crash it: faiss-wheels issue #73, pytorch #149201)."""
    if sys.platform == "darwin":
        return False
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def faiss_ivf_neighbours(
    embedding: torch.Tensor,
    k: int,
    *,
    n_lists: int | None = None,
    n_probe: int = IVF_PROBES,
    seed: int = 0,
) -> Neighbours:
    """:func:`ivf_neighbours` by faiss's ``IndexIVFFlat`` (inner product), on the CPU.

    The same lists and probes: ``n_lists`` (default sqrt(n)) trained by spherical k-means, 10 iterations on a
    sample of max(40 lists, 20,000) images; each image is searched in its ``n_probe`` nearest lists, on as many
    threads as torch uses. Each image is left out of its own list; a row with fewer than ``k`` candidates in its
    lists is searched exactly (as in :func:`ivf_neighbours`). Results on the embedding's device.
    """
    import faiss

    x = embedding.detach().float().cpu()
    n, d = x.shape
    n_lists = int(n_lists or max(1, round(np.sqrt(n))))
    n_lists = int(min(n_lists, n))  # as spherical_kmeans: no more centres than images
    n_probe = int(min(n_probe, n_lists))
    sample = max(40 * n_lists, 20_000)  # the training sample of ivf_neighbours
    data = np.ascontiguousarray(x.numpy(), dtype=np.float32)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(torch.get_num_threads())
    try:
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, n_lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.spherical, index.cp.niter, index.cp.seed = True, 10, int(seed) % 2**31  # faiss's seed: a C int
        index.cp.max_points_per_centroid = int(np.ceil(sample / n_lists))
        index.cp.min_points_per_centroid = 1  # no warning for small sets: ours trains on what there is too
        index.train(data)
        index.add(data)
        index.nprobe = n_probe
        found_cos, found = index.search(data, k + 1)
    finally:
        faiss.omp_set_num_threads(threads)
    del index
    # leave each image out of its own list (the last one instead, where the image itself is not among them)
    drop = found == np.arange(n)[:, None]
    drop[~drop.any(1), -1] = True
    indices = torch.from_numpy(found[~drop].reshape(n, k))
    cosines = torch.from_numpy(found_cos[~drop].reshape(n, k))
    exact_short_rows(x, indices, cosines, k)  # faiss's -1: fewer than k candidates in the probed lists
    return Neighbours(indices.to(embedding.device), cosines.to(embedding.device), exact=False)


def search_backend(n: int, k: int, *, method: str = "auto", device: str | torch.device = "cpu") -> str:
    """Which search :func:`nearest_neighbours` makes for ``k`` neighbours of ``n`` images on ``device``:
    ``"exact"``, ``"faiss-ivf"`` (:func:`faiss_ivf_neighbours`: on the CPU where faiss is available) or ``"ivf"``
    (:func:`ivf_neighbours`). Their lists can differ slightly, so caches of them tell them apart by this."""
    if method not in NEIGHBOUR_METHODS:
        raise ValueError(f"method must be one of {', '.join(NEIGHBOUR_METHODS)}, not {method!r}")
    k = int(min(k, n - 1))
    if method == "exact" or (method == "auto" and n <= EXACT_LIMIT) or n <= 4 * k:
        return "exact"
    if torch.device(device).type == "cpu" and faiss_available():
        return "faiss-ivf"
    return "ivf"


def nearest_neighbours(embedding: torch.Tensor, k: int, *, method: str = "auto", seed: int = 0) -> Neighbours:
    """The ``k`` nearest other images of unit embeddings (n, d): exact up to :data:`EXACT_LIMIT` images (or
    ``method="exact"``), by an IVF search above (or ``method="ivf"``): faiss's on the CPU when it is available,
    else :func:`ivf_neighbours` (see :func:`search_backend`)."""
    n = len(embedding)
    backend = search_backend(n, k, method=method, device=embedding.device)
    k = int(min(k, n - 1))
    if k < 1:
        raise ValueError("Nearest neighbours need at least 2 images.")
    if backend == "exact":
        return exact_neighbours(embedding, k)
    if backend == "faiss-ivf":
        return faiss_ivf_neighbours(embedding, k, seed=seed)
    return ivf_neighbours(embedding, k, seed=seed)


def rerank(features: torch.Tensor, candidates: torch.Tensor, k: int, *, chunk: int = 16384) -> Neighbours:
    """The ``k`` nearest of each image among its ``candidates`` (n, c) by the cosine of other unit ``features``
    (n, m): a neighbour search in a second feature space at O(n c m) instead of O(n^2 m)."""
    indices, cosines = [], []
    for s in range(0, len(features), chunk):
        cand = candidates[s : s + chunk]
        scores = torch.einsum("bm,bcm->bc", features[s : s + chunk], features[cand])
        top = torch.topk(scores, min(k, cand.shape[1]), dim=1)
        indices.append(torch.gather(cand, 1, top.indices))
        cosines.append(top.values)
    return Neighbours(torch.cat(indices), torch.cat(cosines), exact=False)
