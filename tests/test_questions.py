"""Choosing questions: splits of groups that fall apart, merges of close groups, unsure members; never a
pair whose answer is known."""

import numpy as np
import scipy.sparse as sp

from l2c_explorer.constraints import ConstraintSet
from l2c_explorer.questions import next_questions, representative, split_in_two


def cliques(sizes, bridges=()):
    """Disjoint cliques of the given sizes (images numbered clique after clique), plus bridge edges."""
    n = sum(sizes)
    dense = np.zeros((n, n))
    start = 0
    for s in sizes:
        dense[start : start + s, start : start + s] = 1
        start += s
    for i, j in bridges:
        dense[i, j] = dense[j, i] = 1
    np.fill_diagonal(dense, 0)
    return sp.csr_matrix(dense)


def embedding_of(groups, d=16, spread=0.05, seed=0):
    """Unit features: one random direction per group, members scattered a little around it."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(groups) + 1, d))
    x = centres[np.asarray(groups)] + spread * rng.standard_normal((len(groups), d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def one_hot(labels, k):
    p = np.full((len(labels), k), 0.05 / max(k - 1, 1))
    p[np.arange(len(labels)), labels] = 0.95
    return p


def test_split_in_two_finds_the_bridge():
    graph = cliques([6, 8], bridges=[(5, 6)])
    members = np.arange(14)
    half, ncut = split_in_two(graph, members)
    assert sorted(map(sorted, [members[half].tolist(), members[~half].tolist()])) == [list(range(6)),
                                                                                      list(range(6, 14))]
    _, tight = split_in_two(cliques([14]), members)
    assert ncut < tight  # two loosely linked parts cut far more cheaply than one clique


def test_representative_is_the_most_central():
    emb = embedding_of([0] * 5 + [1])
    assert representative(emb, np.arange(5)) in range(5)
    x = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8]], dtype=np.float32)
    assert representative(x, np.arange(3)) == 1


def test_a_merged_group_is_asked_to_split_first():
    # truth: three groups of 8; the clustering merged the last two (labels 0 0 ... 1 1 ...)
    truth = [0] * 8 + [1] * 8 + [2] * 8
    emb = embedding_of(truth)
    graph = cliques([8, 8, 8], bridges=[(15, 16), (14, 17)])
    labels = np.array([0] * 8 + [1] * 16)
    q = next_questions(emb, graph, labels, one_hot(labels, 2), ConstraintSet(24), scale=10.0, bias=-5.0, n=3)
    assert q[0].kind == "split" and q[0].groups == (1,)
    assert {truth[q[0].a], truth[q[0].b]} == {1, 2}  # one typical image of each half
    assert len({(x.a, x.b) for x in q}) == len(q)


def test_two_halves_of_one_category_are_asked_to_merge():
    truth = [0] * 8 + [1] * 8
    emb = embedding_of([0] * 16, spread=0.02)  # one category ...
    graph = cliques([8, 8], bridges=[(7, 8), (6, 9), (5, 10)])
    labels = np.array([0] * 8 + [1] * 8)  # ... found as two groups
    q = next_questions(emb, graph, labels, one_hot(labels, 2), ConstraintSet(16), scale=10.0, bias=-5.0, n=5,
                       kinds=("merge",))
    assert q[0].kind == "merge" and set(q[0].groups) == {0, 1} and truth[q[0].a] != truth[q[0].b]


def test_known_pairs_and_settled_groups_are_not_asked_again():
    truth = [0] * 8 + [1] * 8 + [2] * 8
    emb = embedding_of(truth)
    graph = cliques([8, 8, 8], bridges=[(15, 16), (14, 17)])
    labels = np.array([0] * 8 + [1] * 16)
    probs = one_hot(labels, 2)
    first = next_questions(emb, graph, labels, probs, ConstraintSet(24), scale=10.0, bias=-5.0)[0]
    # the person says the two halves are one category: that split is not proposed again
    said_same = ConstraintSet(24, [(first.a, first.b, 1)])
    again = next_questions(emb, graph, labels, probs, said_same, scale=10.0, bias=-5.0, n=20)
    assert all(not (q.kind == "split" and q.groups == (1,)) for q in again)
    for q in again:
        assert said_same.known(q.a, q.b) is None
    # answers imply pairs through the closure: none of those is asked either
    chain = ConstraintSet(24, [(0, 1, 1), (1, 2, 1), (2, 8, 0)])
    for q in next_questions(emb, graph, labels, probs, chain, scale=10.0, bias=-5.0, n=50):
        assert chain.known(q.a, q.b) is None


def test_batches_spread_over_groups():
    truth = np.repeat(np.arange(6), 6)
    emb = embedding_of(truth.tolist(), spread=0.3)
    graph = cliques([6] * 6, bridges=[(5, 6), (11, 12), (17, 18), (23, 24), (29, 30)])
    labels = truth // 2  # three groups, each two categories
    q = next_questions(emb, graph, labels, one_hot(labels, 3), ConstraintSet(36), scale=10.0, bias=-5.0, n=3,
                       kinds=("split",))
    assert sorted(x.groups[0] for x in q) == [0, 1, 2]


def test_a_large_group_is_split_on_a_sample(monkeypatch):
    import l2c_explorer.questions as questions

    graph = cliques([30, 30], bridges=[(29, 30)])
    emb = embedding_of([0] * 30 + [1] * 30)
    whole = questions.group_split(graph, emb, np.arange(60))
    monkeypatch.setattr(questions, "SPLIT_SAMPLE", 20)
    first, second, a, b, _ = questions.group_split(graph, emb, np.arange(60))
    assert {tuple(sorted(first)), tuple(sorted(second))} == {tuple(range(30)), tuple(range(30, 60))}
    assert {tuple(sorted(whole[0])), tuple(sorted(whole[1]))} == {tuple(range(30)), tuple(range(30, 60))}
    assert (a < 30) != (b < 30)


def test_a_group_without_inner_links_still_splits_in_two():
    """A group whose images have no link among themselves (images moved there by answers) gets two
    non-empty halves, not an empty one."""
    graph = sp.csr_matrix((6, 6))
    half, ncut = split_in_two(graph, np.arange(6))
    assert half.sum() == 3 and ncut == 1.0


def test_each_kind_of_question_learns_from_its_answers_how_often_it_changes_the_groups():
    from l2c_explorer.constraints import Answer
    from l2c_explorer.questions import kind_bias_shifts

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 8))
    emb[20:] = emb[:20] + 0.6 * rng.normal(size=(20, 8))  # pairs (i, i + 20) fairly alike: cosines about 0.8
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    pairs = [(i, i + 20) for i in range(6)]
    # no answers, or answers without a kind (from a file): nothing shifts
    assert set(kind_bias_shifts(emb, ConstraintSet(40), scale=10.0, bias=-5.0).values()) == {0.0}
    untold = ConstraintSet(40, [Answer(a, b, False) for a, b in pairs])
    assert set(kind_bias_shifts(emb, untold, scale=10.0, bias=-5.0).values()) == {0.0}
    # merge questions answered "different" where the model expected "same": merge pairs get less likely,
    # the other kinds keep the model's calibration
    merges = ConstraintSet(40, [Answer(a, b, False, "merge") for a, b in pairs])
    shift = kind_bias_shifts(emb, merges, scale=10.0, bias=-5.0)
    assert shift["merge"] < -1.0 and shift["split"] == shift["member"] == 0.0
    # split questions answered "same" make split pairs more likely the same; a stronger prior moves less
    splits = ConstraintSet(40, [Answer(a, b, True, "split") for a, b in pairs[:3]])
    assert kind_bias_shifts(emb, splits, scale=4.0, bias=-3.0)["split"] > \
        kind_bias_shifts(emb, splits, scale=4.0, bias=-3.0, prior_answers=100.0)["split"] > 0.0


def test_merge_questions_answered_different_score_lower_for_the_rest_of_the_folder():
    from l2c_explorer.constraints import Answer

    emb = embedding_of([0] * 16 + [1] * 16, spread=0.02)  # two categories ...
    graph = cliques([8, 8, 8, 8], bridges=[(7, 8), (23, 24)])
    labels = np.repeat(np.arange(4), 8)  # ... each found as two groups
    args = dict(scale=10.0, bias=-5.0, n=5, kinds=("merge",))
    fresh = next_questions(emb, graph, labels, one_hot(labels, 4), ConstraintSet(32), **args)
    # the person said "different" to three merge questions about groups 0 and 1
    told = ConstraintSet(32, [Answer(i, 8 + i, False, "merge") for i in range(3)])
    after = next_questions(emb, graph, labels, one_hot(labels, 4), told, **args)
    other = [q for q in after if set(q.groups) == {2, 3}]
    assert other and other[0].score < [q for q in fresh if set(q.groups) == {2, 3}][0].score


def test_a_batch_asks_once_about_each_suspected_mix_up_of_two_groups():
    # groups 0 and 1 share four unsure images (each as likely in the other group); groups 2 and 3 share one
    truth = np.repeat(np.arange(4), 8)
    emb = embedding_of(truth.tolist(), spread=0.3)
    graph = cliques([8] * 4)
    labels = truth.copy()
    probs = one_hot(labels, 4)
    for i in (0, 1, 2, 3):
        probs[i] = [0.5, 0.45, 0.025, 0.025]
    probs[16] = [0.025, 0.025, 0.5, 0.45]
    batch = next_questions(emb, graph, labels, probs, ConstraintSet(32), scale=10.0, bias=-5.0, n=5,
                           kinds=("member",))
    mix_ups = [frozenset(q.groups) for q in batch]
    assert len(mix_ups) == len(set(mix_ups))
    assert frozenset((0, 1)) in mix_ups and frozenset((2, 3)) in mix_ups
    # asked one at a time, the question is the batch's first
    first = next_questions(emb, graph, labels, probs, ConstraintSet(32), scale=10.0, bias=-5.0, n=1,
                           kinds=("member",))[0]
    assert (first.a, first.b) == (batch[0].a, batch[0].b)


def test_a_split_is_asked_first_of_the_group_whose_halves_are_least_linked():
    from l2c_explorer.questions import split_difference_probability

    # the same two kinds of drawings in each group (same pair probability of the halves' typical images),
    # but group 1's halves are linked by one edge, group 0's by many: group 1 more likely holds two categories
    emb = embedding_of([0] * 8 + [1] * 8 + [0] * 8 + [1] * 8, spread=0.05)
    bridges = [(i, 8 + j) for i in range(8) for j in range(8) if (i + j) % 2 == 0] + [(23, 24)]
    graph = cliques([8, 8, 8, 8], bridges=bridges)
    labels = np.repeat([0, 1], 16)
    q = next_questions(emb, graph, labels, one_hot(labels, 2), ConstraintSet(32), scale=10.0, bias=-5.0, n=2,
                       kinds=("split",))
    assert [x.groups for x in q] == [(1,), (0,)] and q[0].score > q[1].score
    # the probability falls as the cut grows and as the pair model says "same" more strongly
    assert split_difference_probability(0.0, 0.05) > split_difference_probability(0.0, 0.8)
    assert split_difference_probability(-3.0, 0.3) > split_difference_probability(3.0, 0.3)


def test_group_link_shares_are_the_links_between_groups_over_the_smaller_volume():
    from l2c_explorer.questions import group_link_shares

    rng = np.random.default_rng(0)
    dense = rng.random((12, 12)) * (rng.random((12, 12)) < 0.4)
    dense = np.triu(dense, 1) + np.triu(dense, 1).T
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2])
    shares = group_link_shares(sp.csr_matrix(dense), labels)
    volume = [dense[labels == c].sum() for c in range(3)]
    for c in range(3):
        for d in range(3):
            between = dense[np.ix_(labels == c, labels == d)].sum()
            assert np.isclose(shares[c, d], between / min(volume[c], volume[d]), rtol=1e-9)


def test_a_merge_is_asked_first_of_the_groups_most_linked_to_each_other():
    from l2c_explorer.questions import merge_same_probability

    # four groups, two pairs of them equally alike (same pair probability of their typical images), but
    # groups 0 and 1 share many links where 2 and 3 share one: 0 and 1 are more likely one category
    emb = embedding_of([0] * 8 + [0] * 8 + [1] * 8 + [1] * 8, spread=0.05)
    bridges = [(i, 8 + j) for i in range(8) for j in range(8) if (i + j) % 2 == 0] + [(23, 24)]
    graph = cliques([8, 8, 8, 8], bridges=bridges)
    labels = np.repeat([0, 1, 2, 3], 8)
    q = next_questions(emb, graph, labels, one_hot(labels, 4), ConstraintSet(32), scale=10.0, bias=-5.0, n=2,
                       kinds=("merge",))
    assert [x.groups for x in q] == [(0, 1), (2, 3)] and q[0].score > q[1].score
    assert merge_same_probability(0.0, 0.5) > merge_same_probability(0.0, 0.01)
    assert merge_same_probability(3.0, 0.1) > merge_same_probability(-3.0, 0.1)
