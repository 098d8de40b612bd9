"""Evaluation metrics: clustering accuracy, NMI, ARI and pair-classification scores. Numpy in, numbers out."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, average_precision_score, normalized_mutual_info_score, roc_auc_score


def contingency(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rectangular contingency table between classes and clusters.

    Returns
    -------
    table : ndarray of shape (n_classes, n_clusters)
    classes, clusters : ndarray
        The distinct labels indexing the rows and the columns.
    """
    classes, ti = np.unique(np.asarray(y_true), return_inverse=True)
    clusters, pi = np.unique(np.asarray(y_pred), return_inverse=True)
    table = np.zeros((len(classes), len(clusters)), dtype=np.int64)
    np.add.at(table, (ti, pi), 1)
    return table, classes, clusters


def hungarian_mapping(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """One-to-one cluster -> class mapping that maximises agreement (solved on these predictions).

    Clusters left unmatched (more clusters than classes) are absent from the mapping.
    """
    table, classes, clusters = contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(-table)
    return {clusters[c].item(): classes[r].item() for r, c in zip(rows, cols)}


def cluster_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Clustering accuracy under the best one-to-one matching of clusters to classes.

    Images in clusters that no class is matched to (when there are more clusters than classes) count as
    errors, and so do images of classes that no cluster is matched to.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError("y_true and y_pred must be 1-D arrays of the same length")
    if len(y_true) == 0:
        raise ValueError("no samples")
    table, _, _ = contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(y_true))


def clustering_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """ACC (Hungarian), NMI, ARI, the true and predicted numbers of clusters."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return {
        "acc": cluster_accuracy(y_true, y_pred),
        "nmi": float(normalized_mutual_info_score(y_true, y_pred)),
        "ari": float(adjusted_rand_score(y_true, y_pred)),
        "k_true": int(len(np.unique(y_true))),
        "k_pred": int(len(np.unique(y_pred))),
    }


def pair_scores(prob_same: np.ndarray, same: np.ndarray, *, threshold: float = 0.5) -> dict:
    """Precision, recall and F1 of the "same class" decision, and ROC-AUC / PR-AUC of the score.

    Parameters
    ----------
    prob_same : ndarray of shape (n_pairs,)
        Predicted probability that each pair shares a class.
    same : ndarray of shape (n_pairs,), bool
        Ground truth.
    """
    prob_same, same = np.asarray(prob_same, dtype=np.float64), np.asarray(same, dtype=bool)
    predicted = prob_same > threshold
    tp = int(np.sum(predicted & same))
    fp = int(np.sum(predicted & ~same))
    fn = int(np.sum(~predicted & same))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    both = same.any() and (~same).any()
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": float(roc_auc_score(same, prob_same)) if both else float("nan"),
        "pr_auc": float(average_precision_score(same, prob_same)) if both else float("nan"),
        "n_pairs": int(len(same)),
        "n_similar": int(same.sum()),
    }


def dense_pair_scores(prob_matrix: np.ndarray, labels: np.ndarray, *, include_self: bool = False) -> dict:
    """:func:`pair_scores` over all pairs of one set: ``prob_matrix`` (n, n), ``labels`` (n,).

    With ``include_self=False`` each unordered pair is counted once and the diagonal is left out.
    """
    labels = np.asarray(labels)
    same = labels[:, None] == labels[None, :]
    if include_self:
        return pair_scores(prob_matrix.ravel(), same.ravel())
    iu = np.triu_indices(len(labels), k=1)
    return pair_scores(prob_matrix[iu], same[iu])


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Accuracy, per-class accuracy (the recall of each true class) and their mean, for labels of any type.

    Returns
    -------
    dict with ``accuracy``, ``per_class_accuracy`` {str(class): accuracy}, ``mean_class_accuracy`` and
    ``n_images``.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError("y_true and y_pred must be 1-D arrays of the same length")
    if len(y_true) == 0:
        raise ValueError("no samples")
    correct = y_true == y_pred
    per_class = {str(c): float(correct[y_true == c].mean()) for c in np.unique(y_true)}
    return {
        "accuracy": float(correct.mean()),
        "per_class_accuracy": per_class,
        "mean_class_accuracy": float(np.mean(list(per_class.values()))),
        "n_images": int(len(y_true)),
    }
