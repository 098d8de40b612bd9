"""Consolidating a clustering against the similarity model's pairwise evidence.

The similarity model scores a pair with ``logit P(same) = scale * cos(e_i, e_j) + bias``. Treating the pair
predictions as independent evidence, the log-likelihood of a partition (up to a constant) is the sum of
these log-odds over the pairs it puts together:

    L(partition) = sum over clusters c of  sum_{i != j in c}  (scale * e_i . e_j + bias)

(a correlation-clustering objective). Gradient training of the clustering network finds a good partition
but cannot make large discrete moves: fusing two halves of a category, or moving a drawing whose every
neighbour sits in another cluster. This module climbs L directly with two moves:

* **move** one image to the cluster (or a new cluster of its own) where its log-odds sum is highest;
* **merge** two clusters when the log-odds between them sum to a positive number.

Because the log-odds are a dot product plus a constant, every quantity reduces to per-cluster sums of unit
embeddings: the gain of image ``i`` in cluster ``c`` is ``scale * e_i . sum_c + bias * |c|`` and the merge
gain of clusters ``a, b`` is ``scale * sum_a . sum_b + bias * |a| |b|``. No n x n matrix is formed, so this
scales to tens of thousands of images. The number of clusters that survives is an estimate of K that
comes from the evidence itself, not from a size threshold.
"""

from __future__ import annotations

import numpy as np


def partition_log_odds(emb: np.ndarray, labels: np.ndarray, scale: float, bias: float) -> float:
    """L(partition): the within-cluster sum of pair log-odds (each unordered pair once).

    emb (n, d) unit rows, labels (n,) -> float.
    """
    total = 0.0
    for c in np.unique(labels):
        members = emb[labels == c]
        s = members.sum(0)
        m = len(members)
        total += 0.5 * (scale * (s @ s - m) + bias * (m * m - m))  # drop the i == j terms (e_i . e_i = 1)
    return float(total)


def _compact(labels: np.ndarray) -> np.ndarray:
    return np.unique(labels, return_inverse=True)[1]


def move_images(
    emb: np.ndarray,
    labels: np.ndarray,
    scale: float,
    bias: float,
    *,
    allow_new: bool = True,
    max_sweeps: int = 20,
    tol: float = 1e-6,
) -> np.ndarray:
    """Greedy single-image moves until none raises the log-likelihood.

    Parameters
    ----------
    emb : ndarray of shape (n, d), unit rows
    labels : ndarray of shape (n,)
    allow_new : bool
        Let an image leave for a new cluster of its own when every existing cluster is against it.
        Off when the number of clusters is fixed.

    Returns
    -------
    labels : ndarray of shape (n,), clusters renumbered 0..k-1 (emptied clusters removed unless
    ``allow_new`` is False, in which case the numbering is kept).
    """
    labels = np.asarray(labels).copy()
    k = int(labels.max()) + 1
    capacity = k + (len(labels) if allow_new else 0)
    sums = np.zeros((capacity, emb.shape[1]))
    counts = np.zeros(capacity)
    np.add.at(sums, labels, emb)
    np.add.at(counts, labels, 1)
    n_used = k
    for _ in range(max_sweeps):
        # all gains at once, then re-check candidates one by one with fresh sums
        gains = scale * emb @ sums[:n_used].T + bias * counts[None, :n_used]
        own = gains[np.arange(len(labels)), labels] - (scale + bias)
        candidates = np.flatnonzero(gains.max(1) > own + tol) if not allow_new else np.flatnonzero(
            np.maximum(gains.max(1), 0.0) > own + tol
        )
        moved = 0
        for i in candidates:
            a = labels[i]
            g = scale * (sums[:n_used] @ emb[i]) + bias * counts[:n_used]
            g[a] -= scale + bias  # i's own pair with itself does not count
            best = int(np.argmax(g))
            best_gain = g[best]
            if allow_new and best_gain < 0.0 and g[a] < 0.0 - tol and counts[a] > 1:
                best, best_gain = n_used, 0.0  # open a new cluster
                n_used += 1
            if best != a and best_gain > g[a] + tol:
                sums[a] -= emb[i]
                counts[a] -= 1
                sums[best] += emb[i]
                counts[best] += 1
                labels[i] = best
                moved += 1
        if moved == 0:
            break
    return _compact(labels) if allow_new else labels


def merge_clusters(emb: np.ndarray, labels: np.ndarray, scale: float, bias: float, *, tol: float = 1e-6) -> np.ndarray:
    """Merge the pair of clusters with the largest positive log-odds between them, until none is positive.

    Returns labels renumbered 0..k-1.
    """
    labels = _compact(np.asarray(labels))
    k = int(labels.max()) + 1
    sums = np.zeros((k, emb.shape[1]))
    counts = np.zeros(k)
    np.add.at(sums, labels, emb)
    np.add.at(counts, labels, 1)
    alive = np.ones(k, dtype=bool)
    parent = np.arange(k)
    while alive.sum() > 1:
        idx = np.flatnonzero(alive)
        gain = scale * sums[idx] @ sums[idx].T + bias * np.outer(counts[idx], counts[idx])
        np.fill_diagonal(gain, -np.inf)
        a, b = np.unravel_index(np.argmax(gain), gain.shape)
        if gain[a, b] <= tol:
            break
        a, b = idx[a], idx[b]
        sums[a] += sums[b]
        counts[a] += counts[b]
        alive[b] = False
        parent[b] = a
    # follow merge chains to the surviving cluster
    for c in range(k):
        r = c
        while parent[r] != r:
            r = parent[r]
        parent[c] = r
    return _compact(parent[labels])


def refine_partition(
    emb: np.ndarray,
    labels: np.ndarray,
    scale: float,
    bias: float,
    *,
    fixed_k: bool = False,
    max_rounds: int = 10,
) -> np.ndarray:
    """Alternate image moves and cluster merges until the partition stops changing.

    With ``fixed_k`` only moves between the existing clusters are made (the number of categories is
    known), so the cluster count is preserved.
    """
    labels = np.asarray(labels)
    if fixed_k:
        return move_images(emb, labels, scale, bias, allow_new=False)
    for _ in range(max_rounds):
        new = merge_clusters(emb, move_images(emb, labels, scale, bias), scale, bias)
        if len(new) == len(labels) and np.array_equal(_compact(new), _compact(labels)):
            break
        labels = new
    return _compact(labels)
