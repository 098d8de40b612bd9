"""The time-left plan: the stages of a fit and of a relearning, and the stopwatch."""

import time
from types import SimpleNamespace

import pytest

from l2c_explorer.planning import (
    STAGE_COSTS,
    Stopwatch,
    clustering_stages,
    feature_cost,
    fit_stages,
    relearn_stages,
    self_training_step_cost,
    trunk_seconds,
)
from l2c_explorer.similarity_model import load_similarity_model


@pytest.fixture(scope="module")
def model():
    return load_similarity_model("omniglot")


def test_a_fit_plans_two_passes_with_self_training_and_the_paper_one(model):
    names = [s.name for s in fit_stages(500, model, method="graph", steps=100, self_training_steps=50, groups=30)]
    assert names == ["reading", "features", "graph", "training", "self-training", "features", "graph", "training"]
    one = [s.name for s in fit_stages(500, model, method="graph", steps=100, self_training_steps=0, groups=30)]
    assert one == ["reading", "features", "graph", "training"]
    paper = [s.name for s in fit_stages(500, model, method="paper", steps=100, self_training_steps=50, groups=30)]
    assert paper == ["reading", "features", "training"]
    again = fit_stages(500, model, method="graph", steps=100, self_training_steps=50, groups=30)[5]
    assert again.prior == pytest.approx(500 * feature_cost(model, again=True))  # 500 images, a later pass


def test_a_pretrained_trunk_is_priced_by_its_own_measured_pass_else_by_its_input_pixels():
    def trunk(backbone, size):
        return SimpleNamespace(card={"architecture": {"backbone": backbone}}, preprocessing=SimpleNamespace(size=size))

    lite0, lite2 = trunk_seconds(trunk("efficientnet-lite0", 224)), trunk_seconds(trunk("efficientnet-lite2", 260))
    assert lite2 > 1.5 * lite0 > 0  # measured: Lite2 at 260 px takes about twice Lite0's time per photo
    assert trunk_seconds(trunk("efficientnet-lite1", 448)) == pytest.approx(4 * lite0)


def test_training_priors_grow_with_the_pairs_a_step_sees_and_a_relearning_reads_nothing_kept(model):
    small, large = clustering_stages(100, 10)[1], clustering_stages(1000, 10)[1]
    assert large.prior > small.prior > STAGE_COSTS["training"]
    stages = relearn_stages(200, model, pixels_kept=True, steps=100, relearn_steps=50, n_clusters=10,
                            measured=[])
    assert [s.name for s in stages] == ["reading", "self-training", "features", "graph", "training"]
    assert stages[0].prior == 0.0 and stages[1].units > 0
    assert self_training_step_cost(50, model) > self_training_step_cost(5, model) > 0



def test_a_self_training_step_is_priced_the_same_up_to_48x48_drawings_and_by_pixels_beyond(model):
    def sized(size, channels=1):
        return SimpleNamespace(net=model.net, preprocessing=SimpleNamespace(size=size, channels=channels))

    drawings = self_training_step_cost(20, sized(32))
    assert self_training_step_cost(20, sized(48)) == pytest.approx(drawings)  # measured: 89 and 80 ms a step
    assert self_training_step_cost(20, model) == pytest.approx(drawings)  # the shipped 48x48 model
    assert self_training_step_cost(20, sized(96)) == pytest.approx(4 * drawings)
    assert self_training_step_cost(20, sized(48, channels=3)) == pytest.approx(3 * drawings)

def test_the_stopwatch_adds_up_each_stage():
    watch = Stopwatch()
    for _ in range(2):
        watch.start("graph")
        time.sleep(0.001)
        watch.stop("graph")
    assert set(watch) == {"graph"} and watch["graph"] > 0 and "graph" in watch.cpu
