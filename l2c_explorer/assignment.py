"""New images assigned to a run's clusters: the neighbours' vote and the unlike-any rule.

Pure functions of a run's arrays (:meth:`~l2c_explorer.clustering.L2CClusterer.assign` embeds the images and
calls :func:`assign_embeddings`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .groups import same_logit
from .neighbours import Neighbours

# Share of a clustering's own images that the unlike-any rule would flag: a policy (a 1% false-alarm
# rate on images like those already clustered), not a tuned constant. benchmarks/assign.py measures how
# many images of categories absent from the run it flags.
UNLIKE_QUANTILE = 0.01


def unlike_threshold(neighbours: Neighbours, labels: np.ndarray, quantile: float) -> float:
    """The cosine below which an image counts as unlike every category of a clustering.

    For each image, its cosine to the nearest other member of its own cluster among its ``neighbours``
    (-1 when none of them is); the threshold is the ``quantile`` of these. A new image whose nearest
    member of its assigned cluster is less similar than that is rarer than a ``quantile`` share of the
    clustered images themselves.
    """
    idx = neighbours.indices.numpy()
    cos = neighbours.cosines.numpy()
    same = labels[idx] == labels[:, None]
    nearest_same = np.where(same, cos, -1.0).max(1)
    return float(np.quantile(nearest_same, quantile))


def vote(
    neighbour_labels: np.ndarray, weights: np.ndarray, n_clusters: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster and confidence of each query from its neighbours' clusters (m, k) and weights (m, k).

    The score of a cluster is the sum of the weights of the neighbours in it; the answer is the best
    cluster, its confidence its share of the total.
    """
    m = len(neighbour_labels)
    scores = np.zeros((m, n_clusters))
    np.add.at(scores, (np.repeat(np.arange(m), neighbour_labels.shape[1]), neighbour_labels.ravel()), weights.ravel())
    best = scores.argmax(1)
    total = scores.sum(1)
    confidence = np.where(total > 0, scores[np.arange(m), best] / np.maximum(total, 1e-12), 0.0)
    return best, confidence


@dataclass
class Assigned:
    """New images' clusters (m,), confidences (m,), unlike-any flags (m,) and cosines to the nearest member of
    their cluster (m,)."""

    labels: np.ndarray
    confidence: np.ndarray
    unlike_any: np.ndarray
    nearest: np.ndarray


def assign_embeddings(
    emb: torch.Tensor, run_embedding: np.ndarray, run_labels: np.ndarray, n_clusters: int, *, k: int,
    unlike_below: float, pair_scale, pair_bias,
) -> Assigned:
    """Assign new unit embeddings (m, d) to a run's clusters.

    Each of their ``k`` nearest clustered images (``run_embedding`` (n, d), ``run_labels`` (n,)) votes for its
    cluster with the similarity model's P(same) = sigmoid(pair_scale * cos + pair_bias) (:func:`vote`); an
    image is unlike any cluster when its nearest member of the winning cluster is below ``unlike_below``.
    """
    run = torch.from_numpy(np.ascontiguousarray(run_embedding, dtype=np.float32))
    emb = torch.nn.functional.normalize(emb.float(), dim=1)
    k = int(min(k, len(run)))
    idx, cos = [], []
    for s in range(0, len(emb), 1024):
        top = torch.topk(emb[s : s + 1024] @ run.T, k, dim=1)
        idx.append(top.indices)
        cos.append(top.values)
    idx, cos = torch.cat(idx).numpy(), torch.cat(cos)
    with torch.no_grad():
        weights = torch.sigmoid(same_logit(cos, scale=pair_scale, bias=pair_bias)).numpy().astype(np.float64)
    neighbour_labels = run_labels[idx]
    labels, confidence = vote(neighbour_labels, np.maximum(weights, 1e-9), n_clusters)
    cos = cos.numpy()
    nearest = np.where(neighbour_labels == labels[:, None], cos, -1.0).max(1)
    return Assigned(labels, confidence, nearest < unlike_below, nearest)
