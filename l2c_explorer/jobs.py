"""Background jobs: long operations run in a worker thread that the app (or a notebook) only reads.

A :class:`Job` wraps one call ``target(callback, stop)`` (the signature every long operation of the
package accepts, see :mod:`l2c_explorer.progress`). The worker thread records the latest
:class:`~l2c_explorer.progress.Progress` and appends every report that carries metrics to a
:class:`MetricsBuffer`; readers poll :meth:`Job.snapshot` and :meth:`MetricsBuffer.read` at their own pace,
so a slow or closed browser tab never slows the computation down, and a reloaded page finds the job again
by its id.

:class:`JobRegistry` owns the jobs: it gives each an unguessable id, runs at most ``max_running`` at a
time (the others wait in a queue), and forgets old finished jobs.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import L2CError, StoppedError
from .progress import Progress

logger = logging.getLogger(__name__)

QUEUED, RUNNING, STOPPING, DONE, STOPPED, FAILED = "queued", "running", "stopping", "done", "stopped", "failed"
FINISHED = frozenset({DONE, STOPPED, FAILED})

Target = Callable[[Callable[[Progress], None], threading.Event], Any]


class MetricsBuffer:
    """A thread-safe, append-only list of metric points (dicts), read incrementally.

    Parameters
    ----------
    max_points : int
        Points kept; older ones are thinned (every other one dropped) so long runs stay cheap to draw.
    """

    def __init__(self, max_points: int = 2000):
        self.max_points = max_points
        self._points: list[dict] = []
        self._version = 0  # grows on every change, also when thinning rewrites history
        self._lock = threading.Lock()

    def append(self, point: dict) -> None:
        with self._lock:
            self._points.append(dict(point))
            if len(self._points) > self.max_points:
                # keep the first and last points, halve the middle
                self._points = self._points[:1] + self._points[1:-1:2] + self._points[-1:]
            self._version += 1

    def read(self) -> tuple[list[dict], int]:
        """All points and the buffer version (unchanged version = nothing new to draw)."""
        with self._lock:
            return [dict(p) for p in self._points], self._version

    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    def last(self) -> dict | None:
        with self._lock:
            return dict(self._points[-1]) if self._points else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._points)


@dataclass
class JobSnapshot:
    """What a reader needs to draw a job's state, copied under the job's lock."""

    id: str
    kind: str
    status: str
    stage: str | None
    step: int
    total: int
    fraction: float
    epoch: float | None
    metrics: dict
    elapsed: float
    eta: float | None
    message: str
    error: str | None
    n_points: int
    version: int
    params: dict = field(default_factory=dict)
    time_left: float | None = None  # in the whole run, when the run planned its stages

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def active(self) -> bool:
        return not self.finished


class Job:
    """One long operation running (or waiting to run) in a worker thread.

    Use :meth:`JobRegistry.submit` to create jobs.

    Attributes
    ----------
    id : str
        Unguessable identifier (safe to put in a URL).
    kind : str
        What the job does, e.g. ``"discover"``, ``"similarity"``, ``"map"``.
    owner : str or None
        Who started it (a browser tab, a notebook); only used for listing.
    params : dict
        The options it was started with, for display and for reconnecting a page.
    status : str
        ``"queued"``, ``"running"``, ``"stopping"``, ``"done"``, ``"stopped"`` or ``"failed"``.
    result : object
        What ``target`` returned (also after a stop: what was learnt so far); None until it returns.
    error : str or None
        A message for people when the job failed.
    metrics : MetricsBuffer
        Every progress report that carried metrics (loss, estimated K, ...).
    """

    def __init__(
        self,
        job_id: str,
        kind: str,
        target: Target,
        *,
        owner: str | None = None,
        params: dict | None = None,
        partial_stages: Iterable[str] = ("training",),
    ):
        self.id = job_id
        self.kind = kind
        self.owner = owner
        self.params = dict(params or {})
        self.target = target
        self.status = QUEUED
        self.result: Any = None
        self.error: str | None = None
        self.metrics = MetricsBuffer()
        self.progress: Progress | None = None
        self.created = time.time()
        self.started: float | None = None
        self.finished_at: float | None = None
        self.stop_event = threading.Event()
        self.stop_requested: float | None = None  # time.time() of the first stop request
        self.extras: dict[str, Any] = {}  # follow-up artefacts (e.g. the map of a discovery), see publish()
        self.extras_version = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._on_done: list[Callable[[Job], None]] = []
        self.thread: threading.Thread | None = None
        self.partial_stages = frozenset(partial_stages)
        self.learning_started = False  # reached a partial stage: from then on a stop keeps a result
        self.abandoned = False

    # -- reading ----------------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            p = self.progress
            elapsed = (self.finished_at or time.time()) - self.started if self.started else 0.0
            time_left = p.time_left_now() if p is not None and self.status not in FINISHED else None
            return JobSnapshot(
                id=self.id,
                kind=self.kind,
                status=self.status,
                stage=p.stage if p else None,
                step=p.step if p else 0,
                total=p.total if p else 0,
                fraction=p.fraction if p else 0.0,
                epoch=p.epoch if p else None,
                metrics=dict(p.metrics) if p else {},
                elapsed=elapsed,
                eta=None if self.status in FINISHED or p is None else p.eta,
                message=p.message if p else "",
                error=self.error,
                n_points=len(self.metrics),
                version=self.metrics.version,
                params=dict(self.params),
                time_left=time_left,
            )

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished; False when ``timeout`` seconds passed first."""
        return self._done.wait(timeout)

    def publish(self, **items: Any) -> None:
        """Attach artefacts made after (or beside) the job, e.g. its map, or published by the run itself as it
        goes (:attr:`Progress.details <l2c_explorer.progress.Progress.details>`, e.g. the spectrum K was read
        from); readers watch :attr:`extras_version`."""
        with self._lock:
            self.extras.update(items)
            self.extras_version += 1

    def extra(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return self.extras.get(key, default)

    # -- control ----------------------------------------------------------------------------------------

    def stop(self, grace: float | None = None) -> None:
        """Ask the job to stop; it keeps what it has learnt so far. Returns at once.

        Some stages (reading files, computing features) only look at the stop flag when they end. With
        ``grace``, a job that has not yet reached one of its ``partial_stages`` (training) ``grace``
        seconds later is declared stopped without a result; its thread finishes in the background and what
        it returns is discarded. A job that has started learning is always waited for (also while it
        finishes up), since it returns what it learnt.
        """
        with self._lock:
            if self.stop_requested is None:
                self.stop_requested = time.time()
            self.stop_event.set()
            if self.status == RUNNING:
                self.status = STOPPING
        if grace is not None and not self.finished:
            timer = threading.Timer(grace, self._abandon)
            timer.daemon = True
            timer.start()

    def _abandon(self) -> None:
        with self._lock:
            if self.status in FINISHED or self.learning_started:
                return
            self.abandoned = True
        self._finish(STOPPED, None, "Stopped before anything was learnt.")

    def add_done_callback(self, fn: Callable[[Job], None]) -> None:
        """Call ``fn(job)`` in the worker thread once the job has finished (at once if it already has)."""
        with self._lock:
            if self.status not in FINISHED:
                self._on_done.append(fn)
                return
        fn(self)

    # -- worker side ------------------------------------------------------------------------------------

    def _report(self, progress: Progress) -> None:
        with self._lock:
            self.progress = progress
            if progress.stage in self.partial_stages:
                self.learning_started = True
        if progress.details:
            self.publish(**progress.details)
        if progress.metrics:
            self.metrics.append(metric_point(progress))

    def _run(self, slots: threading.Semaphore | None) -> None:
        acquired = False
        try:
            if slots is not None:
                while not (acquired := slots.acquire(timeout=0.2)):
                    if self.stop_event.is_set():
                        self._finish(STOPPED, None, None)
                        return
            with self._lock:
                if self.stop_event.is_set():
                    self.status = STOPPING
                else:
                    self.status = RUNNING
                self.started = time.time()
            try:
                result = self.target(self._report, self.stop_event)
            except StoppedError as exc:
                self._finish(STOPPED, None, str(exc))
            except L2CError as exc:
                self._finish(FAILED, None, str(exc))
            except Exception as exc:  # a bug or an environment problem: keep the app alive, say what happened
                logger.exception("job %s (%s) failed", self.id, self.kind)
                self._finish(FAILED, None, f"Unexpected error: {type(exc).__name__}: {exc}")
            else:
                self._finish(STOPPED if self.stop_event.is_set() else DONE, result, None)
        finally:
            if acquired and slots is not None:
                slots.release()

    def _finish(self, status: str, result: Any, error: str | None) -> None:
        with self._lock:
            if self.status in FINISHED:  # already abandoned: what the thread returns now is discarded
                return
            self.status = status
            self.result = result
            self.error = error
            self.finished_at = time.time()
            if self.started is None:
                self.started = self.finished_at
            callbacks, self._on_done = self._on_done, []
        # Follow-ups run before waiters wake, so wait() sees their effects (e.g. a queued map job).
        for fn in callbacks:
            try:
                fn(self)
            except Exception:  # a follow-up must not turn a finished job into a crash
                logger.exception("follow-up of job %s failed", self.id)
        self._done.set()

    def __repr__(self) -> str:
        return f"Job({self.id!r}, kind={self.kind!r}, status={self.status!r})"


class JobRegistry:
    """Starts, finds and forgets jobs.

    Parameters
    ----------
    max_running : int or None
        Jobs computing at the same time (others wait, status ``"queued"``); None = no limit. Jobs
        submitted with ``exclusive=False`` (light work such as making thumbnails) do not take a slot.
    keep : int
        Finished jobs remembered (the oldest are forgotten first); running jobs are always kept.
    """

    def __init__(self, max_running: int | None = 1, keep: int = 50):
        self.max_running = max_running
        self.keep = keep
        self._slots = threading.Semaphore(max_running) if max_running else None
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(
        self,
        kind: str,
        target: Target,
        *,
        owner: str | None = None,
        params: dict | None = None,
        exclusive: bool = True,
        on_done: Callable[[Job], None] | None = None,
        partial_stages: Iterable[str] = ("training",),
        job_id: str | None = None,
    ) -> Job:
        """Start ``target(callback, stop)`` in a new worker thread and return its :class:`Job` at once.

        ``job_id`` (default: a new random one, see :func:`new_job_id`) lets the target know its own id.
        """
        job = Job(job_id or new_job_id(), kind, target, owner=owner, params=params, partial_stages=partial_stages)
        if on_done is not None:
            job.add_done_callback(on_done)
        with self._lock:
            if job.id in self._jobs:
                raise ValueError(f"job id {job.id!r} is already taken")
            self._jobs[job.id] = job
            self._forget_old()
        job.thread = threading.Thread(
            target=job._run, args=(self._slots if exclusive else None,), name=f"l2c-{kind}-{job.id}", daemon=True
        )
        job.thread.start()
        return job

    def get(self, job_id: str | None) -> Job | None:
        """The job with this id, or None (unknown, forgotten, or no id)."""
        if not job_id:
            return None
        with self._lock:
            return self._jobs.get(str(job_id))

    def jobs(self, *, kind: str | None = None, owner: str | None = None) -> list[Job]:
        """Jobs, oldest first, optionally only of one kind or owner."""
        with self._lock:
            out = list(self._jobs.values())
        return [j for j in out if (kind is None or j.kind == kind) and (owner is None or j.owner == owner)]

    def latest(self, *, kind: str | None = None, owner: str | None = None, finished: bool | None = None) -> Job | None:
        found = [j for j in self.jobs(kind=kind, owner=owner) if finished is None or j.finished == finished]
        return found[-1] if found else None

    def stop(self, job_id: str, grace: float | None = None) -> bool:
        job = self.get(job_id)
        if job is None:
            return False
        job.stop(grace)
        return True

    def stop_all(self, *, wait: float | None = None) -> None:
        """Ask every job to stop; optionally wait up to ``wait`` seconds in total for them."""
        jobs = self.jobs()
        for job in jobs:
            job.stop()
        if wait:
            deadline = time.monotonic() + wait
            for job in jobs:
                job.wait(max(0.0, deadline - time.monotonic()))

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.finished]
        for job in finished[: max(0, len(finished) - self.keep)]:
            del self._jobs[job.id]


def metric_point(progress: Progress, stage: str | None = None) -> dict:
    """The point a report with metrics adds to a :class:`MetricsBuffer` (``stage``: recorded under another
    stage than its own)."""
    return {"stage": stage or progress.stage, "step": progress.step, "epoch": progress.epoch,
            "elapsed": round(progress.elapsed, 3), **progress.metrics}


def new_job_id() -> str:
    """A fresh unguessable job id, safe in URLs and folder names."""
    return secrets.token_hex(8)


def wait_all(jobs: Iterable[Job], timeout: float | None = None) -> bool:
    """Wait for several jobs; False when ``timeout`` seconds passed before all finished."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for job in jobs:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not job.wait(left):
            return False
    return True
