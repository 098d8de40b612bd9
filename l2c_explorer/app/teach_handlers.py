"""The Teach panel's event handlers: questions, answers, merges, splits, Undo and Relearn over a run's
:class:`~l2c_explorer.app.teaching.Teacher`.

A mixin of :class:`~l2c_explorer.app.handlers.Handlers`, which gives it ``bench``, ``page`` and ``thumb_prefix``
and the explore panel's outputs it redraws after a change (``_groups_outputs``, ``_map_json``). Like every
handler, a problem is said in the panel's status line, never raised.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from ..questions import KINDS
from . import views
from .problems import PROBLEMS, plain


class TeachHandlers:
    """Handlers of the Teach panel (see the module's note for what the class using it provides)."""

    def teach_outputs(self) -> list:
        """What every teach handler updates (see :meth:`_taught`)."""
        e, t = self.page.explore, self.page.explore.teach
        return [t.question, t.current, t.answers, t.status, t.groups, t.split_group, t.split_first, t.split_second,
                t.confirm_split, e.map, e.clusters, e.cluster, e.results_md, self.page.run.curves,
                t.same, t.different, t.skip, t.ask, t.relearn]

    def _teach_problem(self, message: str) -> list:
        """A problem with a teach action, said in the status line; nothing else changes (no error badges)."""
        out = [gr.update() for _ in self.teach_outputs()]
        out[3] = views.problem(message)
        return out

    def _question(self, teacher) -> tuple[str, dict | None]:
        q = teacher.question()
        if q is None:
            return views.question_html(None, "", "") + self._teach_marker(teacher), None
        result = teacher.job.result
        urls = []
        for i in (q["a"], q["b"]):
            thumb = self.bench.thumbnail(result, i)
            urls.append(f"{self.thumb_prefix}{Path(thumb).name}" if thumb else "")
        return views.question_html(q, *urls) + self._teach_marker(teacher), q

    def _question_panel(self, teacher) -> tuple[str, dict | None, list]:
        """The next question, what it is about, and the answer buttons (Same, Different, Skip: usable only with a
        question; Ask: the eye-catching one when there is none)."""
        question, current = self._question(teacher)
        ready = gr.update(interactive=current is not None)
        return question, current, [ready, ready, ready,
                                   gr.update(variant="secondary" if current is not None else "primary")]

    @staticmethod
    def _group_choices(clusters, names: list[str]) -> list[tuple[str, int]]:
        """The groups the merge and split pickers offer (the group list's choices without "all")."""
        return [(label, c) for label, c in views.cluster_choices(clusters, names) if c >= 0]

    def _first_question(self, job_id: str, t) -> dict:
        """The teach panel when a run has finished: its best question shown, the answer buttons ready."""
        try:
            teacher = self.bench.teacher(job_id)
            question, current, buttons = self._question_panel(teacher)
        except PROBLEMS:  # a run that cannot be taught (the paper's pipeline): the panel says so when asked
            return {}
        choices = self._group_choices(teacher.job.extra("clusters") or [], teacher.job.result.names)
        return {t.question: question, t.current: current, **dict(zip((t.same, t.different, t.skip, t.ask), buttons)),
                t.groups: gr.update(choices=choices, value=[]), t.split_group: gr.update(choices=choices, value=None),
                t.relearn: self._relearn_button(teacher), t.status: views.teach_status(teacher, None, None)}

    @staticmethod
    def _relearn_button(teacher):
        """The Relearn button, with how long a relearning takes now on this machine (measured, not promised)."""
        seconds = teacher.relearn_estimate() if teacher.answers else None
        label = "Relearn from the answers (R)"
        return gr.update(value=label if seconds is None else f"{label} · about {views.duration(seconds)}")

    @staticmethod
    def _teach_marker(teacher) -> str:
        """What the page's confirmations read: how many answers this run holds, and whether an undo would also
        take back a relearning (and how long it took)."""
        relearnt = teacher.clusterer.relearnings_
        drops = bool(relearnt) and relearnt[-1] == len(teacher.answers)
        seconds = teacher.clusterer.timings_.get("relearn", 0.0) if drops else 0.0
        return (f"<span hidden class='l2c-taught' data-answers='{len(teacher.answers)}' "
                f"data-undo-relearning='{round(float(seconds)) if drops else ''}'></span>")

    def _taught(self, teacher, message: str) -> list:
        """The page after a change: next question, answers, groups, map colours, counts and curves."""
        e = self.page.explore
        job, result = teacher.job, teacher.job.result
        question, current, buttons = self._question_panel(teacher)
        choices = self._group_choices(job.extra("clusters") or [], result.names)
        groups = self._groups_outputs(job, result, e, "discover")
        payload = job.extra("map")
        refs = {"k_estimated": (job.params["k_true"], "true number of categories")} if job.params.get("k_true") \
            else None
        return [question, current, teacher.rows(), message,
                gr.update(choices=choices, value=[]), gr.update(choices=choices, value=None),
                gr.update(value=None, visible=False), gr.update(value=None, visible=False), gr.update(visible=False),
                self._map_json(payload) if payload else gr.update(), groups[e.clusters], groups[e.cluster],
                views.results_markdown(result),
                views.curves_json(job.metrics.read()[0], views.DISCOVER_SERIES, references=refs), *buttons,
                self._relearn_button(teacher)]

    def _change(self, job_id: str, change, status=views.teach_status) -> list:
        try:
            teacher = self.bench.teacher(job_id)
            before = teacher.job.result.n_clusters
            result = change(teacher)
        except PROBLEMS as exc:
            return self._teach_problem(plain(exc))
        return self._taught(teacher, status(teacher, before, result.n_clusters))

    def teach_ask(self, job_id: str) -> list:
        try:
            teacher = self.bench.teacher(job_id)
        except PROBLEMS as exc:
            return self._teach_problem(plain(exc))
        return self._taught(teacher, views.teach_status(teacher, None, None))

    def teach_answer(self, job_id: str, question: dict | None, verdict: str) -> list:
        """Same / Different / Skip for the question shown."""
        if not question:
            return self._teach_problem("There is no question to answer yet: click \"Ask me a question\".")
        a, b = int(question["a"]), int(question["b"])
        if verdict == "skip":
            try:
                teacher = self.bench.teacher(job_id)
            except PROBLEMS as exc:
                return self._teach_problem(plain(exc))
            teacher.skip(a, b)
            return self._taught(teacher, "Skipped; here is another question.")
        kind = question.get("kind") if question.get("kind") in KINDS else None
        return self._change(job_id, lambda t: t.answer(a, b, verdict == "same", kind=kind))

    def teach_same(self, job_id: str, question: dict | None) -> list:
        return self.teach_answer(job_id, question, "same")

    def teach_different(self, job_id: str, question: dict | None) -> list:
        return self.teach_answer(job_id, question, "different")

    def teach_skip(self, job_id: str, question: dict | None) -> list:
        return self.teach_answer(job_id, question, "skip")

    def teach_merge(self, job_id: str, groups: list | None) -> list:
        if not groups or len(groups) != 2:
            return self._teach_problem("Choose two groups to merge.")
        return self._change(job_id, lambda t: t.merge(int(groups[0]), int(groups[1])))

    def teach_propose_split(self, job_id: str, group) -> list:
        """The two halves the app would split a group into (outputs: both galleries, Confirm, the status)."""
        if group is None or group == "":
            return [gr.update(), gr.update(), gr.update(), views.problem("Choose the group to split.")]
        try:
            teacher = self.bench.teacher(job_id)
            plan = teacher.propose_split(int(group))
        except PROBLEMS as exc:
            return [gr.update(), gr.update(), gr.update(), views.problem(plain(exc))]
        result = teacher.job.result
        name = result.names[int(group)]
        return [gr.update(value=self.bench.gallery(result, plan["first"], with_group=False), visible=True,
                          label=f"The split the app proposes for {name}: one half ({len(plan['first'])} images)"),
                gr.update(value=self.bench.gallery(result, plan["second"], with_group=False), visible=True,
                          label=f"the other half ({len(plan['second'])} images)"),
                gr.update(visible=True),
                (f"Check the two halves of {name} below. Confirm only if each half is one category; otherwise "
                 "answer questions, or select the images that do not belong on the map.")]

    def teach_split(self, job_id: str, group) -> list:
        if group is None or group == "":
            return self._teach_problem("Choose the group to split.")
        return self._change(job_id, lambda t: t.split(int(group)))

    def teach_not_here(self, job_id: str, selection: list[int] | None) -> list:
        return self._change(job_id, lambda t: t.not_here(selection or []))

    def teach_undo(self, job_id: str) -> list:
        return self._change(job_id, lambda t: t.undo())

    def teach_relearn(self, job_id: str, progress=gr.Progress()) -> list:  # noqa: B008 (Gradio's idiom)
        """Relearn the features and the groups from the answers (seconds: the page shows its progress)."""
        def report(p) -> None:
            left = p.time_left_now()
            desc = p.message or "Relearning from the answers"
            progress(p.fraction, desc=desc if left is None else f"{desc} · about {views.duration(left)} left")

        return self._change(job_id, lambda t: t.relearn(callback=report), status=views.relearn_status)

    def teach_relearn_follow(self, job_id: str):
        """Before a relearning starts: the run's timer on again, so its curves and time left are drawn live."""
        try:
            self.bench.teacher(job_id).relearn_pending = True
        except PROBLEMS:
            return gr.Timer()
        return gr.Timer(active=True)

    def teach_stop_relearn(self, job_id: str) -> str:
        try:
            teacher = self.bench.teacher(job_id)
        except PROBLEMS as exc:
            return views.problem(plain(exc))
        if teacher.stop_relearning():
            return "Stopping the relearning: the groups stay as they were."
        return "No relearning is under way."
