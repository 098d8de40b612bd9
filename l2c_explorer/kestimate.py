"""Estimating the number of categories from an over-provisioned clustering.

A clustering network given ``k_max`` outputs only uses as many as the data supports; the rest stay empty
or collect a handful of stragglers. The estimate is the number of *dominant* clusters. Two rules:

``"uniform"`` (default)
    clusters holding at least ``fraction`` of the images one would expect per cluster if the
    *used* clusters shared the images evenly. It adapts to the data rather than to ``k_max``: with
    ``n`` images in ``u`` non-empty clusters, a cluster counts when it has at least
    ``max(min_size, fraction * n / u)`` images. Stragglers (a few images in an otherwise empty
    output) are then not counted however large ``k_max`` is.
``"ratio"``
    DTC's rule: clusters whose size is more than ``ratio`` times the largest cluster's.

Images in non-dominant clusters are then given to their most probable dominant cluster
(:func:`merge_into_dominant`), so the final labelling has exactly ``K_hat`` clusters.
"""

from __future__ import annotations

import numpy as np

K_RULES = ("uniform", "ratio")


def dominant_clusters(
    labels: np.ndarray,
    *,
    rule: str = "uniform",
    fraction: float = 0.25,
    ratio: float = 0.01,
    min_size: int = 2,
) -> np.ndarray:
    """Ids of the clusters that the data really uses.

    Parameters
    ----------
    labels : ndarray of shape (n_images,)
        Cluster id of each image.
    rule : {"uniform", "ratio"}
    fraction : float
        For ``"uniform"``: share of the mean size of the used clusters that a cluster needs.
    ratio : float
        For ``"ratio"``: share of the largest cluster's size that a cluster must exceed.
    min_size : int
        No cluster smaller than this counts, whatever the rule.

    Returns
    -------
    ndarray of cluster ids, sorted by decreasing size.
    """
    if rule not in K_RULES:
        raise ValueError(f"rule must be one of {K_RULES}, not {rule!r}")
    ids, sizes = np.unique(np.asarray(labels), return_counts=True)
    if rule == "uniform":
        threshold = max(min_size, fraction * sizes.sum() / len(ids))
        keep = sizes >= threshold
    else:
        keep = (sizes > ratio * sizes.max()) & (sizes >= min_size)
    if not keep.any():  # degenerate: everything tiny; keep the largest cluster
        keep = np.arange(len(sizes)) == np.argmax(sizes)
    order = np.argsort(-sizes[keep], kind="stable")
    return ids[keep][order]


def merge_into_dominant(probs: np.ndarray, dominant: np.ndarray) -> np.ndarray:
    """Assign every image to its most probable cluster among ``dominant``.

    Parameters
    ----------
    probs : ndarray of shape (n_images, k_max)
    dominant : ndarray of cluster ids

    Returns
    -------
    labels : ndarray of shape (n_images,), values in ``dominant``.
    """
    dominant = np.asarray(dominant)
    return dominant[np.argmax(probs[:, dominant], axis=1)]


def estimate_k(labels: np.ndarray, **rule_kwargs) -> int:
    """Number of dominant clusters (see :func:`dominant_clusters`)."""
    return int(len(dominant_clusters(labels, **rule_kwargs)))
