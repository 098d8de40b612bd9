"""Background jobs: results, stopping, queueing, failures, concurrent readers."""

from __future__ import annotations

import threading
import time

import pytest

from l2c_explorer.errors import InputError, StoppedError
from l2c_explorer.jobs import DONE, FAILED, QUEUED, RUNNING, STOPPED, JobRegistry, MetricsBuffer, new_job_id, wait_all
from l2c_explorer.progress import Progress


def counting_target(steps: int, delay: float = 0.01):
    """A job that reports `steps` training points and returns how many it did (stops early when asked)."""

    def target(callback, stop):
        done = 0
        for step in range(1, steps + 1):
            if stop.is_set():
                break
            time.sleep(delay)
            done = step
            callback(Progress("training", step, steps, epoch=step, metrics={"loss": 1.0 / step, "k_estimated": 3}))
        return done

    return target


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_job_runs_to_completion_and_records_metrics():
    reg = JobRegistry()
    job = reg.submit("discover", counting_target(20), params={"folder": "x"})
    assert job.wait(5)
    assert job.status == DONE and job.result == 20
    points, version = job.metrics.read()
    assert [p["step"] for p in points] == list(range(1, 21))
    assert points[-1]["loss"] == pytest.approx(1 / 20) and points[-1]["stage"] == "training"
    snap = job.snapshot()
    assert snap.finished and snap.n_points == 20 and snap.version == version and snap.eta is None
    assert snap.params == {"folder": "x"}
    assert reg.get(job.id) is job


def test_stop_keeps_what_was_learnt_and_is_quick():
    reg = JobRegistry()
    job = reg.submit("discover", counting_target(10_000, delay=0.005))
    assert wait_for(lambda: len(job.metrics) >= 3)
    asked = time.monotonic()
    job.stop()
    assert job.wait(2.0), "a stopped job must end within 2 s"
    assert time.monotonic() - asked < 2.0
    assert job.status == STOPPED
    assert job.finished_at - job.stop_requested < 2.0
    assert 3 <= job.result < 10_000  # partial result kept


def test_queued_jobs_wait_for_a_slot_and_can_be_stopped_while_waiting():
    reg = JobRegistry(max_running=1)
    gate = threading.Event()

    def blocking(callback, stop):
        gate.wait(5)
        return "first"

    first = reg.submit("discover", blocking)
    second = reg.submit("discover", counting_target(3))
    third = reg.submit("discover", counting_target(3))
    assert wait_for(lambda: first.status == RUNNING)
    time.sleep(0.3)
    assert second.status == QUEUED and third.status == QUEUED
    third.stop()
    assert third.wait(2) and third.status == STOPPED and third.result is None
    gate.set()
    assert wait_all([first, second], timeout=5)
    assert (first.result, second.result) == ("first", 3)


def test_non_exclusive_jobs_do_not_wait_for_a_slot():
    reg = JobRegistry(max_running=1)
    gate = threading.Event()
    busy = reg.submit("discover", lambda cb, stop: gate.wait(5))
    light = reg.submit("thumbnails", counting_target(2), exclusive=False)
    assert light.wait(2) and light.status == DONE
    gate.set()
    assert busy.wait(5)


def test_failures_become_messages():
    reg = JobRegistry()

    def bad_input(cb, stop):
        raise InputError("Folder not found: /nowhere")

    def bug(cb, stop):
        raise ZeroDivisionError("oops")

    def stopped(cb, stop):
        raise StoppedError("Stopped before training began.")

    a, b, c = reg.submit("x", bad_input), reg.submit("x", bug), reg.submit("x", stopped)
    assert wait_all([a, b, c], timeout=5)
    assert (a.status, a.error) == (FAILED, "Folder not found: /nowhere")
    assert b.status == FAILED and "ZeroDivisionError" in b.error
    assert c.status == STOPPED and c.result is None


def test_grace_abandons_a_stage_that_cannot_stop():
    reg = JobRegistry()
    release = threading.Event()

    def slow_reading(callback, stop):
        callback(Progress("reading", 1, 100))
        release.wait(5)  # ignores the stop flag, like decoding a big folder
        return "late"

    job = reg.submit("discover", slow_reading)
    assert wait_for(lambda: job.progress is not None)
    job.stop(grace=0.2)
    assert job.wait(2) and job.status == STOPPED and job.result is None and job.abandoned
    release.set()
    job.thread.join(5)
    assert job.result is None  # what the thread returned later is discarded


def test_grace_waits_for_training_which_returns_a_partial_result():
    reg = JobRegistry()
    job = reg.submit("discover", counting_target(10_000, delay=0.01))
    assert wait_for(lambda: len(job.metrics) >= 2)
    job.stop(grace=0.01)
    assert job.wait(3)
    assert job.status == STOPPED and not job.abandoned and job.result >= 2


def test_grace_waits_for_a_job_finishing_up_after_learning():
    reg = JobRegistry()

    def learn_then_finish(callback, stop):
        callback(Progress("training", 1, 10, metrics={"loss": 1.0}))
        while not stop.is_set():
            time.sleep(0.01)
        callback(Progress("finishing"))
        time.sleep(0.5)  # e.g. measuring the model on held-out data, after the stop
        return "what was learnt"

    job = reg.submit("similarity", learn_then_finish)
    assert wait_for(lambda: job.learning_started)
    job.stop(grace=0.05)
    assert job.wait(3) and job.status == STOPPED and job.result == "what was learnt" and not job.abandoned


def test_done_callbacks_run_before_waiters_wake():
    reg = JobRegistry()
    seen = []
    job = reg.submit("x", counting_target(2), on_done=lambda j: seen.append(j.result))
    assert job.wait(5)
    assert seen == [2]
    job.add_done_callback(lambda j: seen.append("late"))  # already finished: called at once
    assert seen == [2, "late"]


def test_publish_versions_extras():
    reg = JobRegistry()
    job = reg.submit("x", counting_target(1))
    v0 = job.extras_version
    job.publish(map={"n": 1})
    assert job.extras_version == v0 + 1 and job.extra("map") == {"n": 1} and job.extra("missing", 7) == 7


def test_registry_forgets_old_finished_jobs_and_ids_are_unique():
    reg = JobRegistry(max_running=None, keep=3)
    jobs = [reg.submit("x", counting_target(1)) for _ in range(6)]
    assert wait_all(jobs, 5)
    reg.submit("x", counting_target(1)).wait(5)
    assert len(reg.jobs()) <= 4
    assert reg.get(jobs[0].id) is None
    assert len({new_job_id() for _ in range(100)}) == 100
    with pytest.raises(ValueError):
        reg.submit("x", counting_target(1), job_id=jobs[-1].id)


def test_two_owners_do_not_see_each_others_jobs():
    reg = JobRegistry(max_running=None)
    a = reg.submit("discover", counting_target(5), owner="tab-a")
    b = reg.submit("discover", counting_target(7), owner="tab-b")
    assert wait_all([a, b], 5)
    assert reg.jobs(owner="tab-a") == [a] and reg.latest(owner="tab-b") is b
    assert (a.result, b.result) == (5, 7)
    assert len(a.metrics) == 5 and len(b.metrics) == 7


def test_metrics_buffer_thins_long_histories_and_is_thread_safe():
    buf = MetricsBuffer(max_points=100)

    def writer(offset):
        for i in range(500):
            buf.append({"step": offset + i})

    threads = [threading.Thread(target=writer, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    points, version = buf.read()
    assert len(points) <= 100 and version == 2000
    assert buf.last() == points[-1]
