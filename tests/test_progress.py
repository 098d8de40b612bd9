"""Progress reports: the time left in a whole run, second round included, from a plan of its stages."""

from __future__ import annotations

import pytest

from l2c_explorer.progress import Reporter, RunPlan, Stage, calibrated


def simulate(plan: RunPlan, timeline):
    """Feed (stage, step, total, seconds) reports; return (time, time left) after each."""
    out, now = [], 0.0
    for stage, step, total, seconds in timeline:
        now += seconds
        out.append((now, plan.update(stage, step, total, now)))
    return out


def two_pass_run(train_step: float, self_step: float):
    """A discovery's reports on a machine where a training step takes ``train_step`` seconds."""
    timeline = [("reading", 100, 100, 1.0), ("features", 100, 100, 0.5), ("graph", 0, 1, 0.0),
                ("graph", 1, 1, 1.0)]
    timeline += [("training", s, 10, train_step) for s in range(1, 11)]
    timeline += [("self-training", s, 10, self_step) for s in range(1, 11)]
    timeline += [("features", 100, 100, 0.5), ("graph", 0, 1, 0.0), ("graph", 1, 1, 1.0)]
    timeline += [("training", s, 10, train_step) for s in range(1, 11)]
    return timeline


PLAN = [Stage("reading", 100, 0.01), Stage("features", 100, 0.005), Stage("graph", 1, 1.0),
        Stage("training", 10, 0.5), Stage("self-training", 10, 0.5), Stage("features", 100, 0.005),
        Stage("graph", 1, 1.0), Stage("training", 10, 0.5)]


@pytest.mark.parametrize("speed", [0.5, 1.0, 3.0])
def test_time_left_counts_the_second_round(speed):
    """On a machine 2x faster or 3x slower than the priors, the estimate stays within a factor of 2 once a
    tenth of the run is done, across the second round too."""
    timeline = two_pass_run(0.5 * speed, 0.5 * speed)
    points = simulate(RunPlan(PLAN), timeline)
    total = points[-1][0]
    for now, left in points:
        truth = total - now
        if now >= 0.1 * total and truth > 1.0 * speed:
            assert truth / 2 <= left <= truth * 2, (now, left, truth)


def test_the_second_training_runs_at_the_first_ones_measured_pace():
    plan = RunPlan(PLAN)
    points = simulate(plan, two_pass_run(0.2, 0.5))
    # just before the second round's training: its 10 steps are expected at 0.2 s each (measured), not 0.5
    before = next(left for (now, left), report in zip(points, two_pass_run(0.2, 0.5))
                  if report[0] == "graph" and report[1] == 1 and now > 10)
    assert before == pytest.approx(10 * 0.2, rel=0.05)


def test_unplanned_stages_and_no_plan():
    plan = RunPlan([Stage("training", 10, 1.0), Stage("graph", 1, 2.0)])
    assert plan.update("finishing", 0, 0, 0.0) is None  # nothing planned has started yet
    assert plan.update("training", 0, 10, 0.0) == pytest.approx(12.0)
    assert plan.update("training", 5, 10, 2.5) == pytest.approx(2.5 + 2 * 0.5)  # twice as fast as the prior
    assert plan.update("finishing", 0, 0, 2.6) == pytest.approx(2.4 + 1.0, abs=0.3)  # as at the last report

    seen = []
    report = Reporter(seen.append)
    report("training", 1, 10)
    assert seen[-1].time_left is None and seen[-1].eta is not None
    report.plan([Stage("training", 10, 0.0)])
    report("training", 2, 10)
    assert seen[-1].time_left is not None


def test_a_stage_seen_again_is_timed_afresh():
    """The second pass's stage ETA is not measured from the first pass's start (it said "an hour")."""
    seen = []
    report = Reporter(seen.append)
    report("training", 5, 10)
    report("self-training", 1, 10)
    report("training", 1, 10)
    report("training", 2, 10)
    assert seen[-1].eta < 1.0


def test_details_reach_the_callback():
    seen = []
    Reporter(seen.append)("graph", 1, 1, details={"spectrum": {"k": 3}})
    assert seen[-1].details == {"spectrum": {"k": 3}}


def test_a_revised_prior_applies_to_the_stages_still_to_come():
    """Once the first clustering says how many groups there are, the self-training steps cost what that
    batch costs, not what a full batch would."""
    plan = RunPlan([Stage("training", 10, 0.1), Stage("self-training", 10, 1.0)])
    assert plan.update("training", 0, 10, 0.0) == pytest.approx(1.0 + 10.0)
    plan.revise("self-training", 0.3)
    assert plan.update("training", 0, 10, 0.0) == pytest.approx(1.0 + 3.0)
    plan.revise("training", 5.0)  # the stage under way keeps its prior
    assert plan.update("training", 0, 10, 0.0) == pytest.approx(1.0 + 3.0)

    report = Reporter(None)
    report.revise("self-training", 0.3)  # no plan yet: nothing to revise, nothing fails
    report.plan([Stage("self-training", 10, 1.0)])
    report.revise("self-training", 0.3)
    assert report.run_plan.stages[0].cost == pytest.approx(0.3)


def test_reading_files_does_not_rescale_the_computing_stages():
    """Reading runs at the disk's pace: 5x slower reading than its prior says nothing about training."""
    plan = RunPlan([Stage("reading", 100, 0.01, calibrates=False), Stage("training", 10, 1.0)])
    plan.update("reading", 0, 100, 0.0)
    plan.update("reading", 100, 100, 5.0)  # prior 1 s, took 5 s
    assert plan.update("training", 0, 10, 5.0) == pytest.approx(10.0)


def test_a_short_slow_start_does_not_multiply_everything_left():
    """A first stage 3x slower than its prior, covering 2% of the planned work, moves the rest's estimate
    far less than 3x; once a tenth of the work is measured at that pace, the estimate follows it fully."""
    plan = RunPlan([Stage("features", 100, 0.01), Stage("training", 49, 1.0)])
    plan.update("features", 0, 100, 0.0)
    plan.update("features", 100, 100, 3.0)  # prior 1 s of 50 s planned, took 3 s
    early = plan.update("training", 0, 49, 3.0)
    assert 49.0 < early < 49.0 * 3 ** 0.5
    plan = RunPlan([Stage("features", 100, 0.05), Stage("training", 45, 1.0)])
    plan.update("features", 0, 100, 0.0)
    plan.update("features", 100, 100, 15.0)  # prior 5 s of 50 s planned (a tenth), took 15 s
    assert plan.update("training", 0, 45, 15.0) == pytest.approx(45.0 * 3)


def test_a_later_stage_of_the_same_name_keeps_its_own_prior():
    """A pretrained trunk's second features pass runs only its top (a hundredth of the work): the first pass's
    measured pace applies to its prior, not the first pass's seconds per image (which said "as long again")."""
    plan = RunPlan([Stage("features", 100, 0.1), Stage("training", 10, 1.0), Stage("features", 100, 0.001)])
    plan.update("features", 0, 100, 0.0)
    plan.update("features", 100, 100, 20.0)  # twice its prior
    assert plan.update("training", 0, 10, 20.0) == pytest.approx(10 * 2.0 + 100 * 0.001 * 2.0)


def test_a_stage_read_back_from_a_cache_says_nothing_of_the_pace():
    """Features read back from the cache (complete at their first report, in no time) do not make the machine
    look a hundred times faster than its priors."""
    plan = RunPlan([Stage("features", 100, 0.05), Stage("training", 45, 1.0)])
    plan.update("features", 100, 100, 0.05)
    assert plan.update("training", 0, 45, 0.05) == pytest.approx(45.0)
    assert plan.measured() == []
    plan.update("training", 45, 45, 90.05)
    assert [(s.name, seconds) for s, seconds in plan.measured()] == [("training", pytest.approx(90.0))]


def relearning_stages(steps: int = 10) -> list[Stage]:
    return [Stage("reading", 100, 0.0, calibrates=False), Stage("self-training", steps, 0.5),
            Stage("features", 100, 0.005), Stage("graph", 1, 1.0), Stage("training", 10, 0.5)]


def test_a_relearning_plan_takes_its_priors_from_the_run_it_follows():
    """A relearning's stages cost what the same kinds of stage measured in its run (the second pass: the
    graph and training after sharpening), its time left counting from there."""
    run = RunPlan(PLAN)
    timeline = [("reading", 0, 100, 0.0), ("reading", 100, 100, 1.0), ("features", 0, 100, 0.0),
                ("features", 100, 100, 1.0), ("graph", 0, 1, 0.0), ("graph", 1, 1, 1.0)]
    timeline += [("training", s, 10, 1.0) for s in range(1, 11)]
    timeline += [("self-training", s, 10, 1.5) for s in range(1, 11)]
    timeline += [("features", 0, 100, 0.0), ("features", 100, 100, 1.0), ("graph", 0, 1, 0.0), ("graph", 1, 1, 2.0)]
    timeline += [("training", s, 10, 1.0) for s in range(1, 11)]
    simulate(run, timeline)
    measured = run.measured()
    assert [s.name for s, _ in measured] == [s.name for s in PLAN]  # every stage, the last one included
    # self-training at 3x its prior, the second graph at 2x, training and features at 2x
    stages = calibrated(relearning_stages(), measured)
    assert [s.cost for s in stages[1:]] == pytest.approx([1.5, 0.01, 2.0, 1.0])
    plan = RunPlan(stages)
    assert plan.update("reading", 100, 100, 0.0) == pytest.approx(15.0 + 1.0 + 2.0 + 10.0)
    # the relearning runs as the run did: the time left holds within a factor of 2 from a tenth of it on
    timeline = [("self-training", s, 10, 1.5) for s in range(1, 11)]
    timeline += [("features", 0, 100, 0.0), ("features", 100, 100, 1.0), ("graph", 0, 1, 0.0), ("graph", 1, 1, 2.0)]
    timeline += [("training", s, 10, 1.0) for s in range(1, 11)]
    points = simulate(plan, timeline)
    total = points[-1][0]
    for now, left in points:
        if now >= 0.1 * total and total - now > 1.0:
            assert (total - now) / 1.2 <= left <= (total - now) * 1.2, (now, left)


def test_a_relearning_plan_without_a_measure_of_its_kind_uses_the_runs_overall_pace():
    run = RunPlan([Stage("features", 100, 0.01), Stage("training", 10, 0.5)])  # a run without sharpening
    simulate(run, [("features", 0, 100, 0.0), ("features", 100, 100, 3.0), ("training", 5, 10, 2.5),
                   ("training", 10, 10, 2.5)])
    stages = calibrated(relearning_stages(), run.measured())  # 3 s for 1 s of priors, 5 s for 5 s: 8 / 6
    assert stages[1].cost == pytest.approx(0.5 * 8 / 6) and stages[2].cost == pytest.approx(0.005 * 3)
    assert calibrated(relearning_stages(), []) == relearning_stages()  # nothing measured: the priors as they are


def test_the_time_left_shown_between_reports_never_drops_below_the_stages_to_come():
    """A stage that reports only at its end (the graph) and runs late counts down to the stages after it, not
    to "0 s left" while they are all still ahead."""
    seen = []
    report = Reporter(seen.append)
    report.plan([Stage("graph", 1, 1.0), Stage("training", 10, 1.0)])
    report("graph", 0, 1)
    progress = seen[-1]
    assert progress.time_left == pytest.approx(11.0, abs=0.1) and progress.time_after == pytest.approx(10.0)
    progress.made -= 0.5  # half a second later, no report yet
    assert progress.time_left_now() == pytest.approx(10.5, abs=0.1)
    progress.made -= 60.0  # the graph runs a minute late: the training is still ahead
    assert progress.time_left_now() == pytest.approx(10.0)


def test_a_stage_never_measured_borrows_the_others_pace_only_within_limits():
    from l2c_explorer.progress import BORROWED_PACE_LIMIT, Stage, calibrated

    measured = [(Stage("training", 30, 0.001), 1.5)]  # 50x its prior: mostly set-up on a tiny folder
    later = calibrated([Stage("training", 30, 0.001), Stage("self-training", 100, 0.04)], measured)
    assert later[0].prior == pytest.approx(1.5)  # the same kind: its own measured pace
    assert later[1].prior == pytest.approx(100 * 0.04 * BORROWED_PACE_LIMIT)
    quick = calibrated([Stage("self-training", 100, 0.04)], [(Stage("training", 30, 0.001), 0.003)])
    assert quick[0].prior == pytest.approx(100 * 0.04 / BORROWED_PACE_LIMIT)


def test_a_stages_set_up_is_counted_once_not_per_step():
    """A relearning's self-training spends 0.3 s building its batches before its first 15 ms step (its
    features were read back): the time left after its next steps must not extrapolate that set-up over the
    100 steps (it said 2.2x the truth)."""
    plan = RunPlan([Stage("features", 500, 0.0), Stage("self-training", 100, 0.015), Stage("training", 50, 0.01)])
    plan.update("features", 500, 500, 0.0)
    plan.update("self-training", 1, 100, 0.3)
    now, truth_left = 0.3, 99 * 0.015 + 50 * 0.01
    for step in range(2, 11):
        now += 0.015
        truth_left -= 0.015
        left = plan.update("self-training", step, 100, now)
        assert 0.8 <= left / truth_left <= 1.25, (step, left, truth_left)


@pytest.mark.parametrize("calibrated, expected_after", [(False, 2 * 1.0), (True, 2 ** 0.5 * 1.0)])
def test_a_calibrated_plan_passes_on_half_of_a_stages_pace(calibrated, expected_after):
    """Priors measured on this machine (a relearning's): a stage running at twice its prior stretches the
    stages after it by 1.41x, not 2x (a plan of priors on a reference machine passes its pace on in full)."""
    plan = RunPlan([Stage("self-training", 10, 0.1), Stage("graph", 1, 1.0)], calibrated=calibrated)
    plan.update("self-training", 0, 10, 0.0)
    left = plan.update("self-training", 10, 10, 2.0)  # done, at twice its prior
    assert left == pytest.approx(expected_after)
