"""The clustering network (CCN): its pair targets, mini-batches, training, and the clusters it gives.

:func:`train_cluster_head` trains a :class:`~l2c_explorer.nets.CosineClusterHead` on unit features with a
pairwise loss (:mod:`l2c_explorer.losses`); :func:`ranked_clusters` turns its cluster probabilities into
labels numbered by decreasing size, and :func:`clusters_from_labels` gives labels set by a person's answers
the same form. Pure functions: they return their results and write nothing else.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from .groups import group_directions
from .losses import CLUSTERING_LOSSES
from .nets import CosineClusterHead
from .options import DISCOVER

_DEFAULTS = DISCOVER.defaults


def pair_targets(
    features: torch.Tensor, positives: sp.spmatrix, index: torch.Tensor | None = None, *, negative_below: float = 0.3,
    answers: sp.spmatrix | None = None,
) -> torch.Tensor:
    """Pair targets among the images ``index`` (all when None): (m,) -> (m, m) in {+1, 0, -1}.

    +1 where ``positives`` links the two images, -1 where the cosine of their unit ``features`` (n, d)
    is below ``negative_below``, 0 (pair not used) otherwise; where ``answers`` (n, n; a person's answers,
    :meth:`~l2c_explorer.constraints.ConstraintSet.pair_matrix`) says +1 or -1, that instead.
    """
    feats = features if index is None else features[index]
    cos = feats @ feats.T
    targets = torch.where(cos < negative_below, -1.0, 0.0).to(feats.dtype)
    if index is None:
        linked = positives.tocoo()
    else:
        rows = index.cpu().numpy()
        linked = positives[rows][:, rows].tocoo()
    targets[torch.as_tensor(linked.row, device=feats.device), torch.as_tensor(linked.col, device=feats.device)] = 1.0
    if answers is not None and answers.nnz:
        told = _answers_among(answers, index)
        targets[torch.as_tensor(told.row, device=feats.device), torch.as_tensor(told.col, device=feats.device)] = \
            torch.as_tensor(told.data, dtype=feats.dtype, device=feats.device)
    return targets


def _answers_among(answers: sp.spmatrix, index: torch.Tensor | None) -> sp.coo_matrix:
    """The answers' pair targets (n, n) among the images ``index`` (all when None): (m, m)."""
    if index is None:
        return sp.coo_matrix(answers)
    rows = index.cpu().numpy()
    return sp.csr_matrix(answers)[rows][:, rows].tocoo()


def answer_weights(targets: torch.Tensor, answers: sp.spmatrix | None, index: torch.Tensor | None = None):
    """Per-pair loss weights (m, m): 1, and for the pairs a person answered about (``answers`` nonzero) as much
    as all the pairs of one image of the batch together, so that a few answers weigh against the graph's
    many links (None when there are no answers)."""
    if answers is None or not answers.nnz:
        return None
    told = _answers_among(answers, index)
    weights = torch.ones_like(targets)
    weights[torch.as_tensor(told.row, device=targets.device), torch.as_tensor(told.col, device=targets.device)] = \
        float(len(targets))
    return weights


# k-means restarts: 10 while n * k is at most this (every folder of the Omniglot and photo benchmarks: at most
# 900 images and 100 clusters, or 12,500 photos and 25 classes), 1 above, where one run of k-means++ and Lloyd
# iterations already costs seconds and the clustering network refines it. A cost bound, not tuned for
# accuracy: at 1e7, the ten k-means++ restarts of a 10,000-image folder with 428 clusters took 58 of its
# 149 s; benchmarks/discover_large.py and benchmarks/scale.py report the accuracy with one.
KMEANS_RESTART_WORK = 1e6


def kmeans_centres(features: np.ndarray, n_clusters: int, *, seed: int = 0, n_init: int | None = None) -> np.ndarray:
    """Unit k-means centres (k, d) of unit features (n, d): the clustering network's starting point."""
    from sklearn.cluster import KMeans

    if n_init is None:
        n_init = 10 if len(features) * n_clusters <= KMEANS_RESTART_WORK else 1
    km = KMeans(n_clusters, n_init=n_init, random_state=seed, max_iter=300 if n_init > 1 else 100).fit(features)
    centres = km.cluster_centers_
    return (centres / (np.linalg.norm(centres, axis=1, keepdims=True) + 1e-12)).astype(np.float32)


def sample_batch(positives: sp.csr_matrix, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """Image indices for one mini-batch: random anchors and, for each, one of its linked partners.

    Random images alone would rarely contain a linked pair once n is much larger than the batch.
    """
    n = positives.shape[0]
    anchors = torch.randperm(n, generator=generator)[: batch_size // 2].numpy()
    start, degree = positives.indptr[anchors], np.diff(positives.indptr)[anchors]
    pick = (torch.rand(len(anchors), generator=generator).numpy() * np.maximum(degree, 1)).astype(np.int64)
    partners = np.where(degree > 0, positives.indices[np.minimum(start + pick, positives.nnz - 1)], anchors)
    return torch.as_tensor(np.unique(np.concatenate([anchors, partners])))


def clusters_in_use(probs: torch.Tensor) -> int:
    """How many clusters are the most probable one for at least one image."""
    return int(torch.unique(probs.argmax(1)).numel())


# Up to FULL_BATCH images a training step sees every pair; a larger folder's step takes MINI_BATCH images (about
# half random anchors, half their linked partners). Chosen for cost, at no loss of accuracy, on 500 Omniglot
# background characters (10,000 drawings, K known): 1,024-image batches took 8.4 s of training for 87.1%, 512
# took 4.5 s for 87.2% (256 were not tried). benchmarks/discover_large.py (6,180 images) reports the result.
FULL_BATCH = 2048
MINI_BATCH = 512


def train_cluster_head(
    features: torch.Tensor,
    positives: sp.csr_matrix,
    centres: torch.Tensor,
    *,
    loss: str = _DEFAULTS.loss,
    steps: int = _DEFAULTS.steps,
    batch_size: int = FULL_BATCH,
    mini_batch: int = MINI_BATCH,
    lr: float = 0.01,
    temperature: float = 10.0,
    negative_below: float = 0.3,
    seed: int = 0,
    report=None,
    history: list | None = None,
    stop: threading.Event | None = None,
    answers: sp.spmatrix | None = None,
) -> tuple[CosineClusterHead, torch.Tensor]:
    """Train a :class:`CosineClusterHead` starting at ``centres`` (k, d) on unit features (n, d).

    Up to ``batch_size`` images all pairs are used at every step (n x n matrix products); beyond, each
    step takes ``mini_batch`` images: random anchors and linked partners, and the images ``answers`` is about.
    ``answers``: a person's answers as pair targets (n, n) (:func:`pair_targets`), each weighed by
    :func:`answer_weights`. Returns the head and the cluster probabilities (n, k) of every image.
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    head = CosineClusterHead(dim=features.shape[1], n_clusters=centres.shape[0], temperature=temperature)
    with torch.no_grad():
        head.centres.copy_(centres)
    head = head.to(features.device)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    loss_fn = CLUSTERING_LOSSES[loss]
    n = len(features)
    full_batch = n <= batch_size
    targets = pair_targets(features, positives, negative_below=negative_below, answers=answers) if full_batch else None
    weights = answer_weights(targets, answers) if full_batch else None
    answered = None if answers is None or not answers.nnz else \
        torch.as_tensor(np.unique(sp.coo_matrix(answers).row), device=features.device)
    report_every = max(1, steps // 100)
    for step in range(1, steps + 1):
        if stop is not None and stop.is_set():
            break
        if full_batch:
            batch, batch_targets, batch_weights = features, targets, weights
        else:
            index = sample_batch(positives, mini_batch, g).to(features.device)
            if answered is not None:
                index = torch.unique(torch.cat([index, answered]))
            batch = features[index]
            batch_targets = pair_targets(features, positives, index, negative_below=negative_below, answers=answers)
            batch_weights = answer_weights(batch_targets, answers, index)
        probs = torch.softmax(head(batch), dim=1)
        value = loss_fn(probs, batch_targets, weights=batch_weights)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        if step == 1 or step % report_every == 0 or step == steps:
            loss_value = float(value.detach())
            k_used = clusters_in_use(probs.detach())
            epoch = step if full_batch else step * len(batch) / n
            if history is not None:
                history.append({"step": step, "epoch": round(epoch, 3), "loss": loss_value, "k_estimated": k_used})
            if report is not None:
                report("training", step, steps, epoch=epoch, loss=loss_value, k_estimated=k_used,
                       message=f"Training the clustering network: step {step}/{steps}")
    with torch.no_grad():
        probs = torch.cat([torch.softmax(head(features[i : i + 8192]), dim=1) for i in range(0, n, 8192)])
    return head, probs


@dataclass
class Clusters:
    """A clustering of n images into ``n_clusters`` clusters numbered by decreasing size.

    ``labels`` (n,) int64, ``probabilities`` (n, n_clusters) float, ``confidence`` (n,) the probability of each
    image's cluster, ``head_state`` the cosine head's ``centres`` (n_clusters, d) in this numbering (None for the
    paper's pipeline, which has no head of ours).
    """

    labels: np.ndarray
    probabilities: np.ndarray
    confidence: np.ndarray
    n_clusters: int
    head_state: dict | None


def ranked_clusters(probs: np.ndarray, head: CosineClusterHead | None = None, *, keep_empty: bool = False) -> Clusters:
    """Labels, probabilities and confidence from a network's cluster probabilities (n, k).

    Each image goes to its most probable output; the outputs in use are renumbered largest first, and the others
    dropped unless ``keep_empty`` (K given: every output is kept, an empty one last). Probabilities are
    renormalised over the outputs kept.
    """
    raw = probs.argmax(1)
    ids, sizes = np.unique(raw, return_counts=True)
    order = ids[np.argsort(-sizes, kind="stable")]  # clusters in use, largest first
    if keep_empty:
        order = np.concatenate([order, np.setdiff1d(np.arange(probs.shape[1]), order)])
    new_id = np.full(probs.shape[1], -1, dtype=np.int64)
    new_id[order] = np.arange(len(order))
    labels = new_id[raw]
    sub = probs[:, order].astype(np.float32, copy=False)
    sub /= sub.sum(1, keepdims=True).clip(1e-12)
    state = None if head is None else {"centres": head.centres.detach().cpu()[torch.as_tensor(order)]}
    return Clusters(labels, sub, sub[np.arange(len(sub)), labels], len(order), state)


def clusters_from_labels(labels: np.ndarray, features: np.ndarray) -> Clusters:
    """Labels as given (n,), with probabilities from a cosine head whose centres are the groups' mean
    ``features`` (n, d) (the clustering network's form), each label always its image's most probable cluster."""
    k = int(labels.max()) + 1
    centres = group_directions(features.astype(np.float64), labels, k)
    head = CosineClusterHead(dim=features.shape[1], n_clusters=k)
    logits = head.temperature * features.astype(np.float64) @ centres.T
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    rows = np.arange(len(labels))
    top = probs.argmax(1)
    swap = top != labels  # give the label the largest probability, the former best the label's
    p_label, p_top = probs[rows, labels].copy(), probs[rows, top].copy()
    probs[rows[swap], labels[swap]], probs[rows[swap], top[swap]] = p_top[swap], p_label[swap]
    labels = labels.astype(np.int64)
    return Clusters(labels, probs, probs[rows, labels], k, {"centres": torch.from_numpy(centres.astype(np.float32))})
