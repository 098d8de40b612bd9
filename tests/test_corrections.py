"""Answers applied to clusters, K kept, and what a refit starts from."""

import numpy as np
import scipy.sparse as sp

from l2c_explorer.constraints import ConstraintSet
from l2c_explorer.corrections import AnswerHistory, corrected_labels, keep_k


def three_groups():
    rng = np.random.default_rng(0)
    centres = np.eye(6)[:3] + np.array([0, 0, 0, 0.0, 0, 0])
    centres[1] = 0.9 * np.eye(6)[0] + 0.44 * np.eye(6)[1]  # groups 0 and 1 are the closest
    emb = np.concatenate([c + 0.02 * rng.normal(size=(5, 6)) for c in centres])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb.astype(np.float32), np.repeat([0, 1, 2], 5)


def test_keep_k_merges_the_closest_groups_no_answer_separates():
    emb, labels = three_groups()
    merged = keep_k(labels, emb, ConstraintSet(15), 2)
    assert merged.max() == 1 and len(set(merged[:10].tolist())) == 1 and merged[10] != merged[0]
    # "different" between groups 0 and 1: the next closest pair merges instead
    apart = keep_k(labels, emb, ConstraintSet(15, [(0, 5, 0)]), 2)
    assert apart.max() == 1 and apart[0] != apart[5]
    assert np.array_equal(keep_k(labels, emb, ConstraintSet(15), 3), labels)


def test_corrected_labels_apply_a_same_answer_and_keep_k():
    emb, labels = three_groups()
    graph = sp.csr_matrix(np.kron(np.eye(3), np.ones((5, 5))) - np.eye(15))
    cs = ConstraintSet(15, [(12, 3, 1)])  # a typical image of group 2 is said to be like one of group 1
    free = corrected_labels(graph, emb, labels, cs)
    assert free[12] == free[3]
    kept = corrected_labels(graph, emb, labels, cs, n_clusters=2)
    assert kept.max() <= 1 and kept[12] == kept[3]


def test_answer_history_drops_relearnings_whose_answers_were_taken_back():
    history = AnswerHistory({"name": "base"})
    a, b, c = (0, 1, True), (2, 3, False), (4, 5, True)
    assert history.start_for([a]) == {"name": "base"} and history.relearnings == []
    history.add_relearning([a], {"name": "first"})
    history.add_relearning([a, b], {"name": "second"})
    assert history.relearnings == [1, 2]
    assert history.start_for([a, b, c]) == {"name": "second"}
    assert history.start_for([a, c]) == {"name": "first"} and history.relearnings == [1]
    assert history.start_for([]) == {"name": "base"} and history.relearnings == []
