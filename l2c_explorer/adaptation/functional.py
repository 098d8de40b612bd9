"""Pure tensor functions of the domain-adaptation methods: each loss term on its own, separately tested.

Shapes: ``n`` items in a batch, ``k`` classes, ``d`` feature size.

* DANN (Ganin & Lempitsky, 2015): :class:`GradientReversal`, :func:`dann_ramp`, :func:`domain_adversarial_loss`.
* SRDC (Tang, Chen & Jia, CVPR 2020): :func:`srdc_auxiliary_distribution`, :func:`student_t_assignment`,
  :func:`soft_cross_entropy`, :func:`source_sample_weights` and :func:`lloyd_kmeans`.

* CCN+ (Hsu, Lv & Kira, ICLR 2018): :func:`hard_pair_targets`; the clustering term itself is
  :func:`l2c_explorer.losses.mcl_loss` / :func:`~l2c_explorer.losses.kcl_loss`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..options import SRDC_ASSIGNMENT_NORMS as ASSIGNMENT_NORMS

EPS = 1e-7

# ---------------------------------------------------------------------------------------------------
# DANN


class GradientReversal(torch.autograd.Function):
    """Identity on the way forward; multiplies the gradient by ``-coeff`` on the way back."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = float(coeff)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad.neg() * ctx.coeff, None


def grad_reverse(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Apply :class:`GradientReversal` to ``x`` (any shape)."""
    return GradientReversal.apply(x, coeff)


def dann_ramp(progress: float, gamma: float = 10.0) -> float:
    """The DANN schedule ``2 / (1 + exp(-gamma * p)) - 1``: 0 at the start, close to 1 from p ~ 0.5.

    ``progress`` is the fraction of training done, in [0, 1]. SRDC uses the same ramp for its target terms.
    """
    p = min(max(float(progress), 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


def domain_adversarial_loss(source_logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of a domain classifier: source = 1, target = 0, each domain weighted equally.

    Parameters
    ----------
    source_logits : Tensor of shape (n_s,)
    target_logits : Tensor of shape (n_t,)

    Returns
    -------
    Tensor, scalar. Minimised by the classifier; the features see it through :func:`grad_reverse`.
    """
    loss_s = F.binary_cross_entropy_with_logits(source_logits, torch.ones_like(source_logits))
    loss_t = F.binary_cross_entropy_with_logits(target_logits, torch.zeros_like(target_logits))
    return 0.5 * (loss_s + loss_t)


# ---------------------------------------------------------------------------------------------------
# CCN+


def hard_pair_targets(prob_same: torch.Tensor, *, threshold: float = 0.5) -> torch.Tensor:
    """CCN+ pair targets from the similarity model's P(same) (n, n): +1 above ``threshold``, -1 otherwise.

    Every pair of the target batch gets a target (none is left out), as in L2C's ``prepare_task_target``.
    """
    return torch.where(prob_same > threshold, 1.0, -1.0).to(prob_same.dtype)


# ---------------------------------------------------------------------------------------------------
# SRDC


def srdc_auxiliary_distribution(
    probs: torch.Tensor, *, detach: bool = True, column_sums: torch.Tensor | None = None
) -> torch.Tensor:
    """SRDC's auxiliary target distribution ``q_ik ∝ p_ik / (sum_i p_ik)^(1/2)``, normalised over k.

    It is the closed-form minimiser of ``KL(Q || P)`` plus a cluster-size balance term: sharper than P, and
    it down-weights the clusters that already hold many items.

    Parameters
    ----------
    probs : Tensor of shape (n, k)
        Cluster (class) distributions, rows summing to 1.
    detach : bool
        Treat Q as a fixed target (the paper: Q is updated with the network fixed). ``False`` lets the
        gradient flow through Q too, as the authors' code does.
    column_sums : Tensor of shape (k,), optional
        ``sum_i p_ik`` from a larger set; by default the column sums of ``probs`` (the mini-batch).

    Returns
    -------
    Tensor of shape (n, k), rows summing to 1.
    """
    p = probs.detach() if detach else probs
    sums = p.sum(dim=0) if column_sums is None else column_sums.to(p)
    q = p / sums.clamp_min(EPS).sqrt()
    return q / q.sum(dim=1, keepdim=True).clamp_min(EPS)


def student_t_assignment(
    features: torch.Tensor, centres: torch.Tensor, *, alpha: float = 1.0, normalise: str = "sum"
) -> torch.Tensor:
    """Soft assignment of features to centres with a Student-t kernel ``(1 + ||f - mu||^2 / alpha)^-((alpha+1)/2)``.

    Parameters
    ----------
    features : Tensor of shape (n, d)
    centres : Tensor of shape (k, d)
    alpha : float
        Degrees of freedom (1 in SRDC and DEC).
    normalise : {"sum", "softmax"}
        ``"sum"`` divides the kernel values by their sum over k (the paper). ``"softmax"`` passes them
        through a softmax instead, as the authors' code does; kernel values lie in (0, 1], so that
        distribution is much flatter.

    Returns
    -------
    Tensor of shape (n, k), rows summing to 1.
    """
    if normalise not in ASSIGNMENT_NORMS:
        raise ValueError(f"normalise must be one of {ASSIGNMENT_NORMS}, not {normalise!r}")
    dist2 = torch.cdist(features, centres).pow(2)  # (n, k), no (n, k, d) intermediate
    kernel = (1.0 + dist2 / alpha).pow(-(alpha + 1.0) / 2.0)
    if normalise == "softmax":
        return torch.softmax(kernel, dim=1)
    return kernel / kernel.sum(dim=1, keepdim=True)


def soft_cross_entropy(
    target: torch.Tensor, probs: torch.Tensor, *, weights: torch.Tensor | None = None, eps: float = EPS
) -> torch.Tensor:
    """``mean_i w_i * -sum_k target_ik log probs_ik``: cross-entropy against a soft (or one-hot) target.

    Parameters
    ----------
    target : Tensor of shape (n, k)
        Rows summing to 1 (an auxiliary distribution, or one-hot labels).
    probs : Tensor of shape (n, k)
        Predicted distributions.
    weights : Tensor of shape (n,), optional
        Per-item weights (SRDC's source-sample weights); the mean is over items, not over weights.
    """
    per_item = -(target * torch.log(probs + eps)).sum(dim=1)
    if weights is not None:
        per_item = per_item * weights
    return per_item.mean()


def source_sample_weights(
    features: torch.Tensor, labels: torch.Tensor, target_centroids: torch.Tensor
) -> torch.Tensor:
    """SRDC's soft source selection ``w_j = (1 + cos(f_j, c_{y_j})) / 2``, in [0, 1].

    A source item that looks like the target items of its own class (cosine to the target centroid
    ``c_{y_j}`` of its class) gets a weight near 1; an atypical one, near 0.

    Parameters
    ----------
    features : Tensor of shape (n_s, d)
    labels : LongTensor of shape (n_s,)
    target_centroids : Tensor of shape (k, d)

    Returns
    -------
    Tensor of shape (n_s,).
    """
    cos = F.cosine_similarity(features, target_centroids[labels], dim=1, eps=EPS)
    return 0.5 * (1.0 + cos)


def class_centroids(features: torch.Tensor, labels: torch.Tensor, n_classes: int, *, fallback: torch.Tensor | None = None) -> torch.Tensor:
    """Mean feature of each class: (n, d), (n,) -> (k, d).

    A class without items takes its row of ``fallback`` (shape (k, d)), or zeros.
    """
    onehot = F.one_hot(labels, n_classes).to(features.dtype)  # (n, k)
    counts = onehot.sum(dim=0)  # (k,)
    means = (onehot.T @ features) / counts.clamp_min(1.0)[:, None]
    if fallback is not None:
        means = torch.where(counts[:, None] > 0, means, fallback.to(means))
    return means


def lloyd_kmeans(features: torch.Tensor, init: torch.Tensor, *, iterations: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """A few Lloyd iterations of K-means from given centres (SRDC: 5, from the source class centroids).

    Because the centres start from class centroids, cluster k keeps the meaning of class k. A cluster that
    loses all its items keeps its previous centre.

    Parameters
    ----------
    features : Tensor of shape (n, d)
    init : Tensor of shape (k, d)

    Returns
    -------
    centres : Tensor of shape (k, d)
    labels : LongTensor of shape (n,)
    """
    centres = init.clone()
    labels = torch.cdist(features, centres).argmin(dim=1)
    for _ in range(iterations):
        centres = class_centroids(features, labels, centres.shape[0], fallback=centres)
        labels = torch.cdist(features, centres).argmin(dim=1)
    return centres, labels
