"""Groups of images and their mean directions: the one place they are computed.

A group's mean direction is the normalised sum of its members' unit embeddings; its most typical member is the
one closest to it. The clustering (prototypes, keeping K), the answers (:mod:`l2c_explorer.constraints`) and
the questions (:mod:`l2c_explorer.questions`) all read groups through these functions. Pure numpy.
"""

from __future__ import annotations

import numpy as np


def group_directions(embedding: np.ndarray, labels: np.ndarray, n_groups: int | None = None) -> np.ndarray:
    """Each group's mean direction: unit embeddings (n, d), labels (n,) in 0..n_groups-1 -> (n_groups, d) float64.

    An empty group's direction is 0.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n_groups = int(labels.max()) + 1 if n_groups is None else int(n_groups)
    sums = np.zeros((n_groups, embedding.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, embedding)
    return sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)


def cluster_prototypes(emb: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Each cluster's mean embedding direction: unit embeddings (n, d), labels (n,) -> (n_clusters, d) float32."""
    return group_directions(emb, labels, n_clusters).astype(np.float32)


def representative(embedding: np.ndarray, members: np.ndarray) -> int:
    """The most typical of ``members``: the one closest to their mean direction (unit embeddings (n, d))."""
    x = embedding[members]
    return int(members[int(np.argmax(x @ x.sum(0)))])


def typicality(embedding: np.ndarray, labels: np.ndarray, images: np.ndarray) -> np.ndarray:
    """How typical each of ``images`` is of its group: the cosine of its unit embedding with the group's
    mean direction (the measure :func:`representative` takes the maximum of)."""
    images = np.asarray(images, dtype=np.int64)
    out = np.empty(len(images))
    for j, i in enumerate(images.tolist()):
        members = np.flatnonzero(labels == labels[i])
        centre = embedding[members].sum(0)
        out[j] = float(embedding[i] @ centre) / (np.linalg.norm(centre) + 1e-12)
    return out


def is_representative(embedding: np.ndarray, labels: np.ndarray, i: int) -> bool:
    """Whether image ``i`` is the most typical image of its group (what the app and the questions show for
    a group)."""
    return representative(embedding, np.flatnonzero(labels == labels[i])) == i


def same_probability(cosines, *, scale: float, bias: float):
    """The similarity model's P(same) = sigmoid(scale * cos + bias) for given cosines (numpy, float64).

    Its pair head (:class:`~l2c_explorer.nets.CosinePairHead`) has that form; :func:`same_logit` is the logit.
    """
    return 1.0 / (1.0 + np.exp(-same_logit(cosines, scale=scale, bias=bias)))


def same_logit(cosines, *, scale, bias):
    """The pair logit scale * cos + bias (numpy arrays or torch tensors, in their own precision)."""
    return scale * cosines + bias
