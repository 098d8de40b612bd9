"""Answers about pairs of images: closure, contradictions, the CSV file, answers applied to a clustering."""

import numpy as np
import pytest
import scipy.sparse as sp

from l2c_explorer.constraints import (
    Answer,
    ConstraintSet,
    ContradictionError,
    apply_answers,
    check_answers_file,
    parse_constraints_csv,
    read_constraints_csv,
    spread_labels,
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


def three_groups():
    """Three cliques of 6 images (0-5, 6-11, 12-17) and unit features: one direction per clique, a little
    spread so that each clique has one most typical image (its first)."""
    graph = sp.block_diag([two_cliques(bridge=True), two_cliques(size=3, bridge=False)]).tocsr()
    # images 0-5 and 6-11: one clique each, joined by a bridge; 12-14 and 15-17: two small cliques
    rng = np.random.default_rng(0)
    directions = np.eye(4)[[0] * 6 + [1] * 6 + [2] * 3 + [3] * 3]
    emb = directions + 0.05 * rng.standard_normal(directions.shape)
    emb[[0, 6, 12, 15]] = np.eye(4)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return graph, emb


def test_label_spreading_follows_the_links():
    graph = two_cliques()
    side = spread_labels(graph, np.arange(12), [np.array([0]), np.array([11])])
    assert side.tolist() == [0] * 6 + [1] * 6
    # only the members given count: the other clique is out of reach
    assert spread_labels(graph, np.arange(6), [np.array([0]), np.array([5])])[[0, 5]].tolist() == [0, 1]


def test_a_different_answer_splits_a_merged_group_and_nothing_else_moves():
    graph, emb = three_groups()
    labels = np.array([0] * 12 + [1] * 3 + [2] * 3)  # the first group is two categories
    out = apply_answers(graph, emb, labels, ConstraintSet(18, [(0, 11, 0)]))
    assert out[:6].tolist() == [out[0]] * 6 and out[6:12].tolist() == [out[11]] * 6 and out[0] != out[11]
    assert len(np.unique(out)) == 4 and len(np.unique(out[12:15])) == 1 and len(np.unique(out[15:])) == 1


def test_same_for_typical_images_merges_otherwise_moves():
    graph, emb = three_groups()
    labels = np.array([0] * 6 + [1] * 6 + [2] * 3 + [3] * 3)
    merged = apply_answers(graph, emb, labels, ConstraintSet(18, [(12, 15, 1)]))  # the two typical images
    assert len(set(merged[12:].tolist())) == 1 and len(np.unique(merged)) == 3
    moved = apply_answers(graph, emb, labels, ConstraintSet(18, [(13, 15, 1)]))  # 13 is not typical
    assert moved[13] == moved[15] and moved[12] == moved[14] != moved[15] and len(np.unique(moved)) == 4
    # a "same" answer between two groups said to differ moves, never merges
    kept = apply_answers(graph, emb, labels, ConstraintSet(18, [(13, 16, 0), (12, 15, 1)]))
    assert kept[12] == kept[15] and kept[13] != kept[16]


def test_every_answer_holds_with_its_consequences():
    graph, emb = three_groups()
    labels = np.array([0] * 12 + [1] * 3 + [2] * 3)
    answers = [(1, 7, 1), (7, 13, 1), (2, 3, 0), (16, 17, 0), (0, 11, 0)]
    cs = ConstraintSet(18, answers)
    out = apply_answers(graph, emb, labels, cs)
    assert cs.violated_must(out) == 0 and cs.violated_cannot(out) == 0
    assert out[1] == out[7] == out[13]
    assert np.array_equal(apply_answers(graph, emb, labels, ConstraintSet(18, [])), labels)


def test_pair_matrix_holds_the_answers_with_their_consequences():
    cs = ConstraintSet(8, [(0, 1, 1), (1, 2, 1), (2, 5, 0), (6, 7, 1)])
    m = cs.pair_matrix().toarray()
    assert m.shape == (8, 8) and np.array_equal(m, m.T)
    chain = [0, 1, 2]
    assert (m[np.ix_(chain, chain)] == 1 - np.eye(3)).all()  # "same" closes transitively
    assert (m[chain, 5] == -1).all()  # "different" holds for the whole chain
    assert m[6, 7] == 1 and m[6, 5] == 0 and m[0, 6] == 0  # nothing said: nothing assumed
    assert m[3].sum() == 0 and m[4].sum() == 0
    assert ConstraintSet(8).pair_matrix().nnz == 0


def test_the_kind_of_question_answered_goes_through_the_answers_file(tmp_path):
    from l2c_explorer.constraints import Answer, read_constraints_csv, write_constraints_csv

    paths = ["c0/a.png", "c0/b.png", "c1/a.png"]
    answers = [Answer(0, 1, True, "split"), Answer(1, 2, False, "merge"), Answer(0, 2, False)]
    path = write_constraints_csv(tmp_path / "answers.csv", answers, paths)
    assert path.read_text().splitlines()[0] == "path_a,path_b,same,kind"
    back = read_constraints_csv(path, paths)
    assert back == answers and [x.kind for x in back] == ["split", "merge", None]
    # the questions' own file with a "same" column added, in any order of columns
    (tmp_path / "q.csv").write_text("path_a,path_b,kind,same\nc0/a.png,c1/a.png,member,0\n")
    assert read_constraints_csv(tmp_path / "q.csv", paths) == [Answer(0, 2, False, "member")]
    assert read_constraints_csv(tmp_path / "q.csv", paths)[0].kind == "member"


@pytest.mark.parametrize("content, message", [
    ("path_a,path_b,same\nnowhere/a.png,nowhere/b.png,1\n", "not images of this folder: nowhere/a.png"),
    ("path_a,path_b,same\n{a},{b},maybe\n", "'same' must be 1"),
    ("path_a,path_b,same\n{a},{b},1\n{b},{c},1\n{a},{c},0\n", "Contradictory answers"),
])
def test_an_answers_file_is_checked_against_the_folder_before_any_work(tmp_path, keble_subset, content, message):
    """Before the folder is clustered: a path not in it, a bad value or contradictory answers are refused;
    a good file passes (and nothing in the folder changes)."""
    files = sorted(p.relative_to(keble_subset).as_posix() for p in keble_subset.rglob("*.png"))
    answers = tmp_path / "answers.csv"
    answers.write_text(content.format(a=files[0], b=files[1], c=files[2]))
    with pytest.raises(InputError, match=message):
        check_answers_file(answers, keble_subset)
    answers.write_text(f"path_a,path_b,same\n{files[0]},{files[1]},1\n{files[0]},{files[40]},0\n")
    check_answers_file(answers, keble_subset)
    assert sorted(p.relative_to(keble_subset).as_posix() for p in keble_subset.rglob("*.png")) == files
