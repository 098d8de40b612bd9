"""Teach it, in the app's engine: answers, merges, splits, "not here", undo; the run's files follow; answers
given in the app and the same answers in a file give the same clusters."""

from __future__ import annotations

import json

import numpy as np
import pytest

from l2c_explorer.app import views
from l2c_explorer.app.workbench import Workbench
from l2c_explorer.clustering import L2CClusterer
from l2c_explorer.constraints import ContradictionError, read_constraints_csv
from l2c_explorer.errors import InputError

OPTIONS = dict(self_training_steps=0, steps=30, random_state=0, device="cpu")


@pytest.fixture
def taught(tmp_path, keble6):
    bench = Workbench(tmp_path / "work")
    job = bench.start_discovery(keble6, model="omniglot", labelled=True, make_map=False, **OPTIONS)
    assert job.wait(600) and job.result is not None, job.error
    yield bench, job, keble6
    bench.close()


def truth_of(result) -> np.ndarray:
    return np.unique(np.asarray(result.truth), return_inverse=True)[1]


def test_answers_merges_and_undo(taught):
    bench, job, _ = taught
    teacher = bench.teacher(job.id)
    assert bench.teacher(job.id) is teacher  # one per run
    truth = truth_of(job.result)
    for _ in range(3):
        q = teacher.question()
        assert q is not None and q["path_a"] == job.result.paths[q["a"]]
        teacher.answer(q["a"], q["b"], bool(truth[q["a"]] == truth[q["b"]]))
    assert len(teacher.rows()) == 3 and teacher.version == 3
    before = job.result
    k = before.n_clusters
    merged = teacher.merge(0, 1)  # two groups said to be one category
    assert merged.n_clusters == k - 1 and job.result is merged
    a, b = teacher.given[-1].answers[0].a, teacher.given[-1].answers[0].b
    assert merged.labels[a] == merged.labels[b] and before.labels[a] != before.labels[b]
    assert job.extra("teach_version") == 4 and len(job.extra("clusters")) == k - 1
    assert (merged.run_dir / "answers.csv").is_file()
    saved = read_constraints_csv(merged.run_dir / "answers.csv", merged.paths)
    assert len(saved) == 4 and saved[-1].same
    back = teacher.undo()
    assert back.n_clusters == k and np.array_equal(back.labels, before.labels)
    with pytest.raises(InputError, match="Choose two different groups"):
        teacher.merge(2, 2)


def test_split_and_not_here(taught):
    bench, job, _ = taught
    teacher = bench.teacher(job.id)
    k = job.result.n_clusters
    plan = teacher.propose_split(0)
    assert plan["a"] in plan["first"] and plan["b"] in plan["second"]
    assert sorted(plan["first"] + plan["second"]) == np.flatnonzero(job.result.labels == 0).tolist()
    split = teacher.split(0)
    assert split.labels[plan["a"]] != split.labels[plan["b"]] and split.n_clusters >= k
    members = np.flatnonzero(split.labels == split.labels[plan["a"]])
    moved = teacher.not_here(members[:2])
    assert all(moved.labels[i] != moved.labels[x.b] for x, i in zip(teacher.given[-1].answers, members[:2]))
    assert [r[1] for r in teacher.rows()] == ["split", "not here", "not here"]
    with pytest.raises(InputError, match="Select some images"):
        teacher.not_here([])


def test_a_contradiction_is_refused_and_changes_nothing(taught):
    bench, job, _ = taught
    teacher = bench.teacher(job.id)
    members = np.flatnonzero(job.result.labels == 0)
    a, b, c = (int(x) for x in members[:3])
    teacher.answer(a, b, True)
    teacher.answer(b, c, True)
    labels = job.result.labels.copy()
    with pytest.raises(ContradictionError, match="Contradictory"):
        teacher.answer(a, c, False)
    assert len(teacher.rows()) == 2 and np.array_equal(job.result.labels, labels)


def test_answers_in_the_app_and_in_a_file_give_the_same_clusters(taught, tmp_path):
    bench, job, folder = taught
    teacher = bench.teacher(job.id)
    truth = truth_of(job.result)
    for _ in range(3):
        q = teacher.question()
        teacher.answer(q["a"], q["b"], bool(truth[q["a"]] == truth[q["b"]]))
    teacher.merge(0, 1)
    in_app = job.result
    answers_file = in_app.run_dir / "answers.csv"
    from_file = L2CClusterer(similarity="omniglot", **OPTIONS).fit(folder, constraints=str(answers_file))
    assert from_file.paths_ == in_app.paths
    assert np.array_equal(from_file.labels_, in_app.labels)
    # and the export carries the answers
    info = bench.export(job.id, tmp_path / "exported")
    assert (info["folder"] / "answers.csv").read_text() == answers_file.read_text()


def test_relearning_in_the_app_continues_the_curves_and_matches_a_file(taught):
    bench, job, folder = taught
    teacher = bench.teacher(job.id)
    with pytest.raises(InputError, match="Answer a few questions first"):
        teacher.relearn()
    truth = truth_of(job.result)
    for _ in range(3):
        q = teacher.question()
        teacher.answer(q["a"], q["b"], bool(truth[q["a"]] == truth[q["b"]]))
    points = len(job.metrics.read()[0])
    stages = []
    relearnt = teacher.relearn(callback=lambda p: stages.append(p.stage))
    assert job.result is relearnt and {"self-training", "training"} <= set(stages)
    assert "Relearnt" in views.relearn_status(teacher, 5, relearnt.n_clusters)
    assert len(job.metrics.read()[0]) > points  # the relearning's training steps continue the curves
    steps = [m["step"] for m in job.metrics.read()[0] if m.get("stage") == "training"]
    assert steps == sorted(steps)
    summary = json.loads((relearnt.run_dir / "summary.json").read_text())
    assert summary["answers"]["relearnt_with"] == [3]
    cs = teacher.constraints()
    assert cs.violated_must(relearnt.labels) == 0 and cs.violated_cannot(relearnt.labels) == 0
    # the same answers from the run's file, relearnt from at once, give the same groups
    answers_file = relearnt.run_dir / "answers.csv"
    from_file = L2CClusterer(similarity="omniglot", **OPTIONS).fit(folder, constraints=str(answers_file), relearn=True)
    assert np.array_equal(from_file.labels_, relearnt.labels)
    # undo goes back to before the relearning, to what two answers did to the run's groups
    back = teacher.undo()
    assert teacher.clusterer.relearnings_ == []
    two = L2CClusterer(similarity="omniglot", **OPTIONS).fit(folder, constraints=teacher.answers)
    assert len(teacher.answers) == 2 and np.array_equal(back.labels, two.labels_)


def test_relearning_can_be_stopped_from_another_thread(taught):
    import threading

    bench, job, _ = taught
    teacher = bench.teacher(job.id)
    assert not teacher.stop_relearning()  # nothing under way
    truth = truth_of(job.result)
    for _ in range(2):
        q = teacher.question()
        teacher.answer(q["a"], q["b"], bool(truth[q["a"]] == truth[q["b"]]))
    before = job.result
    asked = []

    def press_stop(progress) -> None:  # the page's Stop button, pressed once the fine-tuning is under way
        if progress.stage == "self-training" and not asked:
            asked.append(threading.Thread(target=lambda: asked.append(teacher.stop_relearning())))
            asked[0].start()
            asked[0].join()

    with pytest.raises(InputError, match="stopped"):
        teacher.relearn(callback=press_stop)
    assert asked[1] is True and not teacher.relearning
    assert job.result is before and teacher.clusterer.relearnings_ == []
    assert np.array_equal(teacher.clusterer.labels_, before.labels)
    assert teacher.relearn().n_clusters >= 1 and teacher.clusterer.relearnings_ == [2]  # a new one runs to the end


def test_a_page_reloaded_during_a_relearning_follows_it_and_shows_its_groups(taught):
    from l2c_explorer.app.ui import build_app

    bench, job, _ = taught
    _, handlers = build_app(bench)
    run, explore = handlers.page.run, handlers.page.explore
    poll = handlers.poller("discover", run, explore)
    job.publish(map_final=True)  # as once the map is computed (this run has none)
    teacher = bench.teacher(job.id)
    truth = truth_of(job.result)
    for _ in range(3):
        q = teacher.question()
        teacher.answer(q["a"], q["b"], bool(truth[q["a"]] == truth[q["b"]]))
    shown = poll(job.id, {})  # the page as (re)loaded: the taught groups, nothing left to follow
    assert explore.clusters in shown and shown[run.timer].active is False
    during = []

    def reload_now(progress) -> None:  # a reload while the relearning fine-tunes
        if progress.stage == "self-training" and progress.step >= 1 and not during:
            during.append(poll(job.id, {}))

    relearnt = teacher.relearn(callback=reload_now)
    page = during[0]
    assert "Relearning from your answers" in page[run.progress] and 'data-status="relearning"' in page[run.progress]
    assert run.timer not in page  # the page keeps polling
    ended = poll(job.id, page[run.seen])  # the next poll after it ended: its groups, and polling stops
    rows = ended[explore.clusters]["value"]
    assert len(rows) == relearnt.n_clusters and sum(r[1] for r in rows) == len(relearnt.labels)
    assert f"{relearnt.n_clusters}" in ended[explore.results_md] and ended[run.timer].active is False
    assert teacher.progress is None and not teacher.relearning
