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
changed); its training steps continue the run's curves, and a page opened or reloaded meanwhile follows it
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


@dataclass
class Given:
    """One change a person made: its answers (one, or several for "do not belong here") and how."""

    how: str  # "same", "different", "one category", "split", "not here"
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
        from .workbench import RunResult

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
        self.progress = None  # the latest report of a relearning under way (a reloaded page shows it)

    # -- reading ----------------------------------------------------------------------------------------

    @property
    def answers(self) -> list[Answer]:
        return [a for g in self.given for a in g.answers]

    def constraints(self) -> ConstraintSet:
        return ConstraintSet(len(self.clusterer.paths_), self.answers, names=self.clusterer.paths_)

    def question(self) -> dict | None:
        """The next question worth asking (not skipped), as the page shows it; None when none is left."""
        for q in self.clusterer.questions(8):
            if (min(q.a, q.b), max(q.a, q.b)) not in self.skipped:
                return {"a": q.a, "b": q.b, "kind": q.kind, "text": q.text, "groups": list(q.groups),
                        "path_a": self.clusterer.paths_[q.a], "path_b": self.clusterer.paths_[q.b]}
        return None

    def rows(self) -> list[list]:
        """The answers given, oldest first: [number, how, image a, image b, same or different]."""
        paths = self.clusterer.paths_
        out = []
        for g in self.given:
            for x in g.answers:
                out.append([len(out) + 1, g.how, paths[x.a], paths[x.b], "same" if x.same else "different"])
        return out

    def representative(self, members: np.ndarray, *, besides: int | None = None) -> int:
        from ..questions import representative

        members = np.asarray(members)
        if besides is not None:
            members = members[members != besides]
        if len(members) == 0:
            raise InputError("That group has no other image to compare with.")
        return representative(self.clusterer.embedding_, members)

    def members(self, cluster: int) -> np.ndarray:
        labels = self.clusterer.labels_
        members = np.flatnonzero(labels == int(cluster))
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

    def answer(self, a: int, b: int, same: bool, *, how: str | None = None):
        """Record "same"/"different" for images ``a`` and ``b`` and re-cluster."""
        return self._give(Given(how or ("same" if same else "different"), [Answer(int(a), int(b), bool(same))]))

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
        return self._give(Given("split", [Answer(plan["a"], plan["b"], False)]))

    def not_here(self, indices) -> object:
        """Selected images do not belong in their groups: "different" from each group's typical image."""
        labels = self.clusterer.labels_
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
            last = self.given.pop()
            try:
                return self._apply()
            except Exception:
                self.given.append(last)
                raise

    def load(self, answers: list[Answer], how: str = "from a file"):
        """Add answers read elsewhere (e.g. an ``answers.csv``) as one change."""
        return self._give(Given(how, list(answers)))

    def relearn(self, callback=None):
        """Relearn the features and the clusters from every answer so far, then publish as after a change.
        :meth:`stop_relearning` (from another thread) ends it with the groups as they were."""
        with self._lock:
            if not self.answers:
                raise InputError("Answer a few questions first: relearning learns from your answers.")
            started = time.perf_counter()
            history = len(self.clusterer.history_)
            self._stop.clear()
            self.relearning = True

            def report(progress) -> None:
                self.progress = progress
                if callback is not None:
                    callback(progress)

            try:
                self.clusterer.relearn(self.answers, callback=report, stop=self._stop)
            finally:
                self.relearning, self.progress = False, None
            if self.clusterer.stopped_:
                raise InputError("Relearning was stopped; the groups are as they were.")
            learnt = [p for p in self.clusterer.history_[history:] if p.get("pass") == "relearn"]
            return self._publish(started, learnt)

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
            try:
                return self._apply()
            except Exception:
                self.given.pop()
                raise

    def _apply(self):
        """Refit with every answer, rewrite the run's files, publish the new groups and map colours."""
        started = time.perf_counter()
        self.clusterer.refit(self.answers)
        return self._publish(started)

    def _publish(self, started: float, learnt: list[dict] = ()):
        """Rewrite the run's files and publish the clusterer's groups, map colours and new curve points."""
        from ..constraints import write_constraints_csv
        from ..results import ANSWERS_FILE, write_discovery_results
        from .workbench import run_result

        job, old = self.job, self.job.result
        score = old.truth is not None
        summary = write_discovery_results(self.clusterer, old.run_dir, score=score)
        if self.answers:
            write_constraints_csv(old.run_dir / ANSWERS_FILE, self.answers, self.clusterer.paths_)
        result = run_result(self.clusterer, old.run_dir, summary, old.stopped)
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
        last = max((m.get("step", 0) for m in job.metrics.read()[0] if m.get("stage") == "training"), default=0) \
            if learnt else 0
        for point in learnt:  # a relearning's training steps continue the run's curves
            job.metrics.append({"stage": "training", "step": last + point["step"], "epoch": point["epoch"],
                                "elapsed": 0.0, "loss": point["loss"], "k_estimated": point["k_estimated"]})
        job.publish(**extras)
        self.version += 1
        self.seconds = time.perf_counter() - started
        return result
