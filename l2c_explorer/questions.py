"""Which questions to ask a person next: the pairs of images whose answer would change the clusters most.

Every question is a pair of images, "do these two show the same category?", so that any answer is one
must-link or cannot-link (:mod:`l2c_explorer.constraints`) and a script can answer from a file. Three kinds
of pairs are worth a person's time, each scored by the number of images its likely answer would move:

* **split** ("is this group one category?"): a group whose own graph falls apart in two (its best
  normalised cut, :func:`split_in_two`) may be two categories merged; the pair is the most typical image
  of each half. A "different" answer splits the group: about the smaller half changes.
* **merge** ("are these two groups one category?"): two groups close to each other (by their mean
  features); the pair is their most typical images. A "same" answer merges them: the smaller group moves.
* **member** ("does this image belong there?"): an image the clustering is least sure about, with the
  most typical image of the group it almost joined. A "same" answer moves it.

The score of a question is the probability of its changing answer (from the similarity model's pair
probability, sigmoid(scale * cos + bias), of the two images shown, its bias shifted for each kind of question
by the answers to that kind so far: :func:`kind_bias_shifts`; for a split, combined with how loosely the
group's two halves are linked, :func:`split_difference_probability`; for a merge, with how much the two
groups are linked, :func:`merge_same_probability`) times the images that would move. A
pair whose answer follows from the answers so far is never asked, nor a group question already settled
(a group whose halves are said to be the same, two groups said to be different). A batch of questions (for a
person answering several in one sitting) asks about each group once for splits and merges, and about each
suspected mix-up of two groups once (a merge question, or one stray image between them).

Pure numpy on the clusterer's arrays; :meth:`l2c_explorer.clustering.L2CClusterer.questions` calls
:func:`next_questions` on a fitted run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .constraints import ConstraintSet
from .groups import group_directions, representative, same_logit, same_probability

KINDS = ("split", "merge", "member")
# Groups each group is compared with for merge questions, and how many of the least certain images are
# considered for member questions. Not tuned: enough to cover every near neighbour of a group, few enough
# to score in milliseconds.
MERGE_NEIGHBOURS = 3
MEMBER_CANDIDATES = 100
# How many answers the similarity model's own calibration of P(same) is worth once the answers to a kind of
# question recalibrate it (kind_bias_shifts): a weak prior, so that a few answers to one kind already move it.
# Chosen with benchmarks/questions_prior.py on the 5 validation alphabets of background fold 5 with that fold's
# 48x48 model (never the evaluation alphabets; it was first chosen on the development alphabets, then re-checked
# here): mean ACC after 10 / 25 / 50 answers, no learning 92.2 / 92.4 / 93.3%, prior 2: 92.2 / 92.6 / 93.1,
# 4: 92.2 / 92.5 / 93.6, 8: 92.3 / 92.5 / 93.6; 4 and 8 tie, and 4 stays (the weaker prior learns faster).
PRIOR_ANSWERS = 4.0
# P(a split question is answered "different") = sigmoid(w_pair * pair logit + w_cut * normalised cut + intercept):
# the similarity model's logit of P(same) for the two images shown, and the normalised cut of the proposed split
# (a small cut: two loosely linked parts), combined by logistic regression on the groups of the first
# clusterings of Omniglot background alphabets held out from their fold's model (benchmarks/questions_split.py;
# never the evaluation alphabets). Refitted for this version's discovery (the 48x48 model, the sharpened K rule
# at 0.6; fold models retrained): 476 groups of 15 alphabets (folds 3-5), 35 of them two categories at their
# split. Scored on each alphabet with weights fitted on the others, the combination ranks those 35 first with
# ROC-AUC 0.861, the pair model alone 0.854 (what split questions used before), the cut alone 0.839. (Fitted
# on the first clusterings of the earlier version: 468 groups, 45 of them two; 0.929 / 0.865 / 0.896.)
SPLIT_WEIGHTS = (-0.901, -5.319, 2.160)
# P(a merge question is answered "same") = sigmoid(w_pair * pair logit + w_link * link share + intercept): the
# similarity model's logit for the two groups' typical images, and the share of the smaller group's links
# (graph weight) that go to the other group (:func:`group_link_shares`: two halves of one category stay
# linked). Fitted like SPLIT_WEIGHTS on the merge questions the same first clusterings offer
# (benchmarks/questions_split.py, its merge table): of 896, only 10 (1.1%) would be answered "same" where the
# pair model alone expects 7.5% (a first clustering seldom cuts a category in two), so the intercept carries
# most of the fit; the link share alone ranks those 10 first with ROC-AUC 0.93 (the pair model 0.86). (The
# earlier version's first clusterings: 4 of 867, pair model 6.8%.)
MERGE_WEIGHTS = (0.640, 4.602, -3.115)
# A group larger than this is split on a seeded sample of its members (the others join the half they have
# more links to), so that proposing a split never builds a matrix larger than this squared.
SPLIT_SAMPLE = 1500
WORDS = {
    "split": "Is this group one category? (the most typical image of each half of it)",
    "merge": "Are these two groups one category? (the most typical image of each)",
    "member": "Does this image belong with this group? (the image, and the group's most typical image)",
}


@dataclass
class Question:
    """A pair of images to ask about, and why.

    Attributes
    ----------
    a, b : int
        The two images (indices).
    kind : {"split", "merge", "member"}
    score : float
        Expected number of images whose cluster the answer changes.
    groups : tuple of int
        The clusters the question is about (one for a split, two otherwise).
    halves : tuple of ndarray, optional
        For a split: the members of each proposed half (``a`` is in the first, ``b`` in the second).
    """

    a: int
    b: int
    kind: str
    score: float
    groups: tuple[int, ...] = ()
    halves: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def text(self) -> str:
        return WORDS[self.kind]


def pair_probability(embedding: np.ndarray, a, b, *, scale: float, bias: float) -> np.ndarray:
    """The similarity model's P(same) = sigmoid(scale * cos + bias) of images ``a`` and ``b`` (indices)."""
    cos = np.sum(embedding[np.asarray(a)] * embedding[np.asarray(b)], axis=-1)
    return same_probability(cos, scale=scale, bias=bias)


def kind_bias_shifts(embedding: np.ndarray, constraints: ConstraintSet, *, scale: float, bias: float,
                     prior_answers: float | None = None) -> dict[str, float]:
    """How far each kind of question's P(same) is off on this folder, learnt from the answers to that kind.

    The similarity model's P(same) = sigmoid(scale * cos + bias) is calibrated on random pairs of the images
    it was trained on. The pairs a kind of question shows are not random: the most typical images of two
    neighbouring groups are alike although their groups differ, so merge questions keep getting "different"
    when the model expected "same". For each kind, the answers to its questions (an :class:`Answer` with that
    ``kind``) fit a shift of the bias, maximum a posteriori under a Gaussian prior at 0 worth ``prior_answers``
    answers at p = 1/2 (Newton steps on one parameter). Kinds without answers are not shifted.

    Returns
    -------
    dict kind -> shift of the bias (0 for a kind without answers).
    """
    prior_answers = PRIOR_ANSWERS if prior_answers is None else prior_answers
    precision = prior_answers * 0.25
    shifts = {kind: 0.0 for kind in KINDS}
    for kind in KINDS:
        answered = [x for x in constraints.answers if x.kind == kind]
        if not answered:
            continue
        a = np.array([x.a for x in answered])
        b = np.array([x.b for x in answered])
        y = np.array([1.0 if x.same else 0.0 for x in answered])
        logits = same_logit(np.sum(embedding[a] * embedding[b], axis=1, dtype=np.float64), scale=scale, bias=bias)
        shift = 0.0
        for _ in range(50):
            p = 1.0 / (1.0 + np.exp(-(logits + shift)))
            step = (np.sum(p - y) + precision * shift) / (np.sum(p * (1 - p)) + precision)
            shift -= step
            if abs(step) < 1e-9:
                break
        shifts[kind] = float(shift)
    return shifts


def pair_logit(embedding: np.ndarray, a, b, *, scale: float, bias: float) -> np.ndarray:
    """The logit of the similarity model's P(same), scale * cos + bias, of images ``a`` and ``b`` (indices)."""
    return same_logit(np.sum(embedding[np.asarray(a)] * embedding[np.asarray(b)], axis=-1), scale=scale, bias=bias)


def split_difference_probability(pair_logit, ncut):
    """P(the two halves of a proposed split are different categories) (:data:`SPLIT_WEIGHTS`)."""
    w_pair, w_cut, intercept = SPLIT_WEIGHTS
    return 1.0 / (1.0 + np.exp(-(w_pair * np.asarray(pair_logit) + w_cut * np.asarray(ncut) + intercept)))


def merge_same_probability(pair_logit, link_share):
    """P(two groups are one category), the answer "same" to their merge question (:data:`MERGE_WEIGHTS`)."""
    w_pair, w_link, intercept = MERGE_WEIGHTS
    return 1.0 / (1.0 + np.exp(-(w_pair * np.asarray(pair_logit) + w_link * np.asarray(link_share) + intercept)))


def merge_candidates(embedding: np.ndarray, labels: np.ndarray) -> list[tuple[int, int]]:
    """Pairs of groups (c < d) worth a merge question: each group with its :data:`MERGE_NEIGHBOURS` nearest
    groups by mean direction (:func:`~l2c_explorer.groups.group_directions`), sorted."""
    centres = group_directions(embedding, labels)
    near = centres @ centres.T
    np.fill_diagonal(near, -np.inf)
    k = len(centres)
    return sorted({(min(c, int(d)), max(c, int(d))) for c in range(k) for d in np.argsort(-near[c])[:MERGE_NEIGHBOURS]})


def group_link_shares(graph: sp.spmatrix, labels: np.ndarray) -> np.ndarray:
    """Share of each pair of groups' links that join them: ``W[c, d] / min(vol c, vol d)``, shape (k, k).

    ``W[c, d]`` is the graph weight between the members of groups c and d, ``vol c`` the total weight of the
    links of c's members (to any image). One sparse product with the membership matrix, never a pair loop.
    """
    labels = np.asarray(labels)
    k = int(labels.max()) + 1 if len(labels) else 0
    membership = sp.csr_matrix((np.ones(len(labels)), (np.arange(len(labels)), labels)), shape=(len(labels), k))
    between = (membership.T @ sp.csr_matrix(graph, dtype=np.float64) @ membership).toarray()
    volume = between.sum(1)
    smaller = np.maximum(np.minimum(volume[:, None], volume[None, :]), 1e-12)
    return between / smaller


def split_in_two(graph: sp.spmatrix, members: np.ndarray) -> tuple[np.ndarray, float]:
    """The best two-way split of a group by its own graph: (mask over ``members``, normalised cut).

    The sweep over the group's Fiedler vector (second eigenvector of its normalised graph) that minimises
    the normalised cut ``cut / vol(A) + cut / vol(B)`` (Shi & Malik); both halves keep at least two images.
    Members without a link inside the group form the first half on their own (when no member has one, the
    first half of ``members``). A small cut says the group is two loosely linked parts.
    """
    sub = sp.csr_matrix(graph)[members][:, members].toarray().astype(np.float64)
    m = len(members)
    degree = sub.sum(1)
    if np.all(degree == 0):  # no links at all inside the group: halves in the given order
        return np.arange(m) < m // 2, 1.0
    if np.any(degree == 0):
        return degree == 0, 0.0
    scale = 1.0 / np.sqrt(degree)
    _, vectors = np.linalg.eigh(scale[:, None] * sub * scale[None, :])
    order = np.argsort(vectors[:, -2] * scale, kind="stable")
    # cut and volume of every prefix of the order, with matrix products instead of a loop
    indicator = np.tril(np.ones((m, m)))[:, np.argsort(order)]  # row t: the first t+1 images of the order
    inside = indicator @ sub  # (m, m): links from each image to each prefix
    vol_a = indicator @ degree
    cut = vol_a - np.einsum("ti,ti->t", inside, indicator)
    vol_b = degree.sum() - vol_a
    sizes = np.arange(1, m + 1)
    valid = (sizes >= 2) & (sizes <= m - 2)
    if not np.any(valid):
        half = np.zeros(m, dtype=bool)
        half[order[: m // 2]] = True
        return half, 1.0
    ncut = np.where(valid, cut / np.maximum(vol_a, 1e-12) + cut / np.maximum(vol_b, 1e-12), np.inf)
    t = int(np.argmin(ncut))
    half = np.zeros(m, dtype=bool)
    half[order[: t + 1]] = True
    return half, float(ncut[t])


def group_split(graph: sp.spmatrix, embedding: np.ndarray, members: np.ndarray):
    """The proposed split of a group: (half A, half B, typical image of A, of B, normalised cut)."""
    members = np.asarray(members)
    if len(members) > SPLIT_SAMPLE:
        sample = np.sort(np.random.default_rng(0).choice(len(members), SPLIT_SAMPLE, replace=False))
        half_of_sample, ncut = split_in_two(graph, members[sample])
        links = sp.csr_matrix(graph)[members][:, members[sample]]
        half = np.asarray(links @ half_of_sample.astype(np.float64)).ravel() > \
            np.asarray(links @ (~half_of_sample).astype(np.float64)).ravel()
        half[sample] = half_of_sample
        if half.all() or not half.any():
            half[sample] = half_of_sample
    else:
        half, ncut = split_in_two(graph, members)
    first, second = members[half], members[~half]
    return first, second, representative(embedding, first), representative(embedding, second), ncut


def next_questions(
    embedding: np.ndarray,
    graph: sp.spmatrix,
    labels: np.ndarray,
    probabilities: np.ndarray,
    constraints: ConstraintSet,
    *,
    scale: float,
    bias: float,
    n: int = 1,
    kinds: tuple[str, ...] = KINDS,
) -> list[Question]:
    """The ``n`` most informative questions about a clustering, best first, each about other groups.

    Parameters
    ----------
    embedding : ndarray of shape (n_images, d)
        Unit features of the images (the clusterer's ``embedding_``).
    graph : sparse matrix of shape (n_images, n_images)
        The similarity graph (the clusterer's ``graph_``).
    labels : ndarray of shape (n_images,)
    probabilities : ndarray of shape (n_images, n_clusters)
    constraints : ConstraintSet
        The answers so far: no question has an answer that follows from them.
    scale, bias : float
        The similarity model's pair head: P(same) = sigmoid(scale * cos + bias).
    """
    labels = np.asarray(labels)
    k = int(labels.max()) + 1 if len(labels) else 0
    # P(same) of each kind of question as the answers so far have shown it to be on this folder
    shift = kind_bias_shifts(embedding, constraints, scale=scale, bias=bias)
    groups = [np.flatnonzero(labels == c) for c in range(k)]
    reps = np.array([representative(embedding, g) if len(g) else -1 for g in groups])
    comp = constraints.component
    answered = constraints.constrained_images()

    def p_same(a, b, kind):
        return float(pair_probability(embedding, a, b, scale=scale, bias=bias + shift[kind]))

    found: list[Question] = []
    if "split" in kinds:
        for c, members in enumerate(groups):
            if len(members) < 4:
                continue
            first, second, ra, rb, ncut = group_split(graph, embedding, members)
            if np.intersect1d(comp[first], comp[second]).size:  # its halves were said to be one category
                continue
            logit = pair_logit(embedding, ra, rb, scale=scale, bias=bias + shift["split"])
            p_different = float(split_difference_probability(logit, ncut))
            found.append(Question(ra, rb, "split", p_different * min(len(first), len(second)), (c,), (first, second)))
    if "merge" in kinds and k > 1:
        settled = set()  # pairs of groups with a "different" answer between them
        for a, b in constraints.cannot_pairs().tolist():
            settled.add((min(labels[a], labels[b]), max(labels[a], labels[b])))
        links = group_link_shares(graph, labels)
        for c, d in merge_candidates(embedding, labels):
            if (c, d) in settled:
                continue
            logit = pair_logit(embedding, reps[c], reps[d], scale=scale, bias=bias + shift["merge"])
            p = float(merge_same_probability(logit, links[c, d]))
            found.append(Question(int(reps[c]), int(reps[d]), "merge", p * min(len(groups[c]), len(groups[d])), (c, d)))
    if "member" in kinds and k > 1:
        probs = np.asarray(probabilities)
        other = probs.copy()
        other[np.arange(len(labels)), labels] = -np.inf
        second = other.argmax(1)
        margin = probs[np.arange(len(labels)), labels] - other.max(1)
        candidates = [i for i in np.argsort(margin, kind="stable") if i not in set(answered.tolist())]
        for i in candidates[:MEMBER_CANDIDATES]:
            r = int(reps[second[i]])
            found.append(Question(int(i), r, "member", p_same(i, r, "member"), (int(labels[i]), int(second[i]))))

    found.sort(key=lambda q: (-q.score, q.a, q.b))
    chosen: list[Question] = []
    used_groups: set[int] = set()  # groups a chosen split or merge question is about
    # the mix-up each chosen merge or member question suspects (two groups): a batch asks about each once, as
    # one answer about it changes what the others would be worth
    suspected: set[frozenset[int]] = set()
    asked: set[tuple[int, int]] = set()
    for q in found:
        if q.a == q.b or constraints.known(q.a, q.b) is not None:
            continue
        key = (min(q.a, q.b), max(q.a, q.b))
        mix_up = frozenset(q.groups) if q.kind != "split" else None
        if key in asked or mix_up in suspected or (q.kind != "member" and used_groups & set(q.groups)):
            continue
        asked.add(key)
        if q.kind != "member":
            used_groups |= set(q.groups)
        if mix_up is not None:
            suspected.add(mix_up)
        chosen.append(q)
        if len(chosen) >= n:
            break
    return chosen
