"""Progress reporting and stopping, shared by the API, the command line and the app.

Long operations take two optional keyword arguments:

``callback(progress)``
    receives a :class:`Progress` at every step worth reporting (files read, training steps, epochs);
``stop``
    a :class:`threading.Event`; when it is set the operation ends at the next step (well under a second
    on a CPU) and returns what it has learnt so far.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace


@dataclass
class Progress:
    """One progress report.

    Attributes
    ----------
    stage : str
        ``"reading"``, ``"features"``, ``"graph"``, ``"training"``, ``"self-training"`` or ``"finishing"``.
    step, total : int
        Position within the stage (``total`` may be 0 when unknown).
    epoch : float or None
        Fractional epoch during training.
    metrics : dict
        Latest values, e.g. ``{"loss": 0.31, "k_estimated": 27}`` (training; self-training reports its own loss).
    elapsed : float
        Seconds since the operation started.
    eta : float or None
        Estimated seconds left in this stage.
    time_left : float or None
        Estimated seconds left in the whole operation, every stage still to come included (only for
        operations that declare their stages, see :class:`RunPlan`).
    message : str
        A sentence for people.
    details : dict
        Results of the operation worth showing as soon as they exist, e.g. ``{"spectrum": {...}}``: the
        eigenvalues the number of categories was read from.
    time_after : float or None
        Of ``time_left``, the seconds planned after the current stage: still ahead however long this stage
        takes (:meth:`time_left_now` never counts down below them).
    made : float
        When it was reported (``time.monotonic()``), from which :meth:`time_left_now` counts down.
    """

    stage: str
    step: int = 0
    total: int = 0
    epoch: float | None = None
    metrics: dict = field(default_factory=dict)
    elapsed: float = 0.0
    eta: float | None = None
    message: str = ""
    time_left: float | None = None
    details: dict = field(default_factory=dict)
    time_after: float | None = None
    made: float = field(default_factory=time.monotonic, repr=False, compare=False)  # when it was reported

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0

    def time_left_now(self) -> float | None:
        """``time_left`` counted down since this report was made (a long stage may not report for a while),
        but never below the stages still to come: a stage that runs late does not make them shorter."""
        if self.time_left is None:
            return None
        return max(self.time_left - (time.monotonic() - self.made), self.time_after or 0.0, 0.0)


Callback = Callable[[Progress], None]


# ---------------------------------------------------------------------------------------------------
# time left in a whole run


# The share of a run's planned work whose measured pace is trusted fully to rescale the rest: the time left
# is judged from a tenth of the run on (benchmarks/app_time_left.py, which measures how well it holds).
TRUSTED_SHARE = 0.1


@dataclass(frozen=True)
class Stage:
    """One planned stage of a run: ``units`` of work (images, steps) at about ``cost`` seconds each.

    ``cost`` is a prior: seconds per unit on a reference machine (2 CPU cores). The plan corrects it with
    what it measures while the run goes on. ``calibrates``: whether this stage's measured pace says how fast
    the machine runs the other stages (not so for reading files, whose pace is the disk's and that of
    whatever else reads at the same time).
    """

    name: str
    units: float
    cost: float
    calibrates: bool = True

    @property
    def prior(self) -> float:
        return self.units * self.cost


class RunPlan:
    """The time left in a run made of several stages, some of them repeated (a second pass).

    The time left is the rest of the current stage plus every stage still to come, each its prior seconds
    times the best known pace for its kind: measured over prior seconds of an earlier stage of the same kind
    (the second pass's training runs at the first pass's pace; a second features pass that only runs a
    pretrained trunk's top keeps its own, much smaller, prior), else how much faster or slower than the
    priors this machine has been so far. Extrapolating only the current stage says "a few seconds left"
    just before a second round starts; extrapolating a stage's first steps (which carry its set-up) says
    "an hour".

    Stages are matched in order by name: a report of a stage other than the current one starts the next
    planned stage of that name; a report whose step goes back starts the next one too. Reports of
    unplanned stages ("finishing") leave the plan where it is. A stage whose first report already says it
    is complete was read back (from a cache) rather than computed: its seconds count, but say nothing of
    this machine's pace.
    """

    def __init__(self, stages: list[Stage], *, calibrated: bool = False):
        self.stages = [s for s in stages if s.units > 0]
        # priors already measured on this machine by the run being followed up (a relearning's,
        # :func:`calibrated`): a stage running off its prior may be the machine slowing down, or that stage
        # alone (a relearning's sharpening ran at 2x its prior and its graph and training at theirs: passed
        # on in full, the time left said 3.5x the truth), so the stages still to come take half of it (in
        # ratio: 2x becomes 1.41x, within a factor of 2 of either truth up to 4x)
        self.calibrated = calibrated
        self.current = -1
        self.started_at: list[float | None] = [None] * len(self.stages)
        self.seconds: list[float | None] = [None] * len(self.stages)  # measured durations of finished stages
        self.read_back = [False] * len(self.stages)  # complete at their first report: no measure of pace
        self.last_step, self.last_done = 0, 0.0  # position in the current stage
        self.last_time = 0.0  # of the last report of a planned stage
        # the current stage's first report: the work before it is the stage's set-up (a relearning's
        # self-training builds its batches and prototypes before its first 15 ms step), not its pace
        self.first_time, self.first_done = 0.0, 0.0
        self.after_current = 0.0  # seconds planned after the current stage, as of the last update

    def _advance(self, name: str, step: int, total: int, now: float) -> bool:
        """Move to the planned stage this report belongs to; False when it is not planned.

        A stage's time runs from the previous stage's last report to its own last one: the work before
        its first report (its first step) is its own.
        """
        at = self.current
        if at >= 0 and self.stages[at].name == name and step >= self.last_step:
            self.last_time = now
            return True
        following = [i for i in range(at + 1, len(self.stages)) if self.stages[i].name == name]
        if not following:
            return False
        began = now if at < 0 else self.last_time
        if at >= 0:
            self.seconds[at] = self.last_time - self.started_at[at]
        for skipped in range(at + 1, following[0]):  # planned but never reported (nothing to do there)
            self.seconds[skipped] = 0.0
        self.current = following[0]
        self.started_at[self.current] = began
        self.read_back[self.current] = total > 0 and step >= total
        self.last_time = self.first_time = now
        self.first_done = step / total if total else 0.0
        return True

    def _paced(self, i: int) -> bool:
        """Whether stage ``i`` finished with a duration that measures this machine's pace."""
        return bool(self.seconds[i]) and self.stages[i].prior > 0 and not self.read_back[i]

    def _speed(self, spent: float, done: float) -> float:
        """How much slower (>1) or faster than its priors this machine runs: the paces (measured over prior
        seconds) of the finished stages and of the current one's part done, averaged in proportion to their
        priors as ratios are (geometrically: one stage ten times slower than the rest, an eigensolver beside
        another program, weighs by its planned share, not by its ten times as many seconds), 1 before anything
        is measured. Trusted (geometrically, from 1) in proportion to the share of the planned work it
        covers, fully from :data:`TRUSTED_SHARE` on: a first stage slowed by something else (a pass it does
        not report, a thumbnailer reading at the same time) otherwise multiplies everything still to come."""
        logs = prior = 0.0
        for i, s in enumerate(self.stages[: self.current]):
            if self._paced(i) and s.calibrates:
                logs, prior = logs + s.prior * math.log(self.seconds[i] / s.prior), prior + s.prior
        current = self.stages[self.current]
        if done > 0 and spent > 0 and current.prior > 0 and current.calibrates and not self.read_back[self.current]:
            part = done * current.prior
            logs, prior = logs + part * math.log(spent / part), prior + part
        if prior <= 0:
            return 1.0
        planned = sum(s.prior for s in self.stages if s.calibrates)
        trust = min(1.0, prior / (TRUSTED_SHARE * planned)) if planned > 0 else 1.0
        return math.exp(logs / prior * trust)

    def _measured_pace(self, kind: str) -> float | None:
        """Measured over prior seconds of the latest finished stage of this kind, if any."""
        paces = [self.seconds[i] / s.prior for i, s in enumerate(self.stages[: self.current])
                 if s.name == kind and self._paced(i)]
        return paces[-1] if paces else None

    def measured(self) -> list[tuple[Stage, float]]:
        """The stages that ran so far with the seconds each took, as measures of this machine's pace (those
        read back from a cache left out); the current stage too once its last report says it is complete.
        A later operation's priors can be scaled by them (:func:`calibrated`)."""
        out = [(s, self.seconds[i]) for i, s in enumerate(self.stages[: max(self.current, 0)]) if self._paced(i)]
        at = self.current
        if at >= 0 and self.last_done >= 1 and self.stages[at].prior > 0 and not self.read_back[at]:
            out.append((self.stages[at], self.last_time - self.started_at[at]))
        return out

    def revise(self, name: str, cost: float) -> None:
        """A better prior for the stages of this name still to come (learnt on the way: a size, a count)."""
        for i in range(self.current + 1, len(self.stages)):
            if self.stages[i].name == name:
                self.stages[i] = replace(self.stages[i], cost=cost)

    def update(self, name: str, step: int, total: int, now: float) -> float | None:
        """Record a report; return the estimated seconds left in the run (None: not a planned stage yet)."""
        if self._advance(name, step, total, now):
            self.last_step, self.last_done = step, (step / total if total else 0.0)
        elif self.current < 0:
            return None
        stage = self.stages[self.current]
        spent = now - self.started_at[self.current]
        done = self.last_done
        # the stage's own pace: from its first report on once it has reported again, its set-up before that
        # counted once rather than extrapolated over every step
        setup, paced_spent, paced_done = 0.0, spent, done
        if done > self.first_done:
            setup = self.first_time - self.started_at[self.current]
            paced_spent, paced_done = spent - setup, done - self.first_done
        speed = self._speed(paced_spent, paced_done)
        later_speed = speed ** 0.5 if self.calibrated else speed
        pace = self._measured_pace(stage.name)
        expected = stage.prior * (pace if pace is not None else speed)
        if done > 0:
            # trust the stage's own pace more the further it has gone
            trust = done ** 0.5
            own = setup + paced_spent / paced_done * (1 - done + paced_done)
            expected = trust * own + (1 - trust) * expected
        after = 0.0
        for later in self.stages[self.current + 1:]:
            pace = self._measured_pace(later.name)
            if pace is None:
                same = later.name == stage.name and stage.prior > 0 and not self.read_back[self.current]
                pace = expected / stage.prior if same else later_speed
            after += later.prior * pace
        self.after_current = after
        return max(expected - spent, 0.0) + after


# How much slower or faster than the priors' reference machine (2 cores) another stage's measured pace may make
# a stage never measured on this machine. Other stages' ratios on a small folder are mostly their set-up: on 120
# demo drawings without sharpening the graph stage ran at 4.2x its prior and training at 35x, while the
# relearning's self-training then ran at 0.9x its own; 1.5 keeps such a borrowed estimate within a factor of 2.
BORROWED_PACE_LIMIT = 1.5


def calibrated(stages: list[Stage], measured: list[tuple[Stage, float]]) -> list[Stage]:
    """``stages`` with priors from measurements on this machine, so that how long a follow-up of a run takes
    is said from how that run went, here and now.

    ``measured``: stages that ran before, with their seconds (:meth:`RunPlan.measured`). Each prior cost is
    scaled by the measured over prior seconds of the one of the same name planned most alike (closest cost
    per unit: a pretrained trunk's pass and its top's are both "features"; the latest among equals), else
    of all of them together (1 when nothing was measured).
    """
    paced = [(s, seconds) for s, seconds in measured if s.prior > 0 and seconds > 0]
    total_prior = sum(s.prior for s, _ in paced if s.calibrates)
    overall = sum(seconds for s, seconds in paced if s.calibrates) / total_prior if total_prior > 0 else 1.0
    # a kind of stage never measured here borrows the others' pace only within limits: beyond them the others'
    # ratio is their own set-up, not the machine (a 30-step training stage on 120 drawings measured 35x its
    # prior, nearly all of it set-up; scaling a relearning's unmeasured self-training by it said 136 s for 6 s)
    overall = min(max(overall, 1.0 / BORROWED_PACE_LIMIT), BORROWED_PACE_LIMIT)
    out = []
    for stage in stages:
        alike = [(abs(math.log(s.cost / stage.cost)) if stage.cost > 0 else 0.0, -i, seconds / s.prior)
                 for i, (s, seconds) in enumerate(paced) if s.name == stage.name]
        out.append(replace(stage, cost=stage.cost * (min(alike)[2] if alike else overall)))
    return out


class Reporter:
    """Turns raw step counts into :class:`Progress` reports with elapsed time, an ETA and the time left.

    Call :meth:`plan` with the run's stages (once their sizes are known) to get ``time_left`` in every
    report; without a plan only the current stage's ETA is given.
    """

    def __init__(self, callback: Callback | None, stop: threading.Event | None = None):
        self.callback = callback
        self.stop = stop
        self.started = time.perf_counter()
        self.run_plan: RunPlan | None = None
        self._stage: tuple[str, float, int] | None = None  # current stage: name, start time, last step

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def should_stop(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def plan(self, stages: list[Stage], *, calibrated: bool = False) -> None:
        """Declare the stages still to come, in order (see :class:`RunPlan`; ``calibrated``: their priors were
        measured here, by the run this one follows up)."""
        self.run_plan = RunPlan(stages, calibrated=calibrated)

    def revise(self, stage: str, cost: float) -> None:
        """A better prior for the planned stages of this name still to come (see :meth:`RunPlan.revise`)."""
        if self.run_plan is not None:
            self.run_plan.revise(stage, cost)

    def __call__(self, stage: str, step: int = 0, total: int = 0, *, message: str = "", epoch=None,
                 details: dict | None = None, **metrics) -> None:
        now = time.perf_counter()
        # a stage seen again later (a second pass), or counting from the start again, is timed afresh
        if self._stage is None or self._stage[0] != stage or step < self._stage[2]:
            self._stage = (stage, now, step)
        began = self._stage[1]
        self._stage = (stage, began, step)
        eta = None
        if total and step:
            eta = (now - began) / step * max(total - step, 0)
        time_left = self.run_plan.update(stage, step, total, now) if self.run_plan is not None else None
        if self.callback is not None:
            self.callback(
                Progress(
                    stage=stage,
                    step=step,
                    total=total,
                    epoch=epoch,
                    metrics=metrics,
                    elapsed=now - self.started,
                    eta=eta,
                    message=message,
                    time_left=time_left,
                    details=dict(details or {}),
                    time_after=self.run_plan.after_current if time_left is not None else None,
                )
            )
