"""The time-left plan of a discovery: the stages of a fit or a relearning with their prior costs, and a stopwatch.

The priors (:data:`STAGE_COSTS`) are only a starting point: :class:`~l2c_explorer.progress.RunPlan` scales them
by how fast this machine has been so far, and a relearning's by the pace its run measured
(:func:`~l2c_explorer.progress.calibrated`).
"""

from __future__ import annotations

import time

from .ccn import FULL_BATCH, MINI_BATCH
from .nets import has_frozen_trunk
from .progress import Stage, calibrated
from .selftrain import batch_images
from .similarity_model import SimilarityModel

# Seconds per unit of work of each stage of a fit on 2 CPU cores (reading and features: per image of 32x32
# pixels and pass; graph: per image and pass, growing with the folder up to the dense eigensolver's limit;
# training: per step, growing with the pairs it sees; self-training: per step, plus per image of its batch, of
# up to 48x48 pixels, see SELF_TRAINING_PIXELS). Only priors for the time left
# (:class:`~l2c_explorer.progress.RunPlan`), which scales them by how fast this machine has been so far, so
# what matters is their ratios. Fitted to the per-stage times of a quiet run of benchmarks/omniglot.py
# (benchmarks/results/omniglot.json: 120 fits of 400-900 images, 2 threads; times only, no accuracy): 0.08 s
# per 100-image self-training step, split 29% / 71% between the step and its images as
# benchmarks/self_training_cost.py measured (22.5 ms + 0.57 ms per image on the 48x48 omniglot model, as on
# the 32x32 one before it). benchmarks/app_time_left.py measures how well the resulting estimate holds.
STAGE_COSTS = {"reading": 4e-4, "features": 9e-4, "graph": 2.7e-4, "graph_squared": 4e-8, "training": 1e-3,
               "training_pair": 2.8e-8, "self-training": 0.023, "self-training_image": 5.7e-4}


def pixel_scale(model: SimilarityModel, reference: int = 32) -> float:
    """How much more a model's input holds than the ``reference`` x ``reference`` grayscale images a prior was
    measured on."""
    return (model.preprocessing.size / reference) ** 2 * model.preprocessing.channels


# A self-training step costs the same on 32x32 and 48x48 drawings (benchmarks/self_training_cost.py: 89 ms
# and 80 ms a 100-image step, the 32x32 and 48x48 omniglot models; its fixed costs, the losses and Adam, hide
# the convolutions at these sizes): its prior grows with the input's pixels only beyond 48x48 grayscale.
# Scaled by pixels from 32x32, it priced the 48x48 model's sharpening at 2.6x what it took, and the demo's
# first time-left readings up to 2.25x the truth, a relearning after a run without sharpening 2x.
SELF_TRAINING_PIXELS = 48


# A pretrained trunk's pass per image, in bfloat16 on 2 cores, measured as the features stage of a discovery of
# Tiny ImageNet's novel-dev (1,250 photos) with nothing else running: EfficientNet-Lite0 at 224x224 12.5 to
# 13.6 ms a photo (benchmarks/photos.py, then `discover` on the same folder), Lite2 at 260x260 22 to 27 ms
# (benchmarks/results/photos.json: 27.8 s; `discover --model photos`: 33.3 s). Other trunks: Lite0's, scaled by
# their input's pixels. The top's share of that: the second pass reuses the trunk's features, so it costs only
# the top.
TRUNK_SECONDS = {"efficientnet-lite0": 0.0125, "efficientnet-lite2": 0.027}
TOP_SHARE = 0.01
# A self-training step of a frozen trunk's top, per trainable weight of the top: its cost is the pair and
# prototype losses and Adam over those weights, whatever the batch (10 to 100 features cost the same). Chosen
# on the photos demo (demo_data/photos_everyday, the shipped photos model: 1.64 M weights; 100 steps of a fit,
# 2 cores): 12.5 to 13.5 ms a step with little else running (a fit alone, and the photo runs of
# benchmarks/app_time_left.py), about twice that beside the app's thumbnailer, which the measured pace absorbs.
# A share of the trunk's pass (TOP_SHARE) priced the step at under 1 ms: the time left missed the sharpening.
TOP_STEP_SECONDS_PER_WEIGHT = 8e-9


def trunk_seconds(model: SimilarityModel) -> float:
    """Prior seconds per image of a pretrained trunk's pass (:data:`TRUNK_SECONDS`)."""
    backbone = model.card.get("architecture", {}).get("backbone")
    if backbone in TRUNK_SECONDS:
        return TRUNK_SECONDS[backbone]
    return TRUNK_SECONDS["efficientnet-lite0"] * (model.preprocessing.size / 224) ** 2


def feature_cost(model: SimilarityModel, *, again: bool = False) -> float:
    """Prior seconds per image of a features stage (``again``: a later pass over the same images)."""
    if has_frozen_trunk(model.net):
        return trunk_seconds(model) * (TOP_SHARE if again else 1.0)
    return STAGE_COSTS["features"] * pixel_scale(model)


def self_training_step_cost(n_clusters: int, model: SimilarityModel) -> float:
    """Prior seconds of one self-training step after a first clustering into ``n_clusters`` groups."""
    if has_frozen_trunk(model.net):  # only the top trains, on the trunk's features
        top = model.net.encoder
        return TOP_STEP_SECONDS_PER_WEIGHT * sum(
            w.numel() for w in (*top.hidden.parameters(), *top.project.parameters()))
    per_step = STAGE_COSTS["self-training"] + STAGE_COSTS["self-training_image"] * batch_images(n_clusters)
    return per_step * max(1.0, pixel_scale(model, SELF_TRAINING_PIXELS))


def clustering_stages(n_images: int, steps: int) -> list[Stage]:
    """The graph and training stages (``steps`` training steps) of a pass over ``n_images`` images, with their
    priors."""
    c = STAGE_COSTS
    batch = n_images if n_images <= FULL_BATCH else MINI_BATCH  # a training step sees every pair of these
    return [Stage("graph", n_images, c["graph"] + c["graph_squared"] * min(n_images, 3000)),
            Stage("training", steps, c["training"] + c["training_pair"] * batch ** 2)]


def fit_stages(n_images: int, model: SimilarityModel, *, method: str, steps: int, self_training_steps: int,
               groups: int) -> list[Stage]:
    """The stages of a fit on ``n_images`` images, with their priors (see :data:`STAGE_COSTS`).

    ``groups``: the number of groups the self-training batch is planned for until the first clustering says how
    many there are (K when given, else the most considered: as if every batch were full).
    """
    c = STAGE_COSTS
    one_pass = [Stage("features", n_images, feature_cost(model)), *clustering_stages(n_images, steps)]
    reading = Stage("reading", n_images, c["reading"], calibrates=False)
    stages = [reading, *one_pass]
    if method == "paper":  # the paper's network on the embeddings: no graph, no second round
        return [reading, one_pass[0], one_pass[2]]
    if self_training_steps:
        second = [Stage("features", n_images, feature_cost(model, again=True)), *one_pass[1:]]
        stages += [Stage("self-training", self_training_steps, self_training_step_cost(groups, model)), *second]
    return stages


def relearn_stages(n_images: int, model: SimilarityModel, *, pixels_kept: bool, steps: int, relearn_steps: int,
                   n_clusters: int, measured) -> list[Stage]:
    """The stages of a relearning, with priors from a run's measured pace ``measured`` (its ``stage_seconds_``,
    :func:`~l2c_explorer.progress.calibrated`). ``pixels_kept``: the fit left the pixels (and a trunk's
    features) in the folder's cache."""
    stages = [Stage("reading", n_images, 0.0 if pixels_kept else STAGE_COSTS["reading"], calibrates=False)]
    if has_frozen_trunk(model.net):
        stages.append(Stage("features", n_images, 0.0 if pixels_kept else feature_cost(model)))
    stages += [Stage("self-training", relearn_steps, self_training_step_cost(n_clusters, model)),
               Stage("features", n_images, feature_cost(model, again=True)), *clustering_stages(n_images, steps)]
    return calibrated(stages, measured)


class Stopwatch(dict):
    """Seconds per stage (wall clock), with the process's CPU seconds per stage in :attr:`cpu`."""

    def __init__(self):
        super().__init__()
        self.cpu: dict[str, float] = {}
        self._open: dict[str, tuple[float, float]] = {}

    def start(self, stage: str) -> None:
        self._open[stage] = (time.perf_counter(), time.process_time())

    def stop(self, stage: str) -> None:
        wall, cpu = self._open.pop(stage)
        self[stage] = self.get(stage, 0.0) + time.perf_counter() - wall
        self.cpu[stage] = self.cpu.get(stage, 0.0) + time.process_time() - cpu
