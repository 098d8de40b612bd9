"""Pairwise clustering losses as pure functions, computed with N x N matrix products.

Pair targets follow one convention everywhere: a matrix ``targets`` of shape (n, n) (or (n, m) for two
sets) with +1 = same cluster, -1 = different clusters and 0 = unknown. Unknown pairs are masked out of
both the value and the gradient; they never add a constant to the loss.

Neither loss materialises an (n, n, k) tensor:

* MCL's pair probability ``p_i . p_j`` is the (i, j) entry of ``P P^T``;
* KCL's ``KL(q_j || p_i) = sum_k q_jk log q_jk - sum_k q_jk log p_ik`` is a row term minus the
  (j, i) entry of ``Q (log P)^T``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-7


def _valid_pairs(targets: torch.Tensor, include_self: bool) -> torch.Tensor:
    valid = targets != 0
    if not include_self and targets.shape[0] == targets.shape[1]:
        valid = valid & ~torch.eye(targets.shape[0], dtype=torch.bool, device=targets.device)
    return valid


def _masked_mean(values: torch.Tensor, valid: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        if bool(valid.all()):
            return values.mean()
        return values[valid].mean() if bool(valid.any()) else values.sum() * 0.0
    w = valid.to(values.dtype) * weights
    return (values * w).sum() / w.sum().clamp_min(1e-12)


def mcl_loss(
    probs: torch.Tensor,
    targets: torch.Tensor,
    *,
    probs_other: torch.Tensor | None = None,
    include_self: bool = True,
    weights: torch.Tensor | None = None,
    eps: float = EPS,
) -> torch.Tensor:
    """Meta Classification Likelihood: binary cross-entropy on the probability that two items share a cluster.

    Parameters
    ----------
    probs : Tensor of shape (n, k)
        Cluster distributions (rows sum to 1).
    targets : Tensor of shape (n, m)
        +1 similar, -1 dissimilar, 0 ignored.
    probs_other : Tensor of shape (m, k), optional
        The pairs' second members; defaults to ``probs`` (all n x n pairs).
    include_self : bool
        Keep the diagonal pairs (i, i) when both sides are the same set. They act as a sharpening
        regulariser (-log sum_k p_ik^2), as in the authors' dense enumeration.
    weights : Tensor of shape (n, m), optional
        Per-pair weights (e.g. to balance similar and dissimilar pairs).

    Returns
    -------
    Tensor, scalar: the mean over valid pairs.
    """
    other = probs if probs_other is None else probs_other
    same = probs @ other.T  # (n, m): P(i and j in the same cluster)
    agree = torch.where(targets > 0, same, 1.0 - same)  # probability of the target outcome
    per_pair = -torch.log(agree + eps)
    return _masked_mean(per_pair, _valid_pairs(targets, include_self or probs_other is not None), weights)


def kcl_loss(
    probs: torch.Tensor,
    targets: torch.Tensor,
    *,
    margin: float = 2.0,
    include_self: bool = True,
    weights: torch.Tensor | None = None,
    eps: float = EPS,
) -> torch.Tensor:
    """KL-divergence contrastive loss over all ordered pairs, the target side detached.

    For the ordered pair (i, j), ``p_i`` is the prediction and ``p_j`` the (detached) target:
    ``KL(p_j || p_i)`` for similar pairs and ``max(0, margin - KL)`` for dissimilar ones. Both orders of
    every pair are present, which makes the loss symmetric.

    Parameters
    ----------
    probs : Tensor of shape (n, k)
    targets : Tensor of shape (n, n), +1 / -1 / 0.

    Returns
    -------
    Tensor, scalar: the mean over valid ordered pairs.
    """
    pred = probs + eps
    target = probs.detach() + eps
    neg_entropy = (target * torch.log(target)).sum(dim=1)  # (n,): sum_k q_jk log q_jk
    cross = torch.log(pred) @ target.T  # (n_i, n_j): sum_k q_jk log p_ik
    kl = neg_entropy[None, :] - cross  # (i, j): KL(q_j || p_i)
    similar = (targets > 0).to(probs.dtype)
    dissimilar = (targets < 0).to(probs.dtype)
    per_pair = similar * kl + dissimilar * F.relu(margin - kl)
    return _masked_mean(per_pair, _valid_pairs(targets, include_self), weights)


# the function of each loss the options offer (l2c_explorer.options.CLUSTERING_LOSSES, in that order)
CLUSTERING_LOSSES = {"mcl": mcl_loss, "kcl": kcl_loss}


def pair_bce_loss(logits: torch.Tensor, same: torch.Tensor, *, include_self: bool = False) -> torch.Tensor:
    """Binary cross-entropy of pair logits (n, n) against a boolean same-class matrix (n, n)."""
    target = same.to(logits.dtype)
    if include_self:
        return F.binary_cross_entropy_with_logits(logits, target)
    off_diagonal = ~torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits[off_diagonal], target[off_diagonal])


def prototype_loss(emb: torch.Tensor, y: torch.Tensor, temperature: float = 10.0) -> torch.Tensor:
    """Leave-one-out prototype classification inside a batch.

    Each image is classified among the batch's classes by its cosine to each class's summed embedding, its
    own embedding left out of its own class. Everything reduces to sums of pair cosines: ``emb @ sums.T``
    and the squared norms of the sums, so no (b, c, d) tensor is formed.

    emb (b, d) unit, y (b,) batch-local class ids -> scalar.
    """
    onehot = F.one_hot(y).to(emb.dtype)  # (b, c)
    sums = onehot.T @ emb  # (c, d)
    dots = emb @ sums.T  # (b, c): sum over the class's members of cos(i, member)
    own = onehot  # 1 where the class is the image's own
    dots_loo = dots - own  # cos(i, i) = 1 removed from its own class
    sq_norm = (sums * sums).sum(1)[None, :] - 2.0 * own * dots + own  # |sum_c - [c = y_i] e_i|^2
    cos = dots_loo / sq_norm.clamp_min(1e-6).sqrt()
    return F.cross_entropy(temperature * cos, y)
