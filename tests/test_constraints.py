"""Answers about pairs of images: closure, contradictions, implied pair targets, the CSV file, the graph."""

import numpy as np
import pytest
import scipy.sparse as sp

from l2c_explorer.constraints import (
    Answer,
    ConstraintSet,
    ContradictionError,
    constrained_graph,
    memberships,
    parse_constraints_csv,
    read_constraints_csv,
    write_constraints_csv,
)
from l2c_explorer.errors import InputError

PATHS = [f"char{c}/img{i}.png" for c in range(3) for i in range(4)]  # 12 images, 3 categories of 4


def two_cliques(size: int = 6, bridge: bool = True) -> sp.csr_matrix:
    """Two cliques of ``size`` images (0..size-1, size..2size-1), joined by one edge when ``bridge``."""
    n = 2 * size
    dense = np.zeros((n, n))
    dense[:size, :size] = 1
    dense[size:, size:] = 1
    np.fill_diagonal(dense, 0)
    if bridge:
        dense[size - 1, size] = dense[size, size - 1] = 1
    return sp.csr_matrix(dense)


def test_must_links_are_transitive_and_cannot_links_cover_components():
    cs = ConstraintSet(6, [(0, 1, 1), (1, 2, 1), (3, 4, 0), (2, 3, 0)])
    assert cs.known(0, 2) is True  # 0 = 1 = 2
    assert cs.known(0, 3) is False  # 0 = 2 and 2 != 3
    assert cs.known(4, 5) is None and cs.known(0, 5) is None
    assert cs.component[0] == cs.component[1] == cs.component[2] != cs.component[3]
    assert cs.min_clusters() == 2  # {0,1,2} != 3 != 4, but 4 and {0,1,2} may be one category


def test_min_clusters_counts_a_clique_of_differences():
    cs = ConstraintSet(4, [(0, 1, 0), (0, 2, 0), (1, 2, 0), (2, 3, 1)])
    assert cs.min_clusters() == 3 and cs.known(3, 0) is False and cs.known(3, 1) is False
    assert ConstraintSet(4, []).min_clusters() == 1


def test_a_contradiction_names_the_chain_of_same_answers():
    cs = ConstraintSet(12, [(0, 4, 1), (4, 8, 1)], names=PATHS)
    with pytest.raises(ContradictionError) as err:
        cs.with_answer(Answer(0, 8, False))
    message = str(err.value)
    assert PATHS[0] in message and PATHS[8] in message and PATHS[4] in message and "different" in message
    with pytest.raises(ContradictionError, match="differ from itself"):
        ConstraintSet(12, [(3, 3, 0)], names=PATHS)
    assert len(cs) == 2  # the refused answer was not added


def test_undo_removes_the_last_answer_only():
    cs = ConstraintSet(5).with_answer(Answer(0, 1, True)).with_answer(Answer(1, 2, False))
    back = cs.without_last()
    assert len(back) == 1 and back.known(0, 1) is True and back.known(1, 2) is None


def test_pair_targets_follow_the_closure():
    cs = ConstraintSet(5, [(0, 1, 1), (1, 2, 0)])
    t = cs.pair_targets()
    expected = np.zeros((5, 5))
    expected[0, 1] = expected[1, 0] = 1
    for i in (0, 1):
        expected[i, 2] = expected[2, i] = -1
    assert np.array_equal(t, expected)  # small integers: exact in float32
    sub = cs.pair_targets(np.array([2, 0, 4]))
    assert np.array_equal(sub, expected[np.ix_([2, 0, 4], [2, 0, 4])])


def test_violations_are_counted():
    cs = ConstraintSet(4, [(0, 1, 1), (2, 3, 0)])
    assert cs.violated_must(np.array([0, 1, 2, 2])) == 1 and cs.violated_cannot(np.array([0, 1, 2, 2])) == 1
    assert cs.violated_must(np.array([0, 0, 1, 2])) == 0 and cs.violated_cannot(np.array([0, 0, 1, 2])) == 0


def test_answers_are_checked():
    with pytest.raises(InputError, match="only 3 images"):
        ConstraintSet(3, [(0, 5, 1)])
    with pytest.raises(InputError, match="1 .same category. or 0"):
        ConstraintSet(3, [(0, 1, 2)])


def test_csv_round_trip(tmp_path):
    answers = [Answer(0, 5, True), Answer(2, 9, False)]
    path = write_constraints_csv(tmp_path / "answers.csv", answers, PATHS)
    assert path.read_text().splitlines()[0] == "path_a,path_b,same"
    assert read_constraints_csv(path, PATHS) == answers


@pytest.mark.parametrize("text, message", [
    ("path_a,path_b,same\nchar0/img0.png,char1/img0.png,yes\n", "line 2: 'same' must be 1"),
    ("path_a,path_b,same\nchar0/img0.png,char1/img0.png\n", "line 2: expected 3 columns"),
    ("path_a,path_b\nchar0/img0.png,char1/img0.png\n", "header must be path_a,path_b,same"),
    ("path_a,path_b,same\nchar0/img0.png,nowhere.png,1\nelsewhere.png,char0/img1.png,0\n",
     "2 path.s. are not images of this folder: elsewhere.png, nowhere.png"),
])
def test_bad_csv_files_get_clear_messages(text, message):
    with pytest.raises(InputError, match=message):
        parse_constraints_csv(text, PATHS)


def test_csv_without_header_and_with_blank_lines():
    answers = parse_constraints_csv("char0/img0.png,char0/img1.png,1\n\n char2/img3.png , char1/img0.png,0\n", PATHS)
    assert answers == [Answer(0, 1, True), Answer(11, 4, False)]


def test_missing_csv_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_constraints_csv(tmp_path / "nope.csv", PATHS)


def test_memberships_stay_inside_a_group():
    graph = two_cliques()
    m = memberships(graph, np.array([0, 11]))
    assert m.shape == (12, 2) and m[0, 0] == 1.0 and m[11, 1] == 1.0
    assert m[1:5, 0].min() > 2 * m[7:, 0].max()  # own clique far above the other one
    assert m[7:11, 1].min() > 2 * m[:5, 1].max()


def test_a_different_answer_cuts_the_bridge_and_a_same_answer_links_the_groups():
    graph = two_cliques()
    cut = constrained_graph(graph, ConstraintSet(12, [(0, 11, 0)]))
    assert cut[5, 6] < 0.5 * graph[5, 6] and cut[0, 1] > 0.5  # the bridge is weakened, the cliques stay
    assert abs(cut - cut.T).max() == 0
    apart = two_cliques(bridge=False)
    linked = constrained_graph(apart, ConstraintSet(12, [(0, 11, 1)]))
    assert linked[0, 11] == 1.0 and linked[:6, 6:].nnz > 6  # many links between the two neighbourhoods
    from scipy.sparse.csgraph import connected_components

    assert connected_components(apart)[0] == 2 and connected_components(linked)[0] == 1
    assert linked.max() <= 1.0


def test_different_components_lose_every_direct_edge():
    graph = two_cliques()
    g = constrained_graph(graph, ConstraintSet(12, [(5, 4, 1), (6, 7, 1), (4, 7, 0)]))
    assert g[5, 6] == 0 and g[4, 6] == 0 and g[4, 5] == 1.0
