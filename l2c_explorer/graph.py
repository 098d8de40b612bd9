"""The similarity graph of a target folder and its spectral (diffusion) features.

The similarity model gives P(same category) for every pair. Taken alone, one pair probability is noisy;
the graph of each image's most similar neighbours is much more reliable, because a category is a
*group* of images that keep choosing each other. Three pure steps turn that into features where the
categories are compact, and into an estimate of their number:

1. :func:`knn_graph` keeps each image's ``k`` most probable "same" partners and symmetrises;
2. :func:`diffusion_features` takes the top eigenvectors of the normalised adjacency, weighted by
   their eigenvalues to the power ``t`` (a ``t``-step random walk, Coifman & Lafon's diffusion map);
3. :func:`eigengap_k` counts the categories: a graph made of K loosely connected groups has K
   eigenvalues close to 1 and then a drop. The first count reads the spectrum of a
   :func:`self_tuning_graph` (weighted, locally scaled links to more neighbours), which does not
   mistake one category drawn in two styles for two categories as readily as 0/1 links do.

Everything is O(n k) memory for the graph; the eigenvectors use a dense solver for small folders and
Lanczos (``scipy.sparse.linalg.eigsh``) for large ones, so 20,000 images never build an n x n matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from .options import MODEL_SETTINGS

# above this many images the eigenvectors come from Lanczos on the sparse graph
DENSE_EIGEN_LIMIT = 3000
# relative accuracy asked of Lanczos for each eigenvalue (ARPACK's ``tol``)
LANCZOS_TOL = 1e-6
# diffusion features kept at least (more when more clusters are allowed)
DIFFUSION_COMPONENTS = 100
# The package's K rule and the graph it reads (how each was chosen: l2c_explorer.options.MODEL_SETTINGS; a
# similarity model may carry its own, which the clusterer passes explicitly).
SIGNIFICANT_GAP = MODEL_SETTINGS["k_significance"]
SHARPENED_SIGNIFICANT_GAP = MODEL_SETTINGS["k_sharpened_significance"]
K_GRAPH_NEIGHBOURS = MODEL_SETTINGS["k_graph_neighbours"]
K_GRAPH_SCALE_NEIGHBOUR = MODEL_SETTINGS["k_graph_scale_neighbour"]
# At most this share of a folder is linked to each image (see :func:`neighbourhood`): a quarter for the
# similarity graph, half for the self-tuning graph whose weights already fade with distance. Below 40
# images only; chosen on folders of 3 to 6 Omniglot characters with 3 to 20 drawings each.
NEIGHBOUR_SHARE = 0.25
K_GRAPH_NEIGHBOUR_SHARE = 0.5


def neighbourhood(k: int, n_images: int, *, share: float) -> int:
    """How many neighbours to link each of ``n_images`` images to: ``k``, but at most ``share`` of the folder.

    In a tiny folder (a dozen images of three categories) each category has only a few members: linking
    every image to 10 others joins all of them into one group, and the spectrum then shows one drop only.
    Capping the neighbourhood at a share of the folder keeps neighbours mostly within a category; folders
    of more than ``k / share`` images are not affected.
    """
    return int(max(1, min(k, n_images - 1, int(share * n_images))))


def nearest_neighbours(
    embedding: torch.Tensor, k: int, *, block_size: int = 2048
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's ``k`` nearest other images by cosine: unit embeddings (n, d) -> indices, cosines (n, k).

    Rows are found in blocks, so memory stays O(block_size * n); neighbours come nearest first.
    """
    emb = embedding.float()
    indices, cosines = [], []
    for start in range(0, len(emb), block_size):
        block = emb[start : start + block_size] @ emb.T  # (b, n) cosines
        rows = torch.arange(start, start + len(block))
        block[torch.arange(len(block)), rows] = -float("inf")  # no self-loops
        top = torch.topk(block, k, dim=1)
        indices.append(top.indices)
        cosines.append(top.values)
    return torch.cat(indices), torch.cat(cosines)


def knn_graph(
    embedding: torch.Tensor, *, k: int, mutual: bool = False, block_size: int = 2048
) -> sp.csr_matrix:
    """Symmetric k-nearest-neighbour graph of unit embeddings (n, d) -> sparse (n, n) 0/1 adjacency.

    The similarity model's P(same) = sigmoid(scale * cos + bias) increases with the cosine, so each
    image's k most probable "same" partners are its k nearest neighbours by cosine. ``i ~ j`` when
    either is among the other's k (or, with ``mutual``, when both are).
    """
    n = len(embedding)
    k = _checked_k(k, n)
    cols, _ = nearest_neighbours(embedding, k, block_size=block_size)
    rows = np.repeat(np.arange(n), k)
    adjacency = sp.csr_matrix((np.ones(n * k), (rows, cols.numpy().ravel())), shape=(n, n))
    return (adjacency.minimum(adjacency.T) if mutual else adjacency.maximum(adjacency.T)).tocsr()


def self_tuning_graph(
    embedding: torch.Tensor,
    *,
    k: int = K_GRAPH_NEIGHBOURS,
    scale_neighbour: int = K_GRAPH_SCALE_NEIGHBOUR,
    block_size: int = 2048,
) -> sp.csr_matrix:
    """Weighted k-nearest-neighbour graph with locally scaled affinities (Zelnik-Manor & Perona, 2004).

    w_ij = exp(-|x_i - x_j|^2 / (s_i s_j)), where s_i is the distance from image i to its
    ``scale_neighbour``-th nearest neighbour, for the ``k`` nearest neighbours of each image (symmetrised
    by the larger weight). Unlike 0/1 links, the weights keep *how* similar two neighbours are, and the
    local scale adapts them to dense and sparse parts of the folder: two halves of one category written
    in two styles stay strongly tied, so the spectrum does not count them as two groups.

    unit embeddings (n, d) -> sparse (n, n) weights in (0, 1].
    """
    n = len(embedding)
    k = _checked_k(k, n)
    scale_neighbour = int(min(max(scale_neighbour, 1), k))
    cols, cosines = nearest_neighbours(embedding, k, block_size=block_size)
    # for unit vectors |x_i - x_j|^2 = 2 (1 - cos); the factor 2 cancels against s_i s_j
    distance = (1.0 - cosines.double()).clamp_min(0.0).numpy()  # (n, k), nearest first
    scale = np.sqrt(distance[:, scale_neighbour - 1]) + 1e-12
    cols = cols.numpy()
    rows = np.repeat(np.arange(n), k)
    weights = np.exp(-distance.ravel() / (scale[rows] * scale[cols.ravel()]))
    adjacency = sp.csr_matrix((weights, (rows, cols.ravel())), shape=(n, n))
    return adjacency.maximum(adjacency.T).tocsr()


def self_tuning_spectrum(
    embedding: torch.Tensor,
    n_values: int,
    *,
    neighbours: int = K_GRAPH_NEIGHBOURS,
    scale_neighbour: int = K_GRAPH_SCALE_NEIGHBOUR,
    seed: int = 0,
) -> np.ndarray:
    """The ``n_values`` largest eigenvalues (descending) of the normalised self-tuning graph of unit
    embeddings (n, d), with the neighbourhood the first K estimate uses (default: the package's ``K_GRAPH_*``),
    at most half of a small folder (:func:`neighbourhood`)."""
    k = neighbourhood(neighbours, len(embedding), share=K_GRAPH_NEIGHBOUR_SHARE)
    graph = self_tuning_graph(embedding, k=k, scale_neighbour=min(scale_neighbour, max(1, k // 2)))
    values, _ = top_eigenpairs(normalised_adjacency(graph), n_values, seed=seed)
    return values


def _checked_k(k: int, n: int) -> int:
    k = int(min(k, n - 1))
    if k < 1:
        raise ValueError("A similarity graph needs at least 2 images.")
    return k


def normalised_adjacency(adjacency: sp.spmatrix) -> sp.csr_matrix:
    """D^-1/2 A D^-1/2 (eigenvalues in [-1, 1]; the top one is 1 for every connected component)."""
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    scale = sp.diags(1.0 / np.sqrt(np.maximum(degree, 1e-12)))
    return (scale @ adjacency @ scale).tocsr()


def top_eigenpairs(matrix: sp.spmatrix, n_components: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_components`` largest eigenvalues (descending) and eigenvectors (n, m) of a symmetric matrix.

    The graph is split into its connected components first: the matrix is block-diagonal over them, and
    each component contributes an eigenvalue of exactly 1, a multiplicity that Lanczos cannot be trusted
    to resolve. Small components are solved densely, large ones with Lanczos; the best ``m`` win.
    """
    from scipy.sparse.csgraph import connected_components

    matrix = sp.csr_matrix(matrix)
    n = matrix.shape[0]
    m = int(min(n_components, n))
    _, component = connected_components(matrix, directed=False)
    pieces = []  # (members, eigenvalues, eigenvectors) of each component
    for c in np.unique(component):
        members = np.flatnonzero(component == c)
        pieces.append((members, *_component_eigenpairs(matrix[members][:, members], m, seed)))
    # keep the m largest eigenpairs over all components; only they are spread out to all n images
    owner = np.concatenate([np.full(len(vals), i) for i, (_, vals, _) in enumerate(pieces)])
    column = np.concatenate([np.arange(len(vals)) for _, vals, _ in pieces])
    values = np.concatenate([vals for _, vals, _ in pieces])
    order = np.argsort(-values, kind="stable")[:m]
    vectors = np.zeros((n, len(order)))
    for j, k in enumerate(order):
        members, _, vecs = pieces[owner[k]]
        vectors[members, j] = vecs[:, column[k]]
    return values[order], vectors


def _component_eigenpairs(matrix: sp.csr_matrix, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n = matrix.shape[0]
    m = min(m, n)
    if n <= DENSE_EIGEN_LIMIT or m >= n - 1:
        values, vectors = np.linalg.eigh(matrix.toarray())
        return values[::-1][:m].copy(), vectors[:, ::-1][:, :m].copy()
    from scipy.sparse.linalg import eigsh

    v0 = np.random.default_rng(seed).standard_normal(n)
    values, vectors = eigsh(matrix, k=m, which="LA", v0=v0, tol=LANCZOS_TOL)
    order = np.argsort(-values)
    return values[order], vectors[:, order]


def diffusion_features(
    adjacency: sp.spmatrix, *, diffusion_time: float, n_components: int = DIFFUSION_COMPONENTS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Unit diffusion-map features (n, m) of a graph and the eigenvalues (m,) they come from.

    ``diffusion_time`` is the clusterer's option (:data:`l2c_explorer.options.DISCOVER`), given explicitly.

    Feature j of image i is u_j(i) * max(lambda_j, 0) ** t: components of slowly mixing groups (lambda
    near 1) survive t steps of the random walk, noise (small lambda) fades. Rows are L2-normalised, so
    the cosine between two images says how much their walks end up in the same places.
    """
    values, vectors = top_eigenpairs(normalised_adjacency(adjacency), n_components, seed=seed)
    features = vectors * np.clip(values, 0.0, None) ** diffusion_time
    features /= np.linalg.norm(features, axis=1, keepdims=True) + 1e-12
    return features.astype(np.float32), values


def eigengap_k(eigenvalues: np.ndarray, *, max_k: int, min_k: int = 2, significance: float = SIGNIFICANT_GAP) -> int:
    """Number of groups from the drops between consecutive eigenvalues.

    ``eigenvalues`` are sorted in decreasing order. Every drop at least ``significance`` times the largest
    one marks a plausible number of groups; the answer is the largest of them, in [min_k, max_k]. With
    ``significance=1`` this is the classic "largest eigengap" rule, which tends to stop at the first few
    well-separated groups when some categories look alike (a big gap after them, a slightly smaller one
    at the true K). The first gap is skipped when ``min_k`` is 2: one single category is not a useful
    answer for a folder someone wants to sort.
    """
    values = np.asarray(eigenvalues, dtype=np.float64)
    max_k = int(min(max_k, len(values) - 1))
    if max_k < min_k:
        return max(1, max_k)
    gaps = values[min_k - 1 : max_k] - values[min_k : max_k + 1]  # gaps[i] = lambda_(min_k+i) - next
    significant = np.flatnonzero(gaps >= significance * gaps.max())
    return int(significant.max()) + min_k
