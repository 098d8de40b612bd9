"""Teach it: a person's answers about a finished discovery, applied live (no gradio here).

A :class:`Teacher` belongs to one finished discovery job. Every way the page offers to correct the groups
becomes answers about pairs of images (:mod:`l2c_explorer.constraints`), so that answers given on the
page and the same answers in a ``path_a,path_b,same`` file give the same clusters:

* a question (:meth:`Teacher.question`): two images, Same / Different / Skip;
* "one category" for two groups (:meth:`Teacher.merge`): "same" between the most typical image of each;
* "split it" for a group (:meth:`Teacher.propose_split`, then :meth:`Teacher.split`): "different" between
  the most typical images of the two halves the group's own graph falls into;
* "these do not belong here" for selected images (:meth:`Teacher.not_here`): "different" between each of
  them and the most typical other image of its group.

After each change the clusterer refits (:meth:`~l2c_explorer.clustering.L2CClusterer.refit`, from the run
and all answers), the run's files are rewritten (``assignments.csv``, ``summary.json``, ``answers.csv``),
and the job publishes the new clusters and map colours. :meth:`Teacher.relearn` (seconds, not milliseconds)
relearns the features and the clusters from the answers so far
(:meth:`~l2c_explorer.clustering.L2CClusterer.relearn`; :meth:`Teacher.stop_relearning` ends it with nothing
changed); its steps draw their own curves as it goes, and a page opened or reloaded meanwhile follows it
(:attr:`Teacher.relearning`, :attr:`Teacher.progress`) and shows its groups when it ends. The
map's coordinates stay those of the run's features throughout, so that points do not jump about.
:meth:`Teacher.undo` refits without the last change (and without a relearning that used it).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from ..constraints import Answer, ConstraintSet
from ..errors import InputError
from ..explore import cluster_summaries, map_payload
from ..names import group_names


def describe_change(before: np.ndarray, after: np.ndarray, names: list[str]) -> str:
    """What a change did to the groups, in words (``before``, ``after``: (n_images,) the numbers shown;
    ``names``: names by number, others named by default): groups split off, groups merged, images moved."""
    before, after = np.asarray(before), np.asarray(after)
    top = int(max(before.max(initial=0), after.max(initial=0))) + 1
    names = [*names, *group_names(top)[len(names):]]
    moved = before != after
    if not moved.any():
        return "no image changed group"
    words, explained = [], np.zeros(len(after), dtype=bool)
    old, new = set(before.tolist()), set(after.tolist())
    for g in sorted(new - old):  # a new number: a part split off the group most of it came from
        inside = after == g
        origin = int(np.bincount(before[inside]).argmax())
        n = int(inside.sum())
        words.append(f"{n} image{'s' if n != 1 else ''} of {names[origin]} became a new group, {names[g]}")
        explained |= inside & (before == origin)
    for g in sorted(old - new):  # a number gone: merged into the group most of it went to
        inside = before == g
        into = int(np.bincount(after[inside]).argmax())
        words.append(f"{names[g]} joined {names[into]}")
        explained |= inside & (after == into)
    rest = int((moved & ~explained).sum())
    if rest:
        words.append(f"{rest} image{'s' if rest != 1 else ''} moved to another group")
    return "; ".join(words)


@dataclass
class Given:
    """One change a person made: its answers (one, or several for "do not belong here") and how."""

    how: str  # "question", "one category", "split", "not here", "from a file"
    answers: list[Answer]


class Teacher:
    """The answers given to one finished discovery job, and what they did to its clusters.

    Parameters
    ----------
    bench : Workbench
    job : Job
        A finished discovery job with a result.
    """

    def __init__(self, bench, job):
        from .run_result import RunResult

        result = job.result
        if not isinstance(result, RunResult) or result.kind != "discover":
            raise InputError("Only a finished run that found categories can be taught.")
        self.bench = bench
        self.job = job
        self.clusterer = result.estimator
        self.given: list[Given] = []
        self.skipped: set[tuple[int, int]] = set()
        self.version = 0
        self.seconds: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.relearning = False
        self.relearn_pending = False  # asked for on the page, not started yet (the page follows it already)
        self.progress = None  # the latest report of a relearning under way (a reloaded page shows it)
        # the number shown for each of the clusterer's clusters (numbering.carry_numbers), the next unused
        # one, and before each change what was shown then (an undo shows the groups with their numbers again)
        self.numbers = np.arange(int(self.clusterer.n_clusters_))
        self.next_number = len(self.numbers)
        self._shown_before: list[np.ndarray] = []
        self.last_change = ""  # what the last change did to the groups, in words
        self.showing_seconds: float | None = None  # writing and showing the groups at the last relearning's end
        self.writing_seconds = float(result.summary.get("writing_seconds", 0.0))  # the run's first results

    # -- reading ----------------------------------------------------------------------------------------

    @property
    def answers(self) -> list[Answer]:
        return [a for g in self.given for a in g.answers]

    def constraints(self) -> ConstraintSet:
        return ConstraintSet(len(self.clusterer.paths_), self.answers, names=self.clusterer.paths_)

    @property
    def shown(self) -> np.ndarray:
        """(n_images,) the group number each image is shown with."""
        return self.numbers[self.clusterer.labels_]

    def question(self) -> dict | None:
        """The next question worth asking (not skipped), as the page shows it; None when none is left."""
        for q in self.clusterer.questions(8):
            if (min(q.a, q.b), max(q.a, q.b)) not in self.skipped:
                return {"a": q.a, "b": q.b, "kind": q.kind, "text": q.text,
                        "groups": [int(self.numbers[g]) for g in q.groups],
                        "path_a": self.clusterer.paths_[q.a], "path_b": self.clusterer.paths_[q.b]}
        return None

    def answers_held(self) -> int:
        """How many of the answers the groups shown now agree with (all of them, by construction: shown so
        that a person can see it)."""
        cs = self.constraints()
        return len(cs) - cs.violated_must(self.shown) - cs.violated_cannot(self.shown)

    def rows(self) -> list[list]:
        """The answers given, oldest first: [number, how, image a, image b, same or different]."""
        paths = self.clusterer.paths_
        out = []
        for g in self.given:
            for x in g.answers:
                out.append([len(out) + 1, g.how, paths[x.a], paths[x.b], "same" if x.same else "different"])
        return out

    def representative(self, members: np.ndarray, *, besides: int | None = None) -> int:
        from ..groups import representative

        members = np.asarray(members)
        if besides is not None:
            members = members[members != besides]
        if len(members) == 0:
            raise InputError("That group has no other image to compare with.")
        return representative(self.clusterer.embedding_, members)

    def members(self, cluster: int) -> np.ndarray:
        """The images of the group shown with number ``cluster``."""
        members = np.flatnonzero(self.shown == int(cluster))
        if len(members) == 0:
            raise InputError(f"There is no group {cluster} (any more).")
        return members

    def propose_split(self, cluster: int) -> dict:
        """How the app would split a group: its two halves and the typical image of each."""
        from ..questions import group_split

        members = self.members(cluster)
        if len(members) < 2:
            raise InputError("A group of one image cannot be split.")
        first, second, ra, rb, _ = group_split(self.clusterer.graph_, self.clusterer.embedding_, members)
        return {"cluster": int(cluster), "first": first.tolist(), "second": second.tolist(), "a": ra, "b": rb}

    # -- changing ---------------------------------------------------------------------------------------

    def answer(self, a: int, b: int, same: bool, *, how: str | None = None, kind: str | None = None):
        """Record "same"/"different" for images ``a`` and ``b`` and re-cluster (``kind``: of the question
        answered, which the next questions learn from)."""
        return self._give(Given(how or "question", [Answer(int(a), int(b), bool(same), kind)]))

    def skip(self, a: int, b: int) -> None:
        """Never ask this pair again in this session (no answer is recorded)."""
        self.skipped.add((min(int(a), int(b)), max(int(a), int(b))))

    def merge(self, first: int, second: int):
        """Two groups are one category: "same" for their most typical images."""
        if int(first) == int(second):
            raise InputError("Choose two different groups to merge.")
        a, b = self.representative(self.members(first)), self.representative(self.members(second))
        return self._give(Given("one category", [Answer(a, b, True)]))

    def split(self, cluster: int):
        """A group is two categories, split as :meth:`propose_split` shows: "different" for its halves."""
        plan = self.propose_split(cluster)
        name = self.job.result.names[int(cluster)]
        result = self._give(Given("split", [Answer(plan["a"], plan["b"], False)]))
        shown = self.shown
        apart = np.mean(shown[plan["second"]] != shown[plan["a"]]) if plan["second"] else 0.0
        if apart < 0.5:  # the features did not carry the split out as proposed: say so, not a silent reshuffle
            self.last_change = (f"these two halves could not be separated by the model: their two most typical "
                                f"images are kept apart, and the rest of {name} stays together ({self.last_change})")
        return result

    def not_here(self, indices) -> object:
        """Selected images do not belong in their groups: "different" from each group's typical image."""
        labels = self.shown
        chosen = sorted({int(i) for i in indices if 0 <= int(i) < len(labels)})
        if not chosen:
            raise InputError("Select some images on the map first (lasso or box tool).")
        answers = []
        for i in chosen:
            members = np.setdiff1d(self.members(labels[i]), chosen)
            if len(members):
                answers.append(Answer(i, self.representative(members), False))
        if not answers:
            raise InputError("Every image of these groups is selected: there is nothing left to compare with.")
        return self._give(Given("not here", answers))

    def undo(self):
        """Take back the last change and re-cluster."""
        if not self.given:
            raise InputError("There is no answer to undo.")
        with self._lock:
            last, before = self.given.pop(), self._shown_before.pop()
            try:
                return self._apply(before)
            except Exception:
                self.given.append(last)
                self._shown_before.append(before)
                raise

    def load(self, answers: list[Answer], how: str = "from a file"):
        """Add answers read elsewhere (e.g. an ``answers.csv``) as one change."""
        return self._give(Given(how, list(answers)))

    def relearn(self, callback=None):
        """Relearn the features and the clusters from every answer so far, then publish as after a change.
        :meth:`stop_relearning` (from another thread) ends it with the groups as they were."""
        from dataclasses import replace

        from ..jobs import metric_point
        from ..progress import Progress
        from .views import RELEARNING_STAGES

        with self._lock:
            if not self.answers:
                self.relearn_pending = False
                raise InputError("Answer a few questions first: relearning learns from your answers.")
            started = time.perf_counter()
            self._stop.clear()
            self.relearning = True
            showing = self._showing_seconds()

            def report(progress) -> None:
                if progress.time_left is not None:  # it ends when its groups are shown
                    progress = replace(progress, time_left=progress.time_left + showing,
                                       time_after=(progress.time_after or 0.0) + showing)
                self.progress = progress
                stage = RELEARNING_STAGES.get(progress.stage)
                if stage is not None and progress.metrics:  # its own curves, drawn as it goes
                    self.job.metrics.append(metric_point(progress, stage))
                if callback is not None:
                    callback(progress)

            try:
                self.clusterer.relearn(self.answers, callback=report, stop=self._stop)
                if self.clusterer.stopped_:
                    raise InputError("Relearning was stopped; the groups are as they were.")
                # a page reloaded meanwhile follows it until its groups are shown
                report(Progress("finishing", 1, 1, message="Writing and showing the new groups",
                                elapsed=time.perf_counter() - started, time_left=0.0))
                shown = time.perf_counter()
                result = self._publish(started)
                self.showing_seconds = time.perf_counter() - shown
                return result
            finally:
                self.relearning, self.relearn_pending, self.progress = False, False, None

    def relearn_estimate(self) -> float | None:
        """About how many seconds :meth:`relearn` takes now on this machine, from the pace this run measured
        (:meth:`~l2c_explorer.clustering.L2CClusterer.relearn_seconds`) and the time it took to show groups
        here; None when it cannot relearn."""
        seconds = self.clusterer.relearn_seconds()
        return None if seconds is None else seconds + self._showing_seconds()

    def _showing_seconds(self) -> float:
        """Seconds to write and show new groups, as measured at the last relearning's end; before the first,
        the longer of the run's writing of its first results and the last change's (an answer's refit takes
        milliseconds: the rest is showing its groups): a relearning rewrites the run file's new features
        and graph, which an answer leaves as they were."""
        if self.showing_seconds:
            return self.showing_seconds
        return max(self.writing_seconds, self.seconds or 0.0)

    def stop_relearning(self) -> bool:
        """Ask a relearning under way to stop (it ends within a training step; nothing changes); False when
        none is under way."""
        if not self.relearning:
            return False
        self._stop.set()
        return True

    def _give(self, given: Given):
        with self._lock:
            ConstraintSet(len(self.clusterer.paths_), [*self.answers, *given.answers],
                          names=self.clusterer.paths_)  # a contradiction is refused before anything changes
            self.given.append(given)
            self._shown_before.append(self.shown)
            try:
                return self._apply()
            except Exception:
                self.given.pop()
                self._shown_before.pop()
                raise

    def _apply(self, restore: np.ndarray | None = None):
        """Refit with every answer, rewrite the run's files, publish the new groups and map colours
        (``restore``: the groups shown before the change being undone, whose numbers come back)."""
        started = time.perf_counter()
        self.clusterer.refit(self.answers)
        return self._publish(started, restore=restore)

    def _publish(self, started: float, *, restore: np.ndarray | None = None):
        """Rewrite the run's files and publish the clusterer's groups, map colours and new curve points.

        The groups keep their numbers and names while most of their images stay (:func:`carry_numbers`, from
        the groups shown until now, or from ``restore`` after an undo).
        """
        from ..numbering import carry_numbers
        from ..results import write_discovery_results
        from .run_result import run_result

        job, old = self.job, self.job.result
        # numbers are never given twice, so an undo's restore needs only what was shown, not the next number
        self.numbers, self.next_number = carry_numbers(old.labels if restore is None else restore,
                                                       self.clusterer.labels_, next_number=self.next_number)
        self.last_change = describe_change(old.labels, self.shown, old.names)
        score = old.truth is not None
        names = [*old.names, *group_names(self.next_number)[len(old.names):]]
        # (answers.csv too: the refit's answers are this teacher's)
        summary = write_discovery_results(self.clusterer, old.run_dir, score=score, names=names,
                                          numbers=self.numbers)
        result = run_result(self.clusterer, old.run_dir, summary, old.stopped, numbers=self.numbers, names=names)
        job.result = result
        summaries = cluster_summaries(result.embedding, result.labels, result.confidence, truth=result.truth)
        extras = {"clusters": summaries, "teach_version": self.version + 1}
        coords = job.extra("coords")
        if coords is not None:
            payload = job.extra("map") or {}
            extras["map"] = map_payload(coords, result.labels, result.confidence, paths=result.paths,
                                        thumbs=job.extra("thumb_keys"), truth=result.truth,
                                        class_names=result.names, method=payload.get("method", "umap"),
                                        preview=bool(payload.get("preview", False)))
        job.publish(**extras)
        self.version += 1
        self.seconds = time.perf_counter() - started
        return result
