"""Group numbers that stay put while a person corrects the groups.

A refit (an answer, a merge, a split, a relearning) gives clusters numbered 0..k-1 in an order of its own:
shown as they are, "group 03" would be another group a minute later and its name would go with the number.
:func:`carry_numbers` gives each new cluster the number of the group it continues instead: a group keeps its
number (and so its name and its colour) while most of its images stay together. Pure numpy, no state: the
caller keeps the numbers shown and the next unused number.
"""

from __future__ import annotations

import numpy as np


def carry_numbers(shown: np.ndarray, labels: np.ndarray, *, next_number: int) -> tuple[np.ndarray, int]:
    """The numbers to show for the clusters of ``labels``, continuing those of ``shown``.

    A cluster takes the number of a shown group when it holds more than half of that group's images (at most
    one cluster can). A cluster that holds most of several groups (a merge) takes the number of the one it
    shares the most images with (a tie: the lower number); the others' numbers retire. Every other cluster
    (a new part of a split) gets a new number from ``next_number`` on, largest cluster first: a retired
    number is never given again, so a number always means one group.

    Parameters
    ----------
    shown : ndarray of shape (n_images,)
        The group number each image was shown with (non-negative ints, gaps allowed).
    labels : ndarray of shape (n_images,)
        The new clusters, numbered 0..k-1.
    next_number : int
        The lowest number never shown yet (above every number of ``shown``).

    Returns
    -------
    numbers : ndarray of shape (k,)
        The number to show for each new cluster (all different).
    next_number : int
        The lowest number still unused afterwards.
    """
    shown = np.asarray(shown, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if shown.shape != labels.shape:
        raise ValueError(f"shown has {shown.shape[0]} images and labels {labels.shape[0]}: they must match")
    k = int(labels.max()) + 1 if len(labels) else 0
    if len(shown) and (shown.min() < 0 or shown.max() >= next_number):
        raise ValueError("next_number must be above every number shown, and numbers non-negative")
    numbers = np.full(k, -1, dtype=np.int64)
    if k == 0:
        return numbers, int(next_number)
    # the overlap of every (shown group, new cluster) pair that occurs
    pairs, overlap = np.unique(shown * k + labels, return_counts=True)
    group, cluster = pairs // k, pairs % k
    groups, group_sizes = np.unique(shown, return_counts=True)
    size_of = dict(zip(groups.tolist(), group_sizes.tolist(), strict=True))
    best: dict[int, tuple[int, int]] = {}  # cluster -> (overlap, group) of its best claim
    for g, c, o in zip(group.tolist(), cluster.tolist(), overlap.tolist(), strict=True):
        if 2 * o > size_of[g]:
            claim = best.get(c)
            if claim is None or o > claim[0] or (o == claim[0] and g < claim[1]):
                best[c] = (o, g)
    for c, (_, g) in best.items():
        numbers[c] = g
    fresh = np.flatnonzero(numbers < 0)
    if len(fresh):
        sizes = np.bincount(labels, minlength=k)[fresh]
        fresh = fresh[np.argsort(-sizes, kind="stable")]
        numbers[fresh] = np.arange(next_number, next_number + len(fresh))
        next_number += len(fresh)
    return numbers, int(next_number)
