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
Lanczos (``scipy.sparse.linalg.eigsh``) for larger ones. When hundreds of eigenpairs of a large graph would
be needed (:func:`stochastic_spectrum`), the spectrum is estimated and the features are filtered random
signals instead (:mod:`l2c_explorer.spectrum`): linear in the number of images.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from .neighbours import Neighbours, exact_neighbours
from .options import MODEL_SETTINGS, SPECTRUM_METHODS
from .spectrum import chebyshev_moments, estimated_eigenvalues, lowpass_features

# Up to this many images the spectrum and eigenvectors are always computed exactly (see stochastic_spectrum)
DENSE_EIGEN_LIMIT = 3000
# A connected component of more than LANCZOS_FROM images has its m largest eigenpairs computed by Lanczos on
# the sparse graph while m is at most LANCZOS_SHARE of its images, else by a dense solver (every eigenpair).
# Measured on the graphs of photos (benchmarks/eigen_solvers.py): for 101 eigenpairs the two take the same time
# at 1,000 images, Lanczos 2.2-2.7x less at 1,500, 4-4.6x at 2,000 and 10-18x at 3,000 (26 eigenpairs: 8-10x
# less from 1,000); eigenvalues agree to 1e-14, the diffusion features' cosines to 1e-6.
LANCZOS_FROM = 1000
LANCZOS_SHARE = 0.1
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
# Above DENSE_EIGEN_LIMIT images, m eigenpairs are computed exactly while n * m^2 is at most this (Lanczos
# then takes seconds: 6,180 images and 101 eigenpairs); beyond, the spectrum is estimated and the diffusion
# features are filtered random signals (l2c_explorer.spectrum), at a cost linear in n.
EXACT_EIGEN_WORK = 1e8


def knn_adjacency(neighbours: Neighbours, k: int, *, mutual: bool = False) -> sp.csr_matrix:
    """Symmetric 0/1 graph of each image's ``k`` nearest neighbours (the first ``k`` of ``neighbours``).

    ``i ~ j`` when either is among the other's k (or, with ``mutual``, when both are).
    """
    n = len(neighbours.indices)
    k = _checked_k(k, n)
    cols = neighbours.first(k).indices.cpu().numpy().ravel()
    rows = np.repeat(np.arange(n), k)
    adjacency = sp.csr_matrix((np.ones(n * k), (rows, cols)), shape=(n, n))
    return (adjacency.minimum(adjacency.T) if mutual else adjacency.maximum(adjacency.T)).tocsr()


def self_tuning_adjacency(neighbours: Neighbours, k: int = 20, scale_neighbour: int = 7) -> sp.csr_matrix:
    """The locally scaled graph of :func:`self_tuning_graph` from precomputed neighbour lists."""
    n = len(neighbours.indices)
    k = _checked_k(k, n)
    scale_neighbour = int(min(max(scale_neighbour, 1), k))
    first = neighbours.first(k)
    # for unit vectors |x_i - x_j|^2 = 2 (1 - cos); the factor 2 cancels against s_i s_j
    distance = (1.0 - first.cosines.double()).clamp_min(0.0).cpu().numpy()  # (n, k), nearest first
    scale = np.sqrt(distance[:, scale_neighbour - 1]) + 1e-12
    cols = first.indices.cpu().numpy()
    rows = np.repeat(np.arange(n), k)
    weights = np.exp(-distance.ravel() / (scale[rows] * scale[cols.ravel()]))
    adjacency = sp.csr_matrix((weights, (rows, cols.ravel())), shape=(n, n))
    return adjacency.maximum(adjacency.T).tocsr()


def knn_graph(
    embedding: torch.Tensor, *, k: int, mutual: bool = False, block_size: int = 2048
) -> sp.csr_matrix:
    """Symmetric k-nearest-neighbour graph of unit embeddings (n, d) -> sparse (n, n) 0/1 adjacency.

    The similarity model's P(same) = sigmoid(scale * cos + bias) increases with the cosine, so each
    image's k most probable "same" partners are its k nearest neighbours by cosine. ``i ~ j`` when
    either is among the other's k (or, with ``mutual``, when both are).
    """
    k = _checked_k(k, len(embedding))
    return knn_adjacency(exact_neighbours(embedding, k, block_size=block_size), k, mutual=mutual)


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
    k = _checked_k(k, len(embedding))
    return self_tuning_adjacency(exact_neighbours(embedding, k, block_size=block_size), k, scale_neighbour)


def k_estimate_graph(
    embedding: torch.Tensor,
    *,
    neighbours: int = K_GRAPH_NEIGHBOURS,
    scale_neighbour: int = K_GRAPH_SCALE_NEIGHBOUR,
    found: Neighbours | None = None,
) -> sp.csr_matrix:
    """The self-tuning graph of unit embeddings (n, d) with the neighbourhood the first K estimate uses
    (default: the package's ``K_GRAPH_*``), at most half of a small folder (:func:`neighbourhood`); ``found``
    (neighbour lists of at least ``neighbours`` per image) saves the search."""
    k = neighbourhood(neighbours, len(embedding), share=K_GRAPH_NEIGHBOUR_SHARE)
    if found is None:
        found = exact_neighbours(embedding, k)
    return self_tuning_adjacency(found, k, min(scale_neighbour, max(1, k // 2)))


def self_tuning_spectrum(
    embedding: torch.Tensor,
    n_values: int,
    *,
    neighbours: int = K_GRAPH_NEIGHBOURS,
    scale_neighbour: int = K_GRAPH_SCALE_NEIGHBOUR,
    seed: int = 0,
    found: Neighbours | None = None,
    method: str = "auto",
) -> np.ndarray:
    """The ``n_values`` largest eigenvalues (descending) of the normalised :func:`k_estimate_graph`;
    ``method`` as :func:`top_eigenvalues`."""
    graph = k_estimate_graph(embedding, neighbours=neighbours, scale_neighbour=scale_neighbour, found=found)
    return top_eigenvalues(normalised_adjacency(graph), n_values, seed=seed, method=method)


def stochastic_spectrum(n: int, n_values: int, method: str = "auto") -> bool:
    """Whether the spectrum of an ``n``-image graph is estimated (:mod:`l2c_explorer.spectrum`) rather than
    computed exactly when its ``n_values`` largest eigenpairs are wanted.

    ``"auto"``: exactly while the folder is small enough for dense solvers (``DENSE_EIGEN_LIMIT``) or the
    Lanczos work, about n * n_values^2, is at most ``EXACT_EIGEN_WORK``.
    """
    if method not in SPECTRUM_METHODS:
        raise ValueError(f"method must be one of {', '.join(SPECTRUM_METHODS)}, not {method!r}")
    if method != "auto":
        return method == "stochastic"
    return n > DENSE_EIGEN_LIMIT and n * float(n_values) ** 2 > EXACT_EIGEN_WORK


def top_eigenvalues(matrix: sp.spmatrix, n_values: int, *, seed: int = 0, method: str = "auto") -> np.ndarray:
    """The ``n_values`` largest eigenvalues (descending) of a normalised adjacency: exact eigenpairs, or the
    kernel-polynomial estimate (see :func:`stochastic_spectrum`)."""
    n = matrix.shape[0]
    m = int(min(n_values, n))
    if stochastic_spectrum(n, m, method):
        return estimated_eigenvalues(chebyshev_moments(matrix, seed=seed), m)
    values, _ = top_eigenpairs(matrix, m, seed=seed)
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
    if n <= LANCZOS_FROM or m > LANCZOS_SHARE * n:
        values, vectors = np.linalg.eigh(matrix.toarray())
        return values[::-1][:m].copy(), vectors[:, ::-1][:, :m].copy()
    from scipy.sparse.linalg import eigsh

    v0 = np.random.default_rng(seed).standard_normal(n)
    values, vectors = eigsh(matrix, k=m, which="LA", v0=v0, tol=LANCZOS_TOL)
    order = np.argsort(-values)
    return values[order], vectors[:, order]


def diffusion_features(
    adjacency: sp.spmatrix,
    *,
    diffusion_time: float,
    n_components: int = DIFFUSION_COMPONENTS,
    seed: int = 0,
    n_values: int | None = None,
    method: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Unit diffusion-map features of a graph and the largest eigenvalues of its normalised adjacency.

    ``diffusion_time`` is the clusterer's option (:data:`l2c_explorer.options.DISCOVER`), given explicitly.

    Feature j of image i is u_j(i) * max(lambda_j, 0) ** t for the top ``n_components`` eigenpairs:
    components of slowly mixing groups (lambda near 1) survive t steps of the random walk, noise (small
    lambda) fades. Rows are L2-normalised, so the cosine between two images says how much their walks end up
    in the same places. Returns features (n, m) and eigenvalues (max(m, ``n_values``),), descending.

    For large graphs (:func:`stochastic_spectrum`) the eigenvalues are estimated and the features are
    low-pass filtered random signals of ``FEATURE_DIM`` dimensions whose cosines approximate those of the
    exact features (:mod:`l2c_explorer.spectrum`).
    """
    matrix = normalised_adjacency(adjacency)
    n = matrix.shape[0]
    m = int(min(n_components, n))
    wanted = int(min(max(m, n_values or 0), n))
    if stochastic_spectrum(n, wanted, method):
        values = estimated_eigenvalues(chebyshev_moments(matrix, seed=seed), min(max(wanted, m + 1), n))
        cutoff = 0.5 * (values[m - 1] + values[m]) if m < len(values) else -1.0
        features = lowpass_features(matrix, cutoff, diffusion_time=diffusion_time, seed=seed)
        return features, values[:wanted]
    values, vectors = top_eigenpairs(matrix, wanted, seed=seed)
    features = vectors[:, :m] * np.clip(values[:m], 0.0, None) ** diffusion_time
    features /= np.linalg.norm(features, axis=1, keepdims=True) + 1e-12
    return features.astype(np.float32), values


# Coarse to fine: the spectrum of a large folder can open with a few big drops (a few groups of images set apart
# from the rest, e.g. 77 and 642 of 19,000 drawings), which the K rule then reads as the whole answer (4 groups
# for 1,000 characters). A K of at most COARSE_K on a folder of at least SPLIT_MIN images is read again inside the
# parts those drops separate. Both are bounds on when to look again, not tuned on accuracy: every folder of the
# Omniglot and photo benchmarks below SPLIT_MIN images keeps its K; benchmarks/scale.py and assign.py measure it.
# A reading that leaves COARSE_GROUP images or more per group on average is coarse too, however many groups it
# names: on 50,000 and 100,000 drawings, digits and photos (benchmarks/scale.py) the largest drop of the whole
# graph falls at 7 to 36 groups, depending on the probes, where the parts hold about 1,000; COARSE_K alone split
# some of these readings and kept others (at 100,000 images K 990 in one run, 17 in the next). Also a bound, not
# tuned: categories of more than 1,000 images on average are rare in the folders this is for, and a part is only
# read again, never forced apart.
COARSE_K = 16
COARSE_GROUP = 1000
SPLIT_MIN = 2000
SPLIT_DEPTH = 3


def spectral_parts(matrix: sp.spmatrix, n_parts: int, *, seed: int = 0) -> list[np.ndarray]:
    """Split a graph (its normalised adjacency) into ``n_parts`` by k-means on its top eigenvectors' rows;
    returns the parts' image indices, largest first, empty parts dropped."""
    from sklearn.cluster import KMeans

    _, vectors = top_eigenpairs(matrix, n_parts, seed=seed)
    vectors = vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12)
    labels = KMeans(n_parts, n_init=4, random_state=seed).fit_predict(vectors)
    parts = [np.flatnonzero(labels == p) for p in range(n_parts)]
    return sorted((p for p in parts if len(p)), key=len, reverse=True)


# An estimated spectrum is read this many times, from independent sets of random probes, and the median K is
# kept: one set of probes can blur or sharpen a single gap enough to move the "half the largest drop" rule by
# 10%, and a coarse reading across the COARSE_K bound. A robustness bound, not tuned on accuracy
# (benchmarks/spectrum_settings.py shows the spread between probe sets); an exact spectrum is read once.
K_READINGS = 3


def median_gap_k(
    matrix: sp.spmatrix,
    eigenvalues: np.ndarray,
    *,
    readings: int = K_READINGS,
    seed: int = 0,
    method: str = "auto",
    **rule,
) -> int:
    """:func:`eigengap_k` of a normalised adjacency whose top ``eigenvalues`` may be estimated.

    When they are (:func:`stochastic_spectrum`), the spectrum is estimated again with ``readings - 1`` other
    probe seeds (``seed + 1``, ...) and the median K is returned. ``rule``: the keywords of :func:`eigengap_k`.
    """
    k = eigengap_k(eigenvalues, **rule)
    wanted = len(eigenvalues)
    if readings < 2 or not stochastic_spectrum(matrix.shape[0], wanted, method):
        return k
    found = [k] + [eigengap_k(top_eigenvalues(matrix, wanted, seed=seed + r, method=method), **rule)
                   for r in range(1, readings)]
    return sorted(found)[len(found) // 2]


def coarse_to_fine_k(
    adjacency: sp.spmatrix,
    eigenvalues: np.ndarray,
    *,
    max_k: int,
    significance: float,
    min_k: int = 2,
    readings: int = 1,
    seed: int = 0,
    method: str = "auto",
    split_min: int = SPLIT_MIN,
    coarse_group: int = COARSE_GROUP,
    depth: int = 0,
) -> tuple[int, int]:
    """The K rule (:func:`eigengap_k`) on a graph's spectrum, read again inside the parts of a large folder.

    ``eigenvalues`` are those of ``normalised_adjacency(adjacency)``, descending; an estimated spectrum is
    read as the median of ``readings`` probe sets (:func:`median_gap_k`), here and in every part. When the
    rule gives at most :data:`COARSE_K` groups, or groups of ``coarse_group`` images or more on average, on
    at least ``split_min`` images, the graph is split there (:func:`spectral_parts`) and each part's own
    spectrum is read the same way, a part smaller than ``split_min`` being allowed to be a single group; the
    parts' Ks add up, if that says more than the whole. Returns (K, number of parts it was read in; 1 when
    not split).
    """
    matrix = normalised_adjacency(adjacency)
    k = median_gap_k(matrix, eigenvalues, readings=readings, seed=seed, method=method, max_k=max_k, min_k=min_k,
                     significance=significance)
    n = adjacency.shape[0]
    coarse = k <= COARSE_K or n >= k * coarse_group
    if not coarse or n < split_min or depth >= SPLIT_DEPTH or k < 2:
        return k, 1
    total, read_in = 0, 0
    for part in spectral_parts(matrix, k, seed=seed):
        sub = adjacency[part][:, part]
        sub_max = int(min(max_k, len(part) - 1))
        if sub_max < 1:
            total, read_in = total + 1, read_in + 1
            continue
        values = top_eigenvalues(normalised_adjacency(sub), sub_max + 1, seed=seed, method=method)
        part_k, part_reads = coarse_to_fine_k(sub, values, max_k=sub_max, significance=significance,
                                              min_k=2 if len(part) >= split_min else 1, readings=readings,
                                              seed=seed, method=method, split_min=split_min,
                                              coarse_group=coarse_group, depth=depth + 1)
        total, read_in = total + part_k, read_in + part_reads
    if total <= k:
        return k, 1
    return int(min(total, max_k)), read_in


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
