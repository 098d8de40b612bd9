"""Teaching a finished run: refit with a person's answers, questions that fix it, on real Omniglot drawings."""

import shutil

import numpy as np
import pytest

from l2c_explorer.clustering import L2CClusterer
from l2c_explorer.constraints import Answer, ContradictionError, write_constraints_csv
from l2c_explorer.errors import InputError


# a run with a few self-training steps, for the tests of what answers and relearnings do rather than how good
# the groups are: a relearning takes the run's self-training steps, so it is quick too
QUICK = dict(random_state=1, self_training_steps=10)


@pytest.fixture(scope="module")
def tengwar10(tmp_path_factory, omniglot_evaluation):
    """10 Tengwar characters (200 drawings)."""
    dest = tmp_path_factory.mktemp("data") / "tengwar10"
    for char_dir in sorted((omniglot_evaluation / "Tengwar").iterdir())[:10]:
        shutil.copytree(char_dir, dest / char_dir.name)
    return dest


def clustered(folder, **options):
    clusterer = L2CClusterer(**options).fit(folder, labelled=True)
    truth = np.unique(np.asarray(clusterer.true_labels_), return_inverse=True)[1]
    return clusterer, truth, folder


@pytest.fixture(scope="module")
def tengwar(tengwar10):
    """The 10 Tengwar characters clustered with K unknown: two look-alikes end up merged."""
    return clustered(tengwar10, random_state=1)


@pytest.fixture(scope="module")
def tengwar_quick(tengwar10):
    """The same, clustered with the ``QUICK`` options."""
    return clustered(tengwar10, **QUICK)


def oracle_answers(clusterer, truth, n):
    """Ask ``n`` questions one at a time, answering from the folder names; returns the answers."""
    answers = []
    for _ in range(n):
        q = clusterer.questions(1)[0]
        assert clusterer.constraints_.known(q.a, q.b) is None  # never a pair the answers already imply
        answers.append(Answer(q.a, q.b, bool(truth[q.a] == truth[q.b])))
        clusterer.refit(answers)
    return answers


@pytest.mark.numerical
def test_a_few_answers_fix_merged_characters(tengwar):
    """Ten questions answered from the folder names: every answer holds, the merged look-alikes they are about
    are split, and the groups no answer touches stay exactly as they were.

    The accuracy gain itself (measured: 0.855 -> 0.86 to 0.895, by machine and thread count, because the first
    clustering's float sums and so the questions differ) is a handful of drawings: too close to that noise
    to assert. What the answers must do is asserted instead."""
    clusterer, truth, _ = tengwar
    clusterer.refit([])
    base = clusterer.labels_.copy()
    base_k = clusterer.n_clusters_
    answers = oracle_answers(clusterer, truth, 10)
    labels = clusterer.labels_
    assert len(answers) == 10 and clusterer.summary()["answers"]["n_answers"] == 10
    for a in answers:  # every answer holds
        assert (labels[a.a] == labels[a.b]) == a.same, a
    assert clusterer.constraints_.violated_cannot(labels) == 0 and clusterer.constraints_.violated_must(labels) == 0
    # the run merged look-alikes (K 9 of 10): some "different" answer fell inside one of its groups and split it
    assert any(not a.same and base[a.a] == base[a.b] for a in answers), answers
    assert clusterer.n_clusters_ > base_k
    touched = {int(base[i]) for a in answers for i in (a.a, a.b)}
    untouched = [g for g in range(base.max() + 1) if g not in touched]
    assert untouched, touched
    for g in untouched:  # the same images, alone in one group
        members = np.flatnonzero(base == g)
        assert len(set(labels[members].tolist())) == 1, g
        assert np.array_equal(np.flatnonzero(labels == labels[members[0]]), members), g


def test_refit_depends_only_on_the_run_and_the_answers(tengwar, tmp_path):
    clusterer, truth, _ = tengwar
    clusterer.refit([])
    answers = oracle_answers(clusterer, truth, 3)
    one_by_one = clusterer.labels_.copy()
    clusterer.refit([])  # undo everything: the run's own clusters come back
    base = clusterer._answers.base["labels"]
    assert np.array_equal(clusterer.labels_, base) and len(clusterer.constraints_) == 0
    # the same answers from a file, at once
    path = write_constraints_csv(tmp_path / "answers.csv", answers, clusterer.paths_)
    assert np.array_equal(clusterer.refit(str(path)).labels_, one_by_one)
    # undo the last answer = refit with the first two
    clusterer.refit(answers[:2])
    two = clusterer.labels_.copy()
    clusterer.refit(answers)
    clusterer.refit(clusterer.constraints_.without_last())
    assert np.array_equal(clusterer.labels_, two)


def test_answers_are_honoured(tengwar):
    clusterer, truth, _ = tengwar
    clusterer.refit([])
    labels = clusterer.labels_
    # two different groups said to be one, and two images of one group said to differ
    a, b = int(np.flatnonzero(labels == 0)[0]), int(np.flatnonzero(labels == 1)[0])
    members = np.flatnonzero(labels == 2)
    c, d = int(members[0]), int(members[-1])
    clusterer.refit([(a, b, 1), (c, d, 0)])
    assert clusterer.labels_[a] == clusterer.labels_[b] and clusterer.labels_[c] != clusterer.labels_[d]
    clusterer.refit([])


def test_every_answer_is_respected_and_nothing_else_moves(tengwar):
    """Answers of every kind at once: a chain of "same" answers across three groups, "different" inside a
    group, two groups said to be one category (their typical images), and an answer the clusters already
    agree with. After the refit each holds, with its consequences, and images no answer is about keep their
    group unless their group was merged or split."""
    from l2c_explorer.questions import representative

    clusterer, _, _ = tengwar
    clusterer.refit([])
    base = clusterer.labels_.copy()
    emb = clusterer.embedding_
    groups = [np.flatnonzero(base == g) for g in range(base.max() + 1)]
    assert len(groups) >= 6
    # the least typical image of groups 0, 1, 2 chained by "same" answers (not their typical images)
    loose = [int(g[np.argmin(emb[g] @ emb[g].sum(0))]) for g in groups[:3]]
    # group 3: its two least alike images said to differ
    g3 = groups[3]
    cos = emb[g3] @ emb[g3].T
    i, j = np.unravel_index(np.argmin(cos), cos.shape)
    c, d = int(g3[i]), int(g3[j])
    # groups 4 and 5: one category (their typical images), as the app's "one category" says it
    r4, r5 = representative(emb, groups[4]), representative(emb, groups[5])
    e, f = (int(x) for x in groups[4][:2])  # already together
    answers = [(loose[0], loose[1], 1), (loose[1], loose[2], 1), (c, d, 0), (r4, r5, 1), (e, f, 1),
               (loose[0], c, 0)]
    labels = clusterer.refit(answers).labels_
    cs = clusterer.constraints_
    assert cs.violated_must(labels) == 0 and cs.violated_cannot(labels) == 0
    assert len(set(labels[loose].tolist())) == 1  # the chain, transitively
    assert labels[c] != labels[d] and labels[loose[0]] != labels[c]
    assert len(set(labels[np.concatenate([groups[4], groups[5]])].tolist())) == 1  # merged, whole
    # untouched: every other group keeps its members together, apart from the images answers moved
    answered = set(cs.constrained_images().tolist())
    for g in groups[6:]:
        rest = [x for x in g.tolist() if x not in answered]
        assert len(set(labels[rest].tolist())) == 1
        assert not (set(np.flatnonzero(labels == labels[rest[0]]).tolist()) - set(g.tolist()) - answered)
    for g in groups[:3]:  # the loose image left, the rest stayed together
        rest = [x for x in g.tolist() if x not in answered]
        assert len(set(labels[rest].tolist())) == 1
    k_before = len(groups)
    assert clusterer.n_clusters_ == k_before - 1 + 1  # one merge, one split; K is not re-estimated
    clusterer.refit([])


def test_bad_answers_are_refused_clearly(tengwar):
    clusterer, _, _ = tengwar
    paths = clusterer.paths_
    with pytest.raises(ContradictionError, match=paths[2]):
        clusterer.refit([(0, 1, 1), (1, 2, 1), (0, 2, 0)])
    with pytest.raises(InputError, match="only 200 images"):
        clusterer.refit([(0, 500, 1)])


def test_known_k_refuses_more_differences_than_clusters(keble_subset):
    c = L2CClusterer(n_clusters=2, random_state=0, self_training_steps=0, steps=10).fit(keble_subset)
    folders = sorted({p.split("/")[0] for p in c.paths_})[:3]
    firsts = [next(i for i, p in enumerate(c.paths_) if p.startswith(f + "/")) for f in folders]
    different = [(firsts[0], firsts[1], 0), (firsts[0], firsts[2], 0), (firsts[1], firsts[2], 0)]
    with pytest.raises(InputError, match="K was given as 2"):
        c.refit(different)


@pytest.mark.numerical
def test_relearning_learns_from_the_answers(tengwar):
    """Relearning self-trains the features on the groups the answers left and clusters again: images nobody
    was asked about move too, and every answer still holds."""
    clusterer, truth, _ = tengwar
    clusterer.refit([])
    run_embedding = clusterer.embedding_.copy()
    oracle_answers(clusterer, truth, 10)
    refitted = clusterer.scores()["acc"]
    stages, sharpening = [], []
    clusterer.relearn(callback=lambda p: (stages.append(p.stage),
                                          p.stage == "self-training" and sharpening.append(p.total)))
    after = clusterer.scores()
    assert set(sharpening) == {clusterer.settings_["relearn_steps"]}  # the run sharpened for longer: not capped
    # measured: ACC 0.855 for the run, 0.885 after the 10 answers, 0.905 relearnt (2 threads); the gain is a
    # few drawings, within what float order moves, so only a collapse is refused: at most one category's worth
    # (20 of 200 drawings) below the refit
    assert after["acc"] >= refitted - 0.1, (refitted, after)
    assert {"reading", "self-training", "features", "training"} <= set(stages)
    assert not np.allclose(clusterer.embedding_, run_embedding, atol=1e-3)  # the features were relearnt
    cs = clusterer.constraints_
    assert cs.violated_must(clusterer.labels_) == 0 and cs.violated_cannot(clusterer.labels_) == 0
    summary = clusterer.summary()
    assert summary["answers"]["relearnt_with"] == [10] and summary["answers"]["relearn_seconds"] > 0
    assert any(p.get("pass") == "relearn" for p in clusterer.history_)
    assert clusterer.prototypes_.shape == (clusterer.n_clusters_, clusterer.embedding_.shape[1])
    clusterer.refit([])
    assert np.array_equal(clusterer.embedding_, run_embedding) and clusterer.relearnings_ == []


def test_answers_after_a_relearning_start_from_it_and_undo_goes_back(tengwar_quick):
    clusterer, truth, _ = tengwar_quick
    # a run sharpened briefly (for speed) relearns as briefly
    assert clusterer._relearn_steps() == QUICK["self_training_steps"] < clusterer.settings_["relearn_steps"]
    clusterer.refit([])
    answers = oracle_answers(clusterer, truth, 4)
    three = clusterer.refit(answers[:3]).labels_.copy()  # before any relearning
    relearnt = clusterer.relearn(answers).labels_.copy()
    relearnt_embedding = clusterer.embedding_.copy()
    assert np.array_equal(clusterer.refit(answers).labels_, relearnt)  # the same answers: the same groups
    extra = clusterer.questions(1)[0]
    clusterer.refit([*answers, Answer(extra.a, extra.b, bool(truth[extra.a] == truth[extra.b]))])
    assert np.array_equal(clusterer.embedding_, relearnt_embedding) and clusterer.relearnings_ == [4]
    # undo past the relearning: back to the run's features and what three answers did to its groups
    assert np.array_equal(clusterer.refit(answers[:3]).labels_, three)
    assert not np.array_equal(clusterer.embedding_, relearnt_embedding) and clusterer.relearnings_ == []
    clusterer.refit([])


def test_answers_from_a_file_relearn_as_in_the_app(tengwar_quick, tmp_path):
    """fit(constraints=file, relearn=True), what `discover --constraints FILE --relearn` runs, gives the groups
    that the same answers given one by one and one relearning give."""
    clusterer, truth, folder = tengwar_quick
    clusterer.refit([])
    answers = oracle_answers(clusterer, truth, 5)
    live = clusterer.relearn().labels_.copy()
    path = write_constraints_csv(tmp_path / "answers.csv", answers, clusterer.paths_)
    again = L2CClusterer(**QUICK).fit(folder, constraints=str(path), relearn=True)
    assert again.relearnings_ == [5]
    assert np.array_equal(again.labels_, live)
    clusterer.refit([])


def test_relearning_stopped_or_impossible_changes_nothing(tengwar):
    import threading

    clusterer, truth, _ = tengwar
    clusterer.refit([])
    with pytest.raises(InputError, match="answer some questions"):
        clusterer.relearn()
    oracle_answers(clusterer, truth, 3)
    labels, embedding = clusterer.labels_.copy(), clusterer.embedding_.copy()
    stop = threading.Event()
    stop.set()
    clusterer.relearn(stop=stop)
    assert clusterer.stopped_ and clusterer.relearnings_ == []
    assert np.array_equal(clusterer.labels_, labels) and np.array_equal(clusterer.embedding_, embedding)
    clusterer.refit([])
    # a run made from embeddings has no images to relearn from
    emb = clusterer.embedding_
    from_embeddings = L2CClusterer(random_state=0, steps=10).fit_embeddings(emb)
    before = from_embeddings.labels_.copy()
    with pytest.raises(InputError, match="needs the run's images"):
        from_embeddings.relearn([(0, 1, 0)])
    assert np.array_equal(from_embeddings.labels_, before) and len(from_embeddings.constraints_) == 0


def test_relearning_refuses_a_folder_that_changed(keble_subset):
    # a relearning takes the run's self-training steps (100 when the run had none): a few suffice here
    c = L2CClusterer(random_state=0, self_training_steps=5, steps=10).fit(keble_subset)
    first = next(keble_subset.iterdir())
    shutil.copy(next(first.iterdir()), first / "added_later.png")
    with pytest.raises(InputError, match="changed since this run"):
        c.relearn([(0, 1, 0)])
    (first / "added_later.png").unlink()
    c.relearn()  # the folder as it was: the answer given above is relearnt from
    assert c.relearnings_ == [1] and c.labels_[0] != c.labels_[1]
