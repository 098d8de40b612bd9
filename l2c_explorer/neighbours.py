"""Each image's nearest other images by cosine: exact below :data:`EXACT_LIMIT` images, approximate above.

The exact search takes blocks of rows against all images (matrix products; O(n^2 d) time, O(block n)
memory). Above the limit an inverted-file search (IVF, as in FAISS) costs O(n^1.5 d): spherical k-means
splits the images into about sqrt(n) lists, and each image is compared only with the members of the
``n_probe`` lists whose centres are nearest to it. Both are plain torch matrix products, so they need no
compilation and follow the thread count set for torch.

``benchmarks/knn_search.py`` measures the exact search, this IVF search and pynndescent (installed with
umap-learn) on the similarity model's embeddings of 5,000 to 93,828 images: recall of the exact 20 nearest,
wall and CPU seconds, and pynndescent's numba compilation apart (paid in every new process). The limit and
probe count below were set from development runs of it (16 probes: 98-99% recall at 25,000-100,000 images,
at 2-5x less CPU time than exact; pynndescent about as accurate, but its compilation costs more than it
saves below about 50,000 images); its results file is not committed yet, so they await that measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# Exact search up to this many images. Below it the IVF search saves under a second and its recall is below 1
# (benchmarks/knn_search.py, embeddings of the 100k set without the evaluation alphabets: at 20,000 images
# exact 1.4 s, 16 probes 0.8 s with recall 0.992; at 93,828, exact 42.8 s, 16 probes 7.3 s).
EXACT_LIMIT = 20_000
# Lists probed per image: recall of the 20 nearest 0.984 at 93,828 images and 0.992 at 20,000 (same benchmark;
# 8 probes: 0.944 / 0.963, 32: 0.996 / 0.999 at twice the time).
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
    missing = indices < 0  # fewer than k candidates (tiny lists): fall back to exact rows
    if bool(missing.any()):
        rows = torch.flatnonzero(missing.any(1))
        fixed = exact_rows(x, rows, k)
        indices[rows], cosines[rows] = fixed.indices, fixed.cosines
    return Neighbours(indices, cosines, exact=False)


def exact_rows(x: torch.Tensor, rows: torch.Tensor, k: int) -> Neighbours:
    """Exact ``k`` nearest neighbours of the images ``rows`` among all of ``x``."""
    scores = x[rows] @ x.T
    scores[torch.arange(len(rows)), rows] = -float("inf")
    top = torch.topk(scores, k, dim=1)
    return Neighbours(top.indices, top.values)


def nearest_neighbours(embedding: torch.Tensor, k: int, *, method: str = "auto", seed: int = 0) -> Neighbours:
    """The ``k`` nearest other images of unit embeddings (n, d): exact up to :data:`EXACT_LIMIT` images (or
    ``method="exact"``), by the IVF search above (or ``method="ivf"``)."""
    if method not in NEIGHBOUR_METHODS:
        raise ValueError(f"method must be one of {', '.join(NEIGHBOUR_METHODS)}, not {method!r}")
    n = len(embedding)
    k = int(min(k, n - 1))
    if k < 1:
        raise ValueError("Nearest neighbours need at least 2 images.")
    if method == "exact" or (method == "auto" and n <= EXACT_LIMIT) or n <= 4 * k:
        return exact_neighbours(embedding, k)
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
