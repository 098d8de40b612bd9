"""SRDC's part of a training run: learnable centres, the K-means at the start of every epoch, the loss terms.

Structurally Regularized Deep Clustering (Tang, Chen & Jia, CVPR 2020); the method, and where the paper and
the authors' code differ, is described in :mod:`l2c_explorer.adaptation.adapter`. The loss terms themselves
are the pure functions of :mod:`l2c_explorer.adaptation.functional`; :class:`SRDC` holds the state they need
between steps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..data import normalise
from .functional import (
    class_centroids,
    dann_ramp,
    lloyd_kmeans,
    soft_cross_entropy,
    source_sample_weights,
    srdc_auxiliary_distribution,
    student_t_assignment,
)

SIZE_MOMENTUM = 0.9  # srdc_column_sums="target": running estimate of the target's cluster sizes, per step

# (f1, f2, logits) on the CPU for normalised inputs, with a domain's batch-norm statistics
Predict = Callable[[torch.Tensor, str], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class SRDC:
    """The learnable centres of the conv features (f1) and hidden features (f2), and SRDC's loss terms.

    ``opts`` holds the ``srdc_*`` options (a :class:`~l2c_explorer.adaptation.DomainAdapter`); ``feature_dims``
    are the sizes of f1 and f2; ``generator`` draws the K-means subsets.
    """

    def __init__(self, opts, feature_dims: tuple[int, int], n_classes: int, device, generator: torch.Generator):
        self.o, self.k, self.device, self.g = opts, n_classes, device, generator
        self.centres = [torch.nn.Parameter(torch.zeros(n_classes, dim, device=device)) for dim in feature_dims]

    def _sample(self, n: int) -> torch.Tensor:
        m = min(n, self.o.srdc_kmeans_sample)
        return torch.randperm(n, generator=self.g)[:m].sort().values

    @torch.no_grad()
    def start_epoch(self, epoch: int, n_epochs: int, predict: Predict, source, target) -> dict:
        """K-means on the target features, centre re-initialisation and the weight ``lambda`` of this epoch.

        ``source`` is (unit images, preprocessing, labels), ``target`` (unit images, preprocessing).
        """
        o = self.o
        unit_s, prep_s, y_s = source
        unit_t, prep_t = target
        i_s, i_t = self._sample(len(unit_s)), self._sample(len(unit_t))
        f1_s, f2_s, _ = predict(normalise(unit_s[i_s], prep_s), "source")
        f1_t, f2_t, logits_t = predict(normalise(unit_t[i_t], prep_t), "target")
        labels_s = y_s[i_s]
        pred_t = logits_t.argmax(1)
        state = {"lambda": dann_ramp(epoch / n_epochs), "target_centroids": [], "mean_weight": 1.0,
                 "column_sums": {"out": torch.softmax(logits_t, dim=1).mean(0).to(self.device)}}
        for level, (fs, ft, centre) in enumerate(zip((f1_s, f2_s), (f1_t, f2_t), self.centres)):
            c_s = class_centroids(fs, labels_s, self.k)
            # the first K-means starts from the source classes; later ones from the predicted target classes
            init = c_s if epoch == 0 else class_centroids(ft, pred_t, self.k, fallback=c_s)
            c_t, _ = lloyd_kmeans(ft, init, iterations=o.srdc_kmeans_iterations)
            centre.data.copy_((0.5 * (c_t + c_s) if o.srdc_centre_init == "mean" else c_t).to(self.device))
            state["target_centroids"].append(c_t.to(self.device))
            assign = student_t_assignment(ft.to(self.device), centre.data, normalise=o.srdc_assignment)
            state["column_sums"][f"f{level + 1}"] = assign.mean(0)
        if o.srdc_soft_select and epoch > 0:
            state["mean_weight"] = float(source_sample_weights(f1_s, labels_s, state["target_centroids"][0].to(f1_s.device)).mean())
        return state

    def terms(self, state: dict, epoch: int, ys, source_out, target_out) -> dict:
        """The loss terms of one step: ``source_out`` and ``target_out`` are the network's (f1, f2, logits)."""
        o = self.o
        f1_s, f2_s, logits_s = source_out
        f1_t, f2_t, logits_t = target_out
        lam = state["lambda"]
        onehot = F.one_hot(ys, self.k).to(logits_s.dtype)
        weights = None
        if o.srdc_soft_select and epoch > 0:
            # the paper's weights, computed from this batch's own features (no extra pass over the source)
            weights = source_sample_weights(f1_s.detach(), ys, state["target_centroids"][0])
        p_t = torch.softmax(logits_t, dim=1)
        assign_t = {name: student_t_assignment(ft, centre, normalise=o.srdc_assignment)
                    for name, ft, centre in (("f1", f1_t, self.centres[0]), ("f2", f2_t, self.centres[1]))}
        sums = {}
        if o.srdc_column_sums == "target":
            # cluster sizes over the whole target: the epoch-start pass, kept current with each batch (a fixed
            # estimate over a whole epoch over-corrects: the sizes of one epoch then flip in the next)
            for name, p in (("out", p_t), *assign_t.items()):
                est = state["column_sums"][name]
                est.mul_(SIZE_MOMENTUM).add_(p.detach().mean(0), alpha=1.0 - SIZE_MOMENTUM)
                sums[name] = est
        q_out = srdc_auxiliary_distribution(p_t, detach=o.srdc_detach_q, column_sums=sums.get("out"))
        terms = {
            "source_ce": weighted_cross_entropy(logits_s, ys, weights),
            "target_out": lam * soft_cross_entropy(q_out, p_t),
        }
        for name, fs, ft, centre in (("f1", f1_s, f1_t, self.centres[0]), ("f2", f2_s, f2_t, self.centres[1])):
            a_t = assign_t[name]
            a_s = student_t_assignment(fs, centre, normalise=o.srdc_assignment)
            q_t = srdc_auxiliary_distribution(a_t, detach=o.srdc_detach_q, column_sums=sums.get(name))
            terms[f"target_{name}"] = lam * soft_cross_entropy(q_t, a_t)
            terms[f"source_{name}"] = lam * soft_cross_entropy(onehot, a_s, weights=weights)
        return terms


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean over items of ``w_i * CE(logits_i, y_i)`` (plain cross-entropy without weights)."""
    per_item = F.cross_entropy(logits, labels, reduction="none")
    return (per_item * weights).mean() if weights is not None else per_item.mean()

