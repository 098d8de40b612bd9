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


def a_run(work, folder, **options):
    bench = Workbench(work)
    job = bench.start_discovery(folder, model="omniglot", labelled=True, make_map=False, **{**OPTIONS, **options})
    assert job.wait(600) and job.result is not None, job.error
    yield bench, job, folder
    bench.close()


@pytest.fixture
def taught(tmp_path, keble6):
    yield from a_run(tmp_path / "work", keble6)


@pytest.fixture
def sharpened(tmp_path, keble6):
    """The run with a few self-training steps, for relearnings that need not be long: a relearning takes the
    run's self-training steps (100 after a run without)."""
    yield from a_run(tmp_path / "work", keble6, self_training_steps=5)


def same_partition(x, y) -> bool:
    """Whether two labelings group the images alike, whatever their numbers."""
    pairs = set(zip(np.asarray(x).tolist(), np.asarray(y).tolist(), strict=True))
    return len(pairs) == len(set(np.asarray(x).tolist())) == len(set(np.asarray(y).tolist()))


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
    assert [r[1] for r in teacher.rows()] == ["question"] * 3  # how each was given; the answer has its column
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


def test_groups_keep_their_numbers_and_names_through_answers_merges_splits_and_undo(taught):
    bench, job, _ = taught
    teacher = bench.teacher(job.id)
    first = job.result
    bench.rename_group(job.id, 2, "hooks")
    bench.rename_group(job.id, 4, "ladders")
    truth = truth_of(first)
    q = teacher.question()
    teacher.answer(q["a"], q["b"], bool(truth[q["a"]] == truth[q["b"]]))
    answered = job.result.labels.copy()
    # names survive an answer; a group keeps its number while most of its images stay
    assert job.result.names[2] == "hooks" and job.result.names[4] == "ladders"
    for g in (2, 4):
        before = np.flatnonzero(first.labels == g)
        if np.mean(job.result.labels[before] == g) > 0.5:
            assert np.sum(job.result.labels == g) > 0
    merged = teacher.merge(2, 3)  # group 3 joins "hooks": the number and name of the larger part stay
    kept = 2 if np.sum(first.labels == 2) >= np.sum(first.labels == 3) else 3
    assert set(np.unique(merged.labels).tolist()) == set(np.unique(first.labels).tolist()) - {5 - kept}
    assert "joined" in teacher.last_change
    # the files say what the page shows: numbers and names
    rows = (merged.run_dir / "assignments.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[1]) for r in rows] == merged.labels.tolist()
    assert json.loads((merged.run_dir / "summary.json").read_text())["group_names"][4] == "ladders"
    # a split: the larger half keeps the number, the other half gets a number never shown before
    shown_before = set(range(first.n_clusters))
    split = teacher.split(4)
    new = set(np.unique(split.labels).tolist()) - shown_before
    assert split.n_clusters == merged.n_clusters + len(new)
    assert all(n >= first.n_clusters for n in new)
    assert teacher.answers_held() == len(teacher.answers)
    # undo brings back the groups with the numbers they had
    assert np.array_equal(teacher.undo().labels, merged.labels)
    assert np.array_equal(teacher.undo().labels, answered)
    assert job.result.names[2] == "hooks"


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
    # the same groups (the page's numbers follow the groups as they changed, see numbering.carry_numbers)
    assert same_partition(from_file.labels_, in_app.labels)
    assert same_partition(from_file.labels_, teacher.clusterer.labels_)
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
    assert same_partition(from_file.labels_, relearnt.labels), (from_file.labels_.tolist(), relearnt.labels.tolist())
    # undo goes back to before the relearning, to what two answers did to the run's groups
    back = teacher.undo()
    assert teacher.clusterer.relearnings_ == []
    two = L2CClusterer(similarity="omniglot", **OPTIONS).fit(folder, constraints=teacher.answers)
    assert len(teacher.answers) == 2 and np.array_equal(back.labels, two.labels_)


def test_relearning_can_be_stopped_from_another_thread(sharpened):
    import threading

    bench, job, _ = sharpened
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


def test_a_page_reloaded_during_a_relearning_follows_it_and_shows_its_groups(sharpened):
    from l2c_explorer.app.ui import build_app

    bench, job, _ = sharpened
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


def test_a_relearning_says_how_long_it_takes_and_draws_its_own_curves(taught):
    """Before Relearn: an estimate from the pace this run measured here; while it runs: the time left in every
    report, and its losses as curves of its own in the job's metrics (the run's training curve neither
    continues nor spikes); afterwards, the next estimate comes from this relearning."""
    bench, job, _ = taught
    teacher = bench.teacher(job.id)
    clusterer = teacher.clusterer
    estimate = teacher.relearn_estimate()
    # the relearning's own writing of its results is priced by the run's first writing until one is measured
    writing = job.result.summary["writing_seconds"]
    assert writing > 0 and estimate == pytest.approx(clusterer.relearn_seconds() + writing)
    measured = list(clusterer.stage_seconds_)  # this run's stages, with the seconds each took
    assert {"graph", "training"} <= {stage.name for stage, _ in measured}
    before = {s.name: s.prior for s in clusterer._relearn_stages()}
    clusterer.stage_seconds_ = [(stage, 2 * seconds) for stage, seconds in measured]  # a machine twice as slow
    after = {s.name: s.prior for s in clusterer._relearn_stages()}
    # each kind of stage this run measured takes twice as long; one it never ran (no sharpening here) borrows
    # the others' pace only within limits (progress.BORROWED_PACE_LIMIT)
    for name in {"graph", "training"}:
        assert after[name] == pytest.approx(2 * before[name])
    assert estimate < teacher.relearn_estimate() <= 2 * estimate + 1e-9
    clusterer.stage_seconds_ = measured
    truth = truth_of(job.result)
    for _ in range(3):
        q = teacher.question()
        teacher.answer(q["a"], q["b"], bool(truth[q["a"]] == truth[q["b"]]))
    before = job.metrics.read()[0]
    seen = []
    teacher.relearn(callback=seen.append)
    assert seen and all(p.time_left is not None and p.time_left >= 0 for p in seen)
    points = job.metrics.read()[0]
    assert points[: len(before)] == before and not [p for p in points[len(before):] if p["stage"] == "training"]
    added = points[len(before):]
    sharpening = [p for p in added if p["stage"] == views.RELEARNING_STAGES["self-training"]]
    grouping = [p for p in added if p["stage"] == views.RELEARNING_STAGES["training"]]
    assert [p["step"] for p in sharpening] == list(range(1, len(sharpening) + 1)) and len(sharpening) > 1
    assert grouping and all(p["loss"] >= 0 for p in sharpening + grouping)
    assert len(sharpening) + len(grouping) == len(added)
    assert clusterer.stage_seconds_ != measured and teacher.relearn_estimate() > 0
