"""A person's answers applied to a run's clusters, K kept when it was given, and what a refit starts from.

:func:`corrected_labels` is what :meth:`~l2c_explorer.clustering.L2CClusterer.refit` computes; an
:class:`AnswerHistory` holds the clusterings a refit can start from (the run's own and those of relearnings
still in effect), so that taking answers back undoes.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .constraints import ConstraintSet, apply_answers
from .groups import group_directions


def keep_k(labels: np.ndarray, embedding: np.ndarray, cs: ConstraintSet, n_clusters: int) -> np.ndarray:
    """With K given: merge the two most similar groups (mean directions of the unit ``embedding`` (n, d)) that no
    answer says differ until there are at most ``n_clusters`` groups. Labels (n,) -> labels (n,)."""
    labels = labels.copy()
    cannot = {(int(a), int(b)) for a, b in cs.cannot.tolist()}
    while labels.max() + 1 > n_clusters:
        k = int(labels.max()) + 1
        centres = group_directions(embedding, labels, k)
        near = centres @ centres.T
        np.fill_diagonal(near, -np.inf)
        comps = [set(cs.component[labels == g].tolist()) for g in range(k)]
        for flat in np.argsort(-near, axis=None, kind="stable"):
            g, h = divmod(int(flat), k)
            if g < h and not any((min(x, y), max(x, y)) in cannot for x in comps[g] for y in comps[h]):
                labels[labels == h] = g
                break
        else:  # cannot happen: min_clusters <= K was checked
            break
        _, labels = np.unique(labels, return_inverse=True)
    return labels


def corrected_labels(graph: sp.spmatrix, embedding: np.ndarray, labels: np.ndarray, cs: ConstraintSet,
                     n_clusters: int | None = None) -> np.ndarray:
    """The clusters ``labels`` (n,) as the answers ``cs`` change them (:func:`~l2c_explorer.constraints.apply_answers`
    on the similarity ``graph``), merged back to ``n_clusters`` groups when K was given (:func:`keep_k`)."""
    labels = apply_answers(graph, embedding, labels, cs)
    if n_clusters is not None:
        labels = keep_k(labels, embedding, cs, n_clusters)
    return labels


class AnswerHistory:
    """The clusterings a refit can start from: ``base`` (the run's own, before any answer) and, for each relearning
    still in effect, the answers it learnt from and the clustering it gave (oldest first). States are opaque
    snapshots (dicts) of the estimator's fitted clusters."""

    def __init__(self, base: dict):
        self.base = base
        self.relearnt: list[tuple[list, dict]] = []

    def start_for(self, answers: list) -> dict:
        """The clustering a refit with ``answers`` starts from: that of the latest relearning done with a first part
        of these answers (later relearnings, made with answers since taken back, are dropped), else the base."""
        while self.relearnt and answers[: len(self.relearnt[-1][0])] != self.relearnt[-1][0]:
            self.relearnt.pop()
        return self.relearnt[-1][1] if self.relearnt else self.base

    def add_relearning(self, answers: list, state: dict) -> None:
        """A relearning from ``answers`` gave the clustering ``state``."""
        self.relearnt.append((list(answers), state))

    @property
    def relearnings(self) -> list[int]:
        """How many answers each relearning still in effect learnt from, oldest first."""
        return [len(used) for used, _ in self.relearnt]
