"""Discovering categories: the clustering network (CCN) trained from transferred pair similarities.

``L2CClusterer(similarity="omniglot").fit(folder)`` does, in order:

1. read the images at the similarity model's input size (bad files are skipped and listed);
2. embed them with the similarity model, its batch-norm statistics re-estimated on this folder;
3. link every image to the images the similarity model finds most probably "same" (a sparse k-nearest-
   neighbour graph; P(same) grows with the embedding cosine) and compute the graph's diffusion features
   (:mod:`l2c_explorer.graph`): there each category is a tight group;
4. K: given, or estimated from the eigengaps of a self-tuning graph of the same features (at most
   ``max_clusters``; after self-training from the largest gap of the sharpened graph);
5. train the clustering network on the diffusion features with the MCL or KCL loss: its cluster
   distributions must agree on the pairs the graph links (mutual nearest neighbours: "same") and
   disagree on pairs whose diffusion features are far apart ("different"); pairs in between are not
   used. It starts from k-means centres of the features (the spectral solution) and reports the loss
   and the number of clusters in use at every step;
6. self-training (``self_training_steps``, :mod:`l2c_explorer.selftrain`): fine-tune a copy of the
   similarity model on the most confident members of each cluster, then redo steps 2-5 with it.

Why not the CCN of the paper alone (over-provisioned outputs, P(same) > 0.5 as dense targets)? On the
Omniglot evaluation alphabets it reaches about 80% accuracy with K unknown; single pair probabilities
are noisy and their errors chain clusters together, while neighbourhoods in the graph are reliable
(about 90%). BENCHMARKS.md has the measurements.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils.validation import check_is_fitted

from . import __version__
from .constraints import ConstraintSet, apply_answers, as_answers, read_constraints_csv
from .data import truth_problem
from .device import describe_device, resolve_device
from .errors import InputError, StoppedError
from .graph import (
    DIFFUSION_COMPONENTS,
    K_READINGS,
    NEIGHBOUR_SHARE,
    SPLIT_MIN,
    coarse_to_fine_k,
    diffusion_features,
    k_estimate_graph,
    knn_adjacency,
    knn_graph,
    neighbourhood,
    normalised_adjacency,
    stochastic_spectrum,
    top_eigenvalues,
)
from .losses import CLUSTERING_LOSSES
from .metrics import clustering_scores
from .model_io import model_file_path, save_model_file
from .neighbours import Neighbours, nearest_neighbours, rerank
from .nets import CosineClusterHead, has_frozen_trunk
from .options import DISCOVER, SELF_TRAINING_STEPS, discovery_settings
from .paper import train_paper_ccn
from .progress import Callback, Reporter, Stage, calibrated
from .selftrain import batch_images, self_train
from .similarity import SimilarityModel, load_similarity_model
from .store import PixelStore, paths_digest

_DEFAULTS = DISCOVER.defaults

# ---------------------------------------------------------------------------------------------------
# pure steps


def pair_targets(
    features: torch.Tensor, positives: sp.spmatrix, index: torch.Tensor | None = None, *, negative_below: float = 0.3,
    answers: sp.spmatrix | None = None,
) -> torch.Tensor:
    """Pair targets among the images ``index`` (all when None): (m,) -> (m, m) in {+1, 0, -1}.

    +1 where ``positives`` links the two images, -1 where the cosine of their unit ``features`` (n, d)
    is below ``negative_below``, 0 (pair not used) otherwise; where ``answers`` (n, n; a person's answers,
    :meth:`~l2c_explorer.constraints.ConstraintSet.pair_matrix`) says +1 or -1, that instead.
    """
    feats = features if index is None else features[index]
    cos = feats @ feats.T
    targets = torch.where(cos < negative_below, -1.0, 0.0).to(feats.dtype)
    if index is None:
        linked = positives.tocoo()
    else:
        rows = index.cpu().numpy()
        linked = positives[rows][:, rows].tocoo()
    targets[torch.as_tensor(linked.row, device=feats.device), torch.as_tensor(linked.col, device=feats.device)] = 1.0
    if answers is not None and answers.nnz:
        told = _answers_among(answers, index)
        targets[torch.as_tensor(told.row, device=feats.device), torch.as_tensor(told.col, device=feats.device)] = \
            torch.as_tensor(told.data, dtype=feats.dtype, device=feats.device)
    return targets


def _answers_among(answers: sp.spmatrix, index: torch.Tensor | None) -> sp.coo_matrix:
    """The answers' pair targets (n, n) among the images ``index`` (all when None): (m, m)."""
    if index is None:
        return sp.coo_matrix(answers)
    rows = index.cpu().numpy()
    return sp.csr_matrix(answers)[rows][:, rows].tocoo()


def answer_weights(targets: torch.Tensor, answers: sp.spmatrix | None, index: torch.Tensor | None = None):
    """Per-pair loss weights (m, m): 1, and for the pairs a person answered about (``answers`` nonzero) as much
    as all the pairs of one image of the batch together, so that a few answers weigh against the graph's
    many links (None when there are no answers)."""
    if answers is None or not answers.nnz:
        return None
    told = _answers_among(answers, index)
    weights = torch.ones_like(targets)
    weights[torch.as_tensor(told.row, device=targets.device), torch.as_tensor(told.col, device=targets.device)] = \
        float(len(targets))
    return weights


# What a refit starts from (the clusters before the answers are applied, and what they came from): the key in
# the saved state -> the attribute of L2CClusterer. The history is kept as a copy (the curves) and put back in place.
_REFIT_STATE = {"labels": "labels_", "probabilities": "probabilities_", "confidence": "confidence_",
                "n_clusters": "n_clusters_", "features": "diffusion_features_", "eigenvalues": "eigenvalues_",
                "k_eigengap": "k_eigengap_", "k_parts": "k_parts_", "head_state": "head_state_",
                "embedding": "embedding_", "graph": "graph_", "embedding_model": "embedding_model_",
                "prototypes": "prototypes_", "unlike_threshold": "unlike_threshold_"}


# k-means restarts: 10 while n * k is at most this (every folder of the Omniglot and photo benchmarks: at most
# 900 images and 100 clusters, or 12,500 photos and 25 classes), 1 above, where one run of k-means++ and Lloyd
# iterations already costs seconds and the clustering network refines it. A cost bound, not tuned for
# accuracy: at 1e7, the ten k-means++ restarts of a 10,000-image folder with 428 clusters took 58 of its
# 149 s; benchmarks/discover_large.py and benchmarks/scale.py report the accuracy with one.
KMEANS_RESTART_WORK = 1e6


def kmeans_centres(features: np.ndarray, n_clusters: int, *, seed: int = 0, n_init: int | None = None) -> np.ndarray:
    """Unit k-means centres (k, d) of unit features (n, d): the clustering network's starting point."""
    from sklearn.cluster import KMeans

    if n_init is None:
        n_init = 10 if len(features) * n_clusters <= KMEANS_RESTART_WORK else 1
    km = KMeans(n_clusters, n_init=n_init, random_state=seed, max_iter=300 if n_init > 1 else 100).fit(features)
    centres = km.cluster_centers_
    return (centres / (np.linalg.norm(centres, axis=1, keepdims=True) + 1e-12)).astype(np.float32)


def sample_batch(positives: sp.csr_matrix, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """Image indices for one mini-batch: random anchors and, for each, one of its linked partners.

    Random images alone would rarely contain a linked pair once n is much larger than the batch.
    """
    n = positives.shape[0]
    anchors = torch.randperm(n, generator=generator)[: batch_size // 2].numpy()
    start, degree = positives.indptr[anchors], np.diff(positives.indptr)[anchors]
    pick = (torch.rand(len(anchors), generator=generator).numpy() * np.maximum(degree, 1)).astype(np.int64)
    partners = np.where(degree > 0, positives.indices[np.minimum(start + pick, positives.nnz - 1)], anchors)
    return torch.as_tensor(np.unique(np.concatenate([anchors, partners])))


def clusters_in_use(probs: torch.Tensor) -> int:
    """How many clusters are the most probable one for at least one image."""
    return int(torch.unique(probs.argmax(1)).numel())


# Up to FULL_BATCH images a training step sees every pair; a larger folder's step takes MINI_BATCH images (about
# half random anchors, half their linked partners). Chosen for cost, at no loss of accuracy, on 500 Omniglot
# background characters (10,000 drawings, K known): 1,024-image batches took 8.4 s of training for 87.1%, 512
# took 4.5 s for 87.2% (256 were not tried). benchmarks/discover_large.py (6,180 images) reports the result.
FULL_BATCH = 2048
MINI_BATCH = 512


def train_cluster_head(
    features: torch.Tensor,
    positives: sp.csr_matrix,
    centres: torch.Tensor,
    *,
    loss: str = _DEFAULTS.loss,
    steps: int = _DEFAULTS.steps,
    batch_size: int = FULL_BATCH,
    mini_batch: int = MINI_BATCH,
    lr: float = 0.01,
    temperature: float = 10.0,
    negative_below: float = 0.3,
    seed: int = 0,
    report=None,
    history: list | None = None,
    stop: threading.Event | None = None,
    answers: sp.spmatrix | None = None,
) -> tuple[CosineClusterHead, torch.Tensor]:
    """Train a :class:`CosineClusterHead` starting at ``centres`` (k, d) on unit features (n, d).

    Up to ``batch_size`` images all pairs are used at every step (n x n matrix products); beyond, each
    step takes ``mini_batch`` images: random anchors and linked partners, and the images ``answers`` is about.
    ``answers``: a person's answers as pair targets (n, n) (:func:`pair_targets`), each weighed by
    :func:`answer_weights`. Returns the head and the cluster probabilities (n, k) of every image.
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    head = CosineClusterHead(dim=features.shape[1], n_clusters=centres.shape[0], temperature=temperature)
    with torch.no_grad():
        head.centres.copy_(centres)
    head = head.to(features.device)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    loss_fn = CLUSTERING_LOSSES[loss]
    n = len(features)
    full_batch = n <= batch_size
    targets = pair_targets(features, positives, negative_below=negative_below, answers=answers) if full_batch else None
    weights = answer_weights(targets, answers) if full_batch else None
    answered = None if answers is None or not answers.nnz else \
        torch.as_tensor(np.unique(sp.coo_matrix(answers).row), device=features.device)
    report_every = max(1, steps // 100)
    for step in range(1, steps + 1):
        if stop is not None and stop.is_set():
            break
        if full_batch:
            batch, batch_targets, batch_weights = features, targets, weights
        else:
            index = sample_batch(positives, mini_batch, g).to(features.device)
            if answered is not None:
                index = torch.unique(torch.cat([index, answered]))
            batch = features[index]
            batch_targets = pair_targets(features, positives, index, negative_below=negative_below, answers=answers)
            batch_weights = answer_weights(batch_targets, answers, index)
        probs = torch.softmax(head(batch), dim=1)
        value = loss_fn(probs, batch_targets, weights=batch_weights)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        if step == 1 or step % report_every == 0 or step == steps:
            loss_value = float(value.detach())
            k_used = clusters_in_use(probs.detach())
            epoch = step if full_batch else step * len(batch) / n
            if history is not None:
                history.append({"step": step, "epoch": round(epoch, 3), "loss": loss_value, "k_estimated": k_used})
            if report is not None:
                report("training", step, steps, epoch=epoch, loss=loss_value, k_estimated=k_used,
                       message=f"Training the clustering network: step {step}/{steps}")
    with torch.no_grad():
        probs = torch.cat([torch.softmax(head(features[i : i + 8192]), dim=1) for i in range(0, n, 8192)])
    return head, probs


def mutual_neighbour_graph(neighbours: Neighbours, k: int) -> sp.csr_matrix:
    """0/1 graph linking i and j when each is among the other's first ``k`` neighbours."""
    return knn_adjacency(neighbours, k, mutual=True)


def unlike_threshold(neighbours: Neighbours, labels: np.ndarray, quantile: float) -> float:
    """The cosine below which an image counts as unlike every category of a clustering.

    For each image, its cosine to the nearest other member of its own cluster among its ``neighbours``
    (-1 when none of them is); the threshold is the ``quantile`` of these. A new image whose nearest
    member of its assigned cluster is less similar than that is rarer than a ``quantile`` share of the
    clustered images themselves.
    """
    idx = neighbours.indices.numpy()
    cos = neighbours.cosines.numpy()
    same = labels[idx] == labels[:, None]
    nearest_same = np.where(same, cos, -1.0).max(1)
    return float(np.quantile(nearest_same, quantile))


def vote(
    neighbour_labels: np.ndarray, weights: np.ndarray, n_clusters: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster and confidence of each query from its neighbours' clusters (m, k) and weights (m, k).

    The score of a cluster is the sum of the weights of the neighbours in it; the answer is the best
    cluster, its confidence its share of the total.
    """
    m = len(neighbour_labels)
    scores = np.zeros((m, n_clusters))
    np.add.at(scores, (np.repeat(np.arange(m), neighbour_labels.shape[1]), neighbour_labels.ravel()), weights.ravel())
    best = scores.argmax(1)
    total = scores.sum(1)
    confidence = np.where(total > 0, scores[np.arange(m), best] / np.maximum(total, 1e-12), 0.0)
    return best, confidence


# Seconds per unit of work of each stage of a fit on 2 CPU cores (reading and features: per image of 32x32
# pixels and pass; graph: per image and pass, growing with the folder up to the dense eigensolver's limit;
# training: per step, growing with the pairs it sees; self-training: per step, plus per image of its batch).
# Only priors for the time left (:class:`~l2c_explorer.progress.RunPlan`), which scales them by how fast this
# machine has been so far, so what matters is their ratios. Fitted to the per-stage times of a quiet run of
# benchmarks/omniglot.py (benchmarks/results/omniglot.json: 120 fits of 400-900 images, 2 threads; times
# only, no accuracy): 0.08 s per 100-image self-training step, split 29% / 71% between the step and its
# images as benchmarks/self_training_cost.py measured. benchmarks/app_time_left.py measures how well the
# resulting estimate holds.
STAGE_COSTS = {"reading": 4e-4, "features": 9e-4, "graph": 2.7e-4, "graph_squared": 4e-8, "training": 1e-3,
               "training_pair": 2.8e-8, "self-training": 0.023, "self-training_image": 5.7e-4}


def _pixel_scale(model: SimilarityModel) -> float:
    """How much more a model's input holds than the 32x32 grayscale images the priors were measured on."""
    return (model.preprocessing.size / 32) ** 2 * model.preprocessing.channels


# A pretrained trunk's pass per image (EfficientNet-Lite0 at 224x224 in bfloat16: about 80 photos/s on 2 cores,
# benchmarks/photos.py's features stage), and its top's share of that: the second pass reuses the trunk's
# features, so it costs only the top.
TRUNK_SECONDS = 0.0125
TOP_SHARE = 0.01
# A self-training step of a frozen trunk's top, per trainable weight of the top: its cost is the pair and
# prototype losses and Adam over those weights, whatever the batch (10 to 100 features cost the same). Chosen
# on the photos demo (demo_data/photos_everyday, the shipped photos model: 1.64 M weights; 100 steps of a fit,
# 2 cores): 12.5 to 13.5 ms a step with little else running (a fit alone, and the photo runs of
# benchmarks/app_time_left.py), about twice that beside the app's thumbnailer, which the measured pace absorbs.
# A share of the trunk's pass (TOP_SHARE) priced the step at under 1 ms: the time left missed the sharpening.
TOP_STEP_SECONDS_PER_WEIGHT = 8e-9


def _feature_cost(model: SimilarityModel, *, again: bool = False) -> float:
    """Prior seconds per image of a features stage (``again``: a later pass over the same images)."""
    if has_frozen_trunk(model.net):
        return TRUNK_SECONDS * (TOP_SHARE if again else 1.0)
    return STAGE_COSTS["features"] * _pixel_scale(model)


# ---------------------------------------------------------------------------------------------------
# estimator

# Share of a clustering's own images that the unlike-any rule would flag: a policy (a 1% false-alarm
# rate on images like those already clustered), not a tuned constant. benchmarks/assign.py measures how
# many images of categories absent from the run it flags.
UNLIKE_QUANTILE = 0.01
# Each image's neighbour lists are searched once per pass, this long at least: the self-tuning graph of the
# K estimate needs 20, and they are the candidates of the positive pairs of large folders.
NEIGHBOUR_LISTS = 20


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


class L2CClusterer(ClusterMixin, BaseEstimator):
    """Find the categories in unlabelled images with a transferred similarity model.

    The defaults, allowed values and help of every parameter are declared in
    :data:`l2c_explorer.options.DISCOVER`.

    Parameters
    ----------
    similarity : str, path or SimilarityModel
        The similarity model: a shipped name (``"omniglot"``), a model file, or a loaded model.
    n_clusters : int, optional
        The number of categories when known; otherwise it is estimated (at most ``max_clusters``).
    max_clusters : int
        The largest number of categories considered when K is estimated.
    loss : {"mcl", "kcl"}
        The clustering network's pairwise loss (meta classification likelihood or KL-divergence
        contrastive loss).
    steps : int
        Training steps of the clustering network (one step sees every pair of a folder of up to 2,048
        images, or one mini-batch of a larger folder).
    method : {"graph", "paper"}
        ``"graph"``: ours (the steps above). ``"paper"``: the L2C paper's clustering network on dense
        P(same) > 0.5 targets with ``max_clusters`` outputs and the dominant-cluster count of K
        (:mod:`l2c_explorer.paper`), on the same similarity model: a baseline.
    n_neighbors : int, optional
        How many most-similar images each image is linked to in the similarity graph.
    diffusion_time : float, optional
        Random-walk steps of the diffusion features (larger: smoother, fewer fine distinctions).
    adapt_norm : bool
        Re-estimate the similarity model's batch-norm statistics on the target images (on a random sample
        of 10,000 of a larger folder, :data:`l2c_explorer.embedding.NORM_SAMPLE`).
    self_training_steps : int, optional
        After a first clustering, fine-tune a copy of the similarity model for this many steps on the most
        confident members of each cluster (:mod:`l2c_explorer.selftrain`), then compute the features, the
        graph, K and the clusters again. 0: a single pass.
    self_training_keep : float, optional
        The share of each cluster's members, most confident first, used as examples for self-training.
    k_significance, k_sharpened_significance : float, optional
        The K rule: a drop in the spectrum marks a boundary between groups when it is at least this share
        of the largest drop (first pass; after self-training).
    k_graph_neighbours, k_graph_scale_neighbour : int, optional
        The self-tuning graph the first K estimate reads.
    neighbours : {"auto", "exact", "ivf"}
        The nearest-neighbour search: exact, or approximate (an inverted-file search); "auto" is exact up to
        20,000 images (:mod:`l2c_explorer.neighbours`).
    spectrum : {"auto", "exact", "stochastic"}
        The graph spectrum and diffusion features: exact eigenpairs, or estimated at linear cost
        (:mod:`l2c_explorer.spectrum`); "auto" estimates them when exact ones would cost much
        (:func:`l2c_explorer.graph.stochastic_spectrum`).
    cache : bool or path
        Keep a folder's decoded pixels, embeddings and first neighbour lists for the next run on it (True:
        in the per-user cache folder, :func:`l2c_explorer.cache.default_cache_dir`; a path: there; False:
        nothing is kept). The analysed folder is never written to.
    follow_links : bool
        Also read links (to images or folders) that lead outside the folder; by default they are skipped and
        listed among the skipped files. Links that stay inside it are always followed.
    n_jobs : int, optional
        Threads used during ``fit`` (default: as set for the process, see :mod:`l2c_explorer.threads`).
    device : {"auto", "cpu", "cuda"}
    random_state : int

    Every optional setting left at None is the similarity model's own (chosen for it on its held-out
    classes and stored in its card), else the package's (:data:`l2c_explorer.options.MODEL_SETTINGS`);
    ``settings_`` records the values used.

    Attributes
    ----------
    settings_ : dict
        The discovery settings this run used (see above).
    labels_ : ndarray of shape (n_images,)
        Cluster of each image, numbered 0..n_clusters_-1 by decreasing size.
    n_clusters_ : int
        Number of clusters found (the estimate of K when ``n_clusters`` is None).
    k_eigengap_ : int
        The eigengap estimate of K (computed in both modes, for reference; with K given, large folders are not
        read again in parts).
    k_parts_ : int or None
        How many parts of the folder the estimate was read in: 1 when the whole spectrum gave it, more when a
        large folder's few big drops were read again inside the parts they separate
        (:func:`~l2c_explorer.graph.coarse_to_fine_k`); None for the paper's pipeline.
    eigenvalues_ : ndarray of shape (n_eigen,)
        The spectrum ``k_eigengap_`` was read from, in decreasing order: the largest eigenvalues of the
        normalised self-tuning graph (first pass) or of the sharpened similarity graph (after
        self-training); estimated ones for large folders.
    probabilities_ : ndarray of shape (n_images, n_clusters_), float32
        Each image's distribution over the final clusters.
    confidence_ : ndarray of shape (n_images,)
        Probability of the assigned cluster.
    embedding_ : ndarray of shape (n_images, d)
        The similarity model's unit features of the images (for maps, exemplars and :meth:`predict`).
    prototypes_ : ndarray of shape (n_clusters_, d)
        Each cluster's mean embedding direction (unit vectors).
    embedding_model_ : SimilarityModel
        The similarity model the final embeddings were computed with: self-trained when self-training ran,
        with the batch-norm statistics of this folder. :meth:`predict` embeds new images with it.
    unlike_threshold_ : float
        Cosine below which :meth:`predict` flags an image as unlike every category (see :meth:`predict`).
    history_ : list of dict
        ``step``, ``epoch``, ``loss``, ``k_estimated`` (clusters in use) and ``pass`` (1, or 2 after
        self-training) during training.
    stopped_ : bool
        Whether training was ended early by the stop flag (the result is what was learnt so far; a stop
        during self-training or the second pass keeps the first clustering).
    timings_ : dict
        Seconds spent reading, embedding, building the graph, training and self-training (both passes).
    cpu_timings_ : dict
        The process's CPU seconds in the same stages (all threads; steadier than wall-clock seconds on a busy
        machine).
    stage_seconds_ : list of (Stage, float)
        Each stage of the fit as planned (both passes apart; stages read back from the cache left out) with the
        seconds it took, after a relearning those of the relearning: the pace :meth:`relearn_seconds` and a
        relearning's time left are estimated from.
    cached_ : list of str
        What was reused from the cache ("pixels", "embeddings", "neighbours").
    paths_, skipped_ : list
        Image paths (relative to the folder) and skipped files with reasons.
    true_labels_ : list of str or None
        Each image's true class, fitted with ``labelled=True``: its first-level subfolder. None when the
        folder names cannot be true categories (``truth_problem_`` says why).
    truth_problem_ : str or None
        Why the folder names asked for as true categories are none (:func:`~l2c_explorer.data.truth_problem`):
        the run is then not scored.
    """

    __init__ = DISCOVER.estimator_init(positional=("similarity",))

    # -- validation --------------------------------------------------------------------------------

    def _validate(self, n_images: int | None = None) -> None:
        DISCOVER.validate(self.get_params())
        if n_images is not None:
            if n_images < 2:
                raise InputError(f"Clustering needs at least 2 images; found {n_images}.")
            if self.n_clusters is not None and self.n_clusters > n_images:
                raise InputError(
                    f"{self.n_clusters} clusters were asked for, but there are only {n_images} images."
                )

    # -- fit --------------------------------------------------------------------------------------------

    def fit(
        self,
        images,
        *,
        constraints=None,
        relearn: bool = False,
        callback: Callback | None = None,
        stop: threading.Event | None = None,
        labelled: bool = False,
        client=None,
    ) -> L2CClusterer:
        """Cluster a folder, an :class:`ImageSet` or in-memory images; return ``self``.

        ``constraints``: a person's answers about pairs of images (same category or not), applied as by
        :meth:`refit` once the folder is clustered: a ``path_a,path_b,same`` CSV file (paths as in
        ``paths_``), or answers as :meth:`refit` takes them; with ``relearn=True`` the features and the
        clusters are then relearnt from them (:meth:`relearn`). ``labelled=True`` also records each image's
        first-level subfolder as its true class, for :meth:`score` only: the labels are never used to
        cluster. When ``stop`` is set during training the clusters learnt so far are kept (``stopped_``
        is True); set before training, it raises :class:`~l2c_explorer.errors.StoppedError`. With a Dask
        ``client`` the images of a folder are read and embedded by the cluster's workers
        (:mod:`l2c_explorer.embedding`); the rest runs here.
        """
        from .threads import limited_threads

        self._validate()
        started = time.perf_counter()
        with limited_threads(self.n_jobs), _scratch_folder() as scratch:
            self._fit(images, callback, stop, labelled, client, scratch)
            if constraints is not None and not self.stopped_:
                self.refit(constraints, callback=callback, stop=stop)
                if relearn and len(self.constraints_):
                    self.relearn(callback=callback, stop=stop)
                self.seconds_ = time.perf_counter() - started
        return self

    def _fit(self, images, callback, stop, labelled, client, scratch: Path) -> L2CClusterer:
        report = Reporter(callback, stop)
        started = time.perf_counter()
        timings = Stopwatch()
        timings.start("reading")
        device = resolve_device(self.device)
        model = load_similarity_model(self.similarity)
        self.settings_ = discovery_settings(model.card.get("discovery"), self.get_params())
        self.cached_: list[str] = []

        def stopped_before_training() -> None:
            if report.should_stop():
                raise StoppedError("Stopped before training began; nothing was learnt.")

        def reading(done: int, total: int, message: str | None = None) -> None:
            if report.run_plan is None:  # the first report gives the number of images: plan the whole run
                report.plan(self._stages(total, model))
            report("reading", done, total, message=message or f"Reading images {done}/{total}")

        source, folder_cache = self._open_images(images, model, labelled, reading, report.should_stop, client,
                                                 scratch)
        stopped_before_training()
        self._validate(len(source))
        timings.stop("reading")

        timings.start("features")
        emb, adapted = self._first_embeddings(model, source, folder_cache, device, report, client)
        stopped_before_training()
        timings.stop("features")

        self.history_: list[dict] = []
        neighbours = None
        if folder_cache is not None:
            neighbours = self._cached_neighbours(folder_cache, model, emb)
        if self.method == "paper":
            result = self._paper_ccn(model, emb, device, report, stop, timings, neighbours)
        else:
            def replan(k: int) -> None:  # the self-training batch follows from the groups found
                report.revise("self-training", self._self_training_step_cost(k, model))

            result = self._cluster(emb, device, report, stop, timings, neighbours=neighbours,
                                   folder_cache=folder_cache, model=model, on_k=replan)
        final_model = adapted
        if self.method == "graph" and self.settings_["self_training_steps"] and not report.should_stop():
            # None when stopped, or with nothing to learn from: the first clustering stands
            refined = self._refine(adapted, source, result, device, report, stop, timings, client)
            if refined is not None:
                result, final_model = refined
        self.stopped_ = report.should_stop()
        self.timings_ = {key: round(v, 3) for key, v in timings.items()}
        self.cpu_timings_ = {key: round(v, 3) for key, v in timings.cpu.items()}
        self.stage_seconds_ = report.run_plan.measured() if report.run_plan is not None else []
        self._finish(source, *result, model, final_model, device, started)
        return self

    def fit_embeddings(
        self,
        embedded,
        paths: list[str] | None = None,
        *,
        root=None,
        labels: list[str] | None = None,
        callback: Callback | None = None,
        stop: threading.Event | None = None,
    ) -> L2CClusterer:
        """Cluster precomputed unit embeddings (one pass: no self-training, which needs the images).

        ``embedded`` is an :class:`~l2c_explorer.embedding.EmbeddedImages` (from
        :func:`~l2c_explorer.embedding.embed_folder`, e.g. on a Dask cluster) or an array (n, d); with an
        array, ``paths``, ``root`` and ``labels`` (true classes, for :meth:`score`) describe the images, and
        :meth:`predict` embeds new images with ``similarity`` as it is.
        """
        from .embedding import EmbeddedImages
        from .threads import limited_threads

        self._validate()
        report = Reporter(callback, stop)
        started = time.perf_counter()
        device = resolve_device(self.device)
        if isinstance(embedded, EmbeddedImages):
            emb, model = embedded.embeddings, embedded.model
            paths, root, labels = embedded.paths, embedded.root, embedded.labels
            skipped = embedded.skipped
        else:
            emb, model, skipped = np.asarray(embedded), load_similarity_model(self.similarity), []
        emb = torch.nn.functional.normalize(torch.as_tensor(np.asarray(emb, dtype=np.float32)), dim=1)
        paths = list(paths) if paths is not None else [f"image_{i:06d}" for i in range(len(emb))]
        if len(paths) != len(emb) or (labels is not None and len(labels) != len(emb)):
            raise InputError("embeddings, paths and labels must describe the same images.")
        self._validate(len(emb))
        source = PixelStore(paths=paths, shape=(0, 0, 0), root=Path(root) if root else None,
                            labels=list(labels) if labels is not None else None, skipped=list(skipped))
        timings = Stopwatch()
        self.history_, self.cached_ = [], []
        self.settings_ = discovery_settings(model.card.get("discovery"), self.get_params())
        with limited_threads(self.n_jobs):
            if self.method == "paper":
                result = self._paper_ccn(model, emb, device, report, stop, timings)
            else:
                result = self._cluster(emb, device, report, stop, timings, model=model)
        self.stopped_ = report.should_stop()
        self.timings_ = {key: round(v, 3) for key, v in timings.items()}
        self.cpu_timings_ = {key: round(v, 3) for key, v in timings.cpu.items()}
        self._finish(source, *result, model, model, device, started)
        return self

    # -- answers ------------------------------------------------------------------------------------

    def constraint_set(self, constraints) -> ConstraintSet:
        """Answers as a :class:`~l2c_explorer.constraints.ConstraintSet` over this run's images.

        ``constraints``: a ``path_a,path_b,same`` CSV file (str or path), a ConstraintSet, or answers as
        :class:`~l2c_explorer.constraints.Answer` objects or ``(a, b, same)`` rows of image indices
        (``same`` 1/True or 0/False). Contradictory answers raise
        :class:`~l2c_explorer.constraints.ContradictionError`, naming the images by path.
        """
        check_is_fitted(self, "graph_")
        if self.graph_ is None:
            raise InputError("Answers about pairs need the graph method's clustering; this run used the paper's "
                             "pipeline (method='paper').")
        n = len(self.paths_)
        if isinstance(constraints, (str, os.PathLike)):
            answers = read_constraints_csv(constraints, self.paths_)
        elif isinstance(constraints, ConstraintSet):
            if constraints.n_images != n:
                raise InputError(f"These answers are about {constraints.n_images} images; this run has {n}.")
            answers = constraints.answers
        else:
            answers = as_answers(constraints, n)
        return ConstraintSet(n, answers, names=self.paths_)

    def refit(self, constraints, *, callback: Callback | None = None,
              stop: threading.Event | None = None) -> L2CClusterer:
        """Change this run's clusters as a person's answers about pairs of images say; return ``self``.

        Each answer is applied to the clusters as they were when it was given
        (:func:`~l2c_explorer.constraints.apply_answers`): "same" for the most typical images of two groups
        merges the groups, "same" for another image moves it (with the images chained to it by "same"
        answers) to the other's group, "different" inside a group splits the group, its other members
        following the group's own links. Nothing else moves, K changes only by those merges and splits
        (never re-estimated), and afterwards every answer holds, with its transitive consequences.

        The result depends only on this run, the answers and the relearnings done (:meth:`relearn`), not on
        earlier refits: answering one by one gives what the same answers in a file give, and refitting with
        fewer answers undoes (back to before a relearning that used an answer taken back). With no answers,
        the run's own clusters come back. ``constraints``: as :meth:`constraint_set` takes them.
        """
        cs = self.constraint_set(constraints)
        report = Reporter(callback, stop)
        started = time.perf_counter()
        if self.n_clusters is not None and cs.min_clusters() > self.n_clusters:
            raise InputError(f"The answers say that {cs.min_clusters()} images are all different categories, "
                             f"but K was given as {self.n_clusters}.")
        base = self._base_for(cs.answers)
        self._restore(base)
        self.constraints_ = cs
        if len(cs) == 0:
            self.timings_["refit"] = 0.0
            return self
        report("graph", 0, 1, message="Applying the answers to the groups")
        labels = apply_answers(self.graph_, self.embedding_, base["labels"], cs)
        if self.n_clusters is not None:
            labels = self._keep_k(labels, cs)
        self._adopt_labels(labels, base["features"])
        report("graph", 1, 1, message=f"Groups with the answers: {self.n_clusters_} clusters")
        self.stopped_ = False
        self.timings_["refit"] = round(time.perf_counter() - started, 3)
        return self

    def relearn(self, constraints=None, *, callback: Callback | None = None,
                stop: threading.Event | None = None) -> L2CClusterer:
        """Relearn the features and the clusters from the answers; return ``self``.

        :meth:`refit` moves images between groups; this teaches the similarity model what the answers
        mean for the rest of the folder. With the groups as the answers left them (``constraints``, applied
        first when given; else the answers of the last refit): self-train the run's embedding model on
        them (:func:`~l2c_explorer.selftrain.self_train`, the images some answer is about always among the
        examples), compute the features and the similarity graph again, estimate K again from the sharpened
        graph (unless K was given), train the clustering network again, the answers among its pair targets
        with a strong weight (:func:`answer_weights`), and apply every answer to the new clusters. A
        look-alike the answers separated in one place is then told apart everywhere.

        Needs the run's images (``root_``; they are read again, from the cache when there is one). Later
        refits start from the relearnt clusters; a refit without one of the answers used here goes back to
        before it. When stopped, nothing changes (``stopped_`` is set).
        """
        from .threads import limited_threads

        check_is_fitted(self, "graph_")
        if self.method != "graph" or self.graph_ is None:
            raise InputError("Only the graph method can relearn (the paper's baseline has no features to sharpen).")
        if self.root_ is None or not Path(self.root_).is_dir():
            raise InputError("Relearning needs the run's images again, but its folder is not available"
                             f"{f' ({self.root_})' if self.root_ else ''}.")
        if constraints is not None:
            self.refit(constraints)
        cs = self.constraints_
        if len(cs) == 0:
            raise InputError("Relearning learns from answers: answer some questions (or merge or split groups) first.")
        report = Reporter(callback, stop)
        report.plan(self._relearn_stages())  # every report carries the time left
        started = time.perf_counter()
        device = resolve_device(self.device)
        labels, confidence = self.labels_.copy(), self.confidence_.astype(np.float64)
        confidence[cs.constrained_images()] = np.inf  # the person's answers are certain: always examples
        with limited_threads(self.n_jobs), _scratch_folder() as scratch:
            def reading(done: int, total: int, message: str | None = None) -> None:
                report("reading", done, total, message=message or f"Reading images {done}/{total}")

            source, _ = self._open_images(self.root_, self.similarity_model_, self.true_labels_ is not None,
                                          reading, report.should_stop, None, scratch)
            if list(source.paths) != list(self.paths_):
                raise InputError(f"The images in {self.root_} changed since this run: run the discovery again.")
            if has_frozen_trunk(self.embedding_model_.net):
                from .embedding import trunk_features

                # read back from the folder's cache, else computed here (a planned stage, not a silent wait)
                def features(done: int, total: int) -> None:
                    report("features", done, total, message=f"Computing features {done}/{total}")

                features(0, len(source))
                trunk_features(self.embedding_model_, source, device=device, progress=features,
                               should_stop=report.should_stop)
            tuned = self_train(
                self.embedding_model_, source, labels, confidence,
                steps=self.settings_["self_training_steps"] or SELF_TRAINING_STEPS,
                keep=self.settings_["self_training_keep"], device=device, seed=self.random_state,
                progress=lambda step, total, loss: report(
                    "self-training", step, total, message=f"Relearning from the answers: step {step}/{total}",
                    loss=loss),
                should_stop=report.should_stop, adapted=self.embedding_model_,
            )
            if tuned is None:
                self.stopped_ = True
                return self
            history = list(self.history_)
            try:
                emb, tuned_adapted = self._embed(tuned, source, device, report, None, what="relearnt features")
                result = self._cluster(emb, device, report, stop, Stopwatch(), pass_number=len(self._relearnt) + 3,
                                       answers=cs.pair_matrix())
            except StoppedError:
                result = None
            if result is None or report.should_stop():
                self.history_[:] = history
                self.stopped_ = True
                return self
        emb, features, probs, head, neighbours, graph, _ = result
        for point in self.history_[len(history):]:
            point["pass"] = "relearn"
        self._adopt(probs, head)
        self.embedding_, self.diffusion_features_, self.graph_ = emb, features, graph
        self.embedding_model_ = tuned_adapted
        self.prototypes_ = cluster_prototypes(emb, self.labels_, self.n_clusters_)
        self.unlike_threshold_ = unlike_threshold(neighbours, self.labels_, UNLIKE_QUANTILE)
        self._relearnt.append((list(cs.answers), self._state()))
        self.refit(cs)
        self.stopped_ = False
        self.timings_["relearn"] = round(time.perf_counter() - started, 3)
        self.stage_seconds_ = report.run_plan.measured()  # the next relearning is like this one
        return self

    def relearn_seconds(self) -> float | None:
        """About how many seconds :meth:`relearn` takes now, on this machine: its stages' priors scaled by the
        pace this run measured on each kind of stage (``stage_seconds_``, from the fit or the latest
        relearning), as its time left starts. None when this run cannot relearn (see :meth:`relearn`)."""
        if self.method != "graph" or getattr(self, "graph_", None) is None or getattr(self, "root_", None) is None:
            return None
        return sum(s.prior for s in self._relearn_stages())

    def _keep_k(self, labels: np.ndarray, cs: ConstraintSet) -> np.ndarray:
        """With K given, merge the two most similar groups (mean directions of the embedding) that no answer
        says differ until there are at most K groups."""
        labels = labels.copy()
        cannot = {(int(a), int(b)) for a, b in cs.cannot.tolist()}
        while labels.max() + 1 > self.n_clusters:
            k = int(labels.max()) + 1
            onehot = np.zeros((len(labels), k))
            onehot[np.arange(len(labels)), labels] = 1.0
            centres = onehot.T @ self.embedding_
            centres /= np.linalg.norm(centres, axis=1, keepdims=True) + 1e-12
            near = centres @ centres.T
            np.fill_diagonal(near, -np.inf)
            comps = [set(cs.component[labels == g].tolist()) for g in range(k)]
            for flat in np.argsort(-near, axis=None, kind="stable"):
                g, h = divmod(int(flat), k)
                if g < h and not any((min(x, y), max(x, y)) in cannot for x in comps[g] for y in comps[h]):
                    labels[labels == h] = g
                    break
            else:  # cannot happen: min_clusters <= K was checked
                break
            _, labels = np.unique(labels, return_inverse=True)
        return labels

    def _adopt_labels(self, labels: np.ndarray, features: np.ndarray) -> None:
        """Labels as given, and probabilities from a cosine head whose centres are the groups' mean diffusion
        features (the clustering network's form), the label always the most probable cluster."""
        k = int(labels.max()) + 1
        onehot = np.zeros((len(labels), k), dtype=np.float64)
        onehot[np.arange(len(labels)), labels] = 1.0
        centres = onehot.T @ features.astype(np.float64)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True) + 1e-12
        head = CosineClusterHead(dim=features.shape[1], n_clusters=k)
        logits = head.temperature * features.astype(np.float64) @ centres.T
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        rows = np.arange(len(labels))
        top = probs.argmax(1)
        swap = top != labels  # give the label the largest probability, the former best the label's
        p_label, p_top = probs[rows, labels].copy(), probs[rows, top].copy()
        probs[rows[swap], labels[swap]], probs[rows[swap], top[swap]] = p_top[swap], p_label[swap]
        self.labels_ = labels.astype(np.int64)
        self.probabilities_ = probs
        self.confidence_ = probs[rows, self.labels_]
        self.n_clusters_ = k
        self.head_state_ = {"centres": torch.from_numpy(centres.astype(np.float32))}
        self.prototypes_ = cluster_prototypes(self.embedding_, self.labels_, k)

    # -- reading and embedding ----------------------------------------------------------------------

    def _open_images(self, images, model: SimilarityModel, labelled: bool, reading, should_stop, client,
                     scratch: Path):
        """(source of pixels, the folder's cache or None). A folder is decoded into a pixel store once;
        ``reading(done, total, message=None)`` hears how far it is."""
        from .cache import FolderCache, resolve_cache_dir
        from .data import as_image_set
        from .store import folder_listing, from_image_set, open_store, read_folder

        prep = model.preprocessing
        if not isinstance(images, (str, os.PathLike)):
            store = from_image_set(as_image_set(images, size=prep.size, channels=prep.channels))
            reading(len(store), len(store))
            return store, None
        listing = folder_listing(images, follow_links=self.follow_links)
        root, files, _, fingerprint = listing
        if not files:
            from .data import IMAGE_EXTENSIONS

            raise InputError(
                f"No images found in {root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, in all subfolders)."
            )
        cache_dir = resolve_cache_dir(self.cache)
        folder_cache = FolderCache(cache_dir, fingerprint) if cache_dir is not None else None
        if client is not None:
            return _FileSource(root, listing, prep, labelled), folder_cache
        file = folder_cache.pixels(prep.size, prep.channels) if folder_cache else scratch / "pixels.u8"
        store = open_store(file, root, labelled=labelled) if folder_cache else None
        if store is not None:
            self.cached_.append("pixels")
            reading(len(store), len(store), message=f"Read {len(store)} images (cached)")
        else:
            store = read_folder(
                root, file, size=prep.size, channels=prep.channels, labelled=labelled, listing=listing,
                progress=reading, should_stop=should_stop,
            )
        store.cache = folder_cache  # where features of a pretrained trunk are kept too
        return store, folder_cache

    def _embed(self, model: SimilarityModel, source, device, report, client, what: str = "features"):
        """(unit embeddings (n, d), the model with this folder's batch-norm statistics)."""
        from .embedding import adapt_model, embed_store

        progress = lambda done, total: report("features", done, total, message=f"Computing {what} {done}/{total}")  # noqa: E731
        progress(0, len(source))  # this stage has begun (the batch-norm pass below reports nothing)
        adapted = model
        if self.adapt_norm:
            adapted = adapt_model(model, source.take, len(source), device=device)
        if client is not None:
            emb = source.embed_on(client, adapted, progress)
        else:
            emb = embed_store(adapted, source, device=device, progress=progress, should_stop=report.should_stop)
        return emb, adapted

    def _first_embeddings(self, model: SimilarityModel, source, folder_cache, device, report, client):
        """First-pass embeddings and adapted model, from the cache when this folder was embedded before."""
        key = f"embeddings-{model.digest[:16]}-{'norm' if self.adapt_norm else 'raw'}"
        if folder_cache is not None and model.digest:
            cached = folder_cache.load(key, ("embeddings",))
            if cached is not None and len(cached["embeddings"]) == len(source) and _same_paths(cached, source):
                adapted = _with_norm_state(model, cached) if self.adapt_norm else model
                self.cached_.append("embeddings")
                report("features", len(source), len(source), message="Features reused from the cache")
                return torch.from_numpy(cached["embeddings"]), adapted
        emb, adapted = self._embed(model, source, device, report, client)
        if folder_cache is not None and model.digest:
            norm = {f"norm::{k}": v.cpu().numpy() for k, v in adapted.net.state_dict().items()
                    if "running_" in k or "num_batches" in k} if self.adapt_norm else {}
            folder_cache.save(key, embeddings=emb.numpy(), paths_digest=np.frombuffer(paths_digest(source.paths), np.uint8),
                              **norm)
        return emb, adapted

    def _cached_neighbours(self, folder_cache, model: SimilarityModel, emb: torch.Tensor) -> Neighbours | None:
        if not model.digest or "embeddings" not in self.cached_:
            return None
        cached = folder_cache.load(self._neighbour_key(model), ("indices", "cosines"))
        if cached is None or len(cached["indices"]) != len(emb):
            return None
        self.cached_.append("neighbours")
        return Neighbours(torch.from_numpy(cached["indices"].astype(np.int64)), torch.from_numpy(cached["cosines"]),
                          exact=bool(cached["exact"]))

    def _neighbour_key(self, model: SimilarityModel) -> str:
        return (f"neighbours-{model.digest[:16]}-{'norm' if self.adapt_norm else 'raw'}-{self._lists()}-"
                f"{self.neighbours}-{self.random_state}")

    # -- clustering ---------------------------------------------------------------------------------

    def _lists(self) -> int:
        """How many neighbours of each image are searched: enough for the graph and the K estimate's graph."""
        s = self.settings_
        return max(s["n_neighbors"], s["k_graph_neighbours"], NEIGHBOUR_LISTS)

    def _search(self, emb: torch.Tensor) -> Neighbours:
        return nearest_neighbours(emb, min(self._lists(), len(emb) - 1), method=self.neighbours,
                                  seed=self.random_state)

    def _cluster(self, emb: torch.Tensor, device, report, stop, timings: dict, pass_number: int = 1,
                 neighbours: Neighbours | None = None, folder_cache=None, model=None, on_k=None, answers=None):
        """Graph, K and clustering network from unit embeddings (n, d):
        (emb, features, probs, head, neighbours, graph, pass_number).

        ``on_k(k)`` is called once K is chosen, before training. ``answers``: a person's answers as pair
        targets (n, n) the clustering network learns from too (:func:`train_cluster_head`).
        """
        timings.start("graph")
        n = len(emb)
        report("graph", 0, 1, message="Linking similar images")
        emb = emb.float()
        if neighbours is None:
            neighbours = self._search(emb.to(device))
            neighbours = Neighbours(neighbours.indices.cpu(), neighbours.cosines.cpu(), neighbours.exact)
            if folder_cache is not None and pass_number == 1 and model is not None and model.digest:
                folder_cache.save(self._neighbour_key(model), indices=neighbours.indices.numpy().astype(np.int32),
                                  cosines=neighbours.cosines.numpy(), exact=np.array(neighbours.exact))
        settings = self.settings_
        linked = neighbourhood(settings["n_neighbors"], n, share=NEIGHBOUR_SHARE)
        graph = knn_adjacency(neighbours, linked)
        max_k = min(self.max_clusters, n - 1)
        spectrum_before = None
        # with K given, the estimate is for reference only: not worth reading the parts of a large folder again,
        # nor an estimated spectrum more than once
        split_min = SPLIT_MIN if self.n_clusters is None else n + 1
        readings = K_READINGS if self.n_clusters is None else 1
        if pass_number == 1:
            # the self-tuning graph of the similarity model's features, where categories drawn in two styles
            # stay one group; after self-training the sharpened graph's own spectrum has one clear drop
            k_graph = k_estimate_graph(emb, neighbours=settings["k_graph_neighbours"],
                                       scale_neighbour=settings["k_graph_scale_neighbour"], found=neighbours)
            values = top_eigenvalues(normalised_adjacency(k_graph), max_k + 1, seed=self.random_state,
                                     method=self.spectrum)
            significance = settings["k_significance"]
            spectrum_before = (coarse_to_fine_k(k_graph, values, max_k=max_k, significance=significance,
                                                readings=readings, seed=self.random_state, method=self.spectrum,
                                                split_min=split_min),
                               values)
        n_components = min(max(DIFFUSION_COMPONENTS, self.max_clusters, self.n_clusters or 0) + 1, n)
        features, eigenvalues = diffusion_features(
            graph, n_components=n_components, diffusion_time=settings["diffusion_time"], seed=self.random_state,
            n_values=max_k + 1, method=self.spectrum,
        )
        if pass_number > 1:
            # one clear drop after self-training; an estimated spectrum blurs it over a few neighbouring gaps, so
            # its largest single gap may fall short of the drop's end, and the first pass's rule reads it there
            # (Omniglot background, 500 characters, 10,000 drawings: exact eigenvalues 480 groups; estimated
            # ones 422 with the largest gap, 497 with the first pass's rule)
            significance = settings["k_sharpened_significance"]
            if stochastic_spectrum(n, max(n_components, max_k + 1), self.spectrum):
                significance = min(significance, settings["k_significance"])
            spectrum_before = (coarse_to_fine_k(graph, eigenvalues, max_k=max_k, significance=significance,
                                                readings=readings, seed=self.random_state, method=self.spectrum,
                                                split_min=split_min),
                               eigenvalues)
        (self.k_eigengap_, self.k_parts_), self.eigenvalues_ = spectrum_before
        self._k_rule = "largest drop" if significance >= 1 else (
            "half the largest drop" if significance == 0.5 else f"{significance:g} x the largest drop")
        k = int(self.n_clusters or self.k_eigengap_)
        if on_k is not None:
            on_k(k)
        centres = kmeans_centres(features, k, seed=self.random_state)
        feats = torch.from_numpy(features).to(device)
        k_positive = max(1, linked // 2)
        if neighbours.exact:
            positives = knn_graph(feats, k=k_positive, mutual=True)
        else:  # the feature-space neighbours among the embedding neighbours: O(n k m), not O(n^2 m)
            positives = knn_adjacency(rerank(feats.cpu(), neighbours.indices, k_positive), k_positive, mutual=True)
        report("graph", 1, 1, message=f"Similarity graph ready: starting from {k} clusters",
               details={"spectrum": self._spectrum(k, pass_number)})
        timings.stop("graph")
        if stop is not None and stop.is_set():
            raise StoppedError("Stopped before training began; nothing was learnt.")

        timings.start("training")
        first_point = len(self.history_)
        head, probs = train_cluster_head(
            feats,
            positives,
            torch.from_numpy(centres).to(device),
            loss=self.loss,
            steps=self.steps,
            seed=self.random_state,
            report=report,
            history=self.history_,
            stop=stop,
            answers=answers,
        )
        timings.stop("training")
        for point in self.history_[first_point:]:
            point["pass"] = pass_number
        return emb.cpu().numpy(), features, probs.cpu().numpy(), head, neighbours, graph, pass_number

    def _paper_ccn(self, model: SimilarityModel, emb: torch.Tensor, device, report, stop, timings: dict,
                   neighbours: Neighbours | None = None):
        """The paper's pipeline (:mod:`l2c_explorer.paper`) on the same embeddings, as :meth:`_cluster` returns
        it without diffusion features, network or graph: (emb, None, probs, None, neighbours, None, 1).

        With K unknown the network has ``max_clusters`` outputs and K is the number of dominant ones; images
        whose most probable output is not dominant go to their most probable dominant one. The neighbour
        lists serve :meth:`predict`'s unlike-any rule only.
        """
        n_outputs = int(self.n_clusters or min(self.max_clusters, len(emb)))
        self.k_eigengap_, self.k_parts_, self.eigenvalues_ = None, None, None
        emb = emb.float()
        if neighbours is None:
            found = self._search(emb.to(device))
            neighbours = Neighbours(found.indices.cpu(), found.cosines.cpu(), found.exact)
        timings.start("training")
        probs = train_paper_ccn(emb.to(device), model.pair_probabilities, n_outputs=n_outputs, loss=self.loss,
                                seed=self.random_state, report=report, history=self.history_, stop=stop)
        timings.stop("training")
        if self.n_clusters is None:
            sizes = np.bincount(probs.argmax(1), minlength=n_outputs)
            dominant = np.flatnonzero(sizes >= len(probs) / n_outputs)
            dominant = dominant if len(dominant) else np.array([int(sizes.argmax())])
            probs = probs[:, dominant]
        for point in self.history_:
            point["pass"] = 1
        return emb.numpy(), None, probs, None, neighbours, None, 1

    def _spectrum(self, k: int, pass_number: int) -> dict:
        """What K was chosen from, for people: the spectrum, the eigengap estimate and the K used."""
        return {"eigenvalues": [round(float(v), 5) for v in self.eigenvalues_], "k_eigengap": int(self.k_eigengap_),
                "k": int(k), "k_given": self.n_clusters is not None, "pass": pass_number,
                "rule": self._k_rule, "parts": int(self.k_parts_)}

    def _clustering_stages(self, n_images: int) -> list[Stage]:
        """The graph and training stages of a pass over ``n_images`` images, with their priors."""
        c = STAGE_COSTS
        batch = n_images if n_images <= FULL_BATCH else MINI_BATCH  # a training step sees every pair of these
        return [Stage("graph", n_images, c["graph"] + c["graph_squared"] * min(n_images, 3000)),
                Stage("training", self.steps, c["training"] + c["training_pair"] * batch ** 2)]

    def _stages(self, n_images: int, model: SimilarityModel) -> list[Stage]:
        """The stages of a fit on ``n_images`` images, with their priors (see :data:`STAGE_COSTS`)."""
        c = STAGE_COSTS
        one_pass = [Stage("features", n_images, _feature_cost(model)), *self._clustering_stages(n_images)]
        reading = Stage("reading", n_images, c["reading"], calibrates=False)
        stages = [reading, *one_pass]
        if self.method == "paper":  # the paper's network on the embeddings: no graph, no second round
            return [reading, one_pass[0], one_pass[2]]
        if self.settings_["self_training_steps"]:
            # until the first clustering says how many groups there are, as if every batch were full
            groups = self.n_clusters or self.max_clusters
            second = [Stage("features", n_images, _feature_cost(model, again=True)), *one_pass[1:]]
            stages += [Stage("self-training", self.settings_["self_training_steps"],
                             self._self_training_step_cost(groups, model)), *second]
        return stages

    def _relearn_stages(self) -> list[Stage]:
        """The stages of a relearning (:meth:`relearn`), with priors from this run's measured pace
        (:func:`~l2c_explorer.progress.calibrated`)."""
        from .cache import resolve_cache_dir

        n, model = len(self.paths_), self.embedding_model_
        kept = resolve_cache_dir(self.cache) is not None  # the fit left the pixels (and a trunk's features) there
        stages = [Stage("reading", n, 0.0 if kept else STAGE_COSTS["reading"], calibrates=False)]
        if has_frozen_trunk(model.net):
            stages.append(Stage("features", n, 0.0 if kept else _feature_cost(model)))
        steps = self.settings_["self_training_steps"] or SELF_TRAINING_STEPS
        stages += [Stage("self-training", steps, self._self_training_step_cost(self.n_clusters_, model)),
                   Stage("features", n, _feature_cost(model, again=True)), *self._clustering_stages(n)]
        return calibrated(stages, getattr(self, "stage_seconds_", []))

    @staticmethod
    def _self_training_step_cost(n_clusters: int, model: SimilarityModel) -> float:
        """Prior seconds of one self-training step after a first clustering into ``n_clusters`` groups."""
        if has_frozen_trunk(model.net):  # only the top trains, on the trunk's features
            top = model.net.encoder
            return TOP_STEP_SECONDS_PER_WEIGHT * sum(
                w.numel() for w in (*top.hidden.parameters(), *top.project.parameters()))
        per_step = STAGE_COSTS["self-training"] + STAGE_COSTS["self-training_image"] * batch_images(n_clusters)
        return per_step * _pixel_scale(model)

    def _refine(self, adapted: SimilarityModel, source, first, device, report, stop, timings: dict, client):
        """Self-train the similarity model on the first clusters, then cluster again.

        Returns (result, the model of the second embeddings), or None if stopped or nothing was learnt.
        """
        probs = first[2]
        timings.start("self_training")
        tuned = self_train(
            adapted,
            source,
            probs.argmax(1),
            probs.max(1),
            steps=self.settings_["self_training_steps"],
            keep=self.settings_["self_training_keep"],
            device=device,
            seed=self.random_state,
            progress=lambda step, total, loss: report(
                "self-training", step, total, message=f"Sharpening the features on these images: step {step}/{total}",
                loss=loss,
            ),
            should_stop=report.should_stop,
            adapted=adapted if self.adapt_norm else None,
        )
        timings.stop("self_training")
        if tuned is None:
            return None
        history_before = len(self.history_)
        spectrum_before = self.eigenvalues_, self.k_eigengap_, self.k_parts_
        try:
            timings.start("features")
            emb, tuned_adapted = self._embed(tuned, source, device, report, client, what="sharpened features")
            timings.stop("features")
            result = self._cluster(emb, device, report, stop, timings, pass_number=2)
        except StoppedError:
            result = None
        if result is None or (stop is not None and stop.is_set()):
            del self.history_[history_before:]
            self.eigenvalues_, self.k_eigengap_, self.k_parts_ = spectrum_before
            return None
        return result, tuned_adapted

    def _finish(self, source, emb, features, probs, head, neighbours, graph, _pass_number, model, final_model, device,
                started) -> None:
        self._adopt(probs, head)
        self.embedding_ = emb
        self.diffusion_features_ = features
        self.graph_ = graph
        self.prototypes_ = cluster_prototypes(emb, self.labels_, self.n_clusters_)
        self.unlike_threshold_ = unlike_threshold(neighbours, self.labels_, UNLIKE_QUANTILE)
        self.paths_ = list(source.paths)
        self.skipped_ = list(source.skipped)
        self.root_ = source.root
        # folder names that cannot be categories are no truth: nothing is scored or coloured against them
        self.truth_problem_ = truth_problem(source.labels) if source.labels is not None else None
        self.true_labels_ = None if self.truth_problem_ else source.labels
        self.similarity_model_ = model
        self.embedding_model_ = final_model
        self.device_ = device
        self.seconds_ = time.perf_counter() - started
        head_of_pairs = model.net.head
        self.pair_head_ = (float(head_of_pairs.scale.detach()), float(head_of_pairs.bias.detach()))
        self.constraints_ = ConstraintSet(len(source.paths), names=self.paths_)
        # what a refit starts from: this run's clusters, before any answer; relearning adds later ones
        self._base = self._state()
        self._relearnt: list[tuple[list, dict]] = []

    def _state(self) -> dict:
        """The clusters as they are now, as :meth:`_restore` puts them back."""
        return {key: getattr(self, attr) for key, attr in _REFIT_STATE.items()} | {"history": list(self.history_)}

    def _restore(self, base: dict) -> None:
        for key, attr in _REFIT_STATE.items():
            setattr(self, attr, base[key])
        self.history_[:] = base["history"]

    @property
    def relearnings_(self) -> list[int]:
        """How many answers each relearning still in effect learnt from (:meth:`relearn`), oldest first."""
        return [len(used) for used, _ in getattr(self, "_relearnt", [])]

    def _base_for(self, answers: list) -> dict:
        """The clusters a refit with ``answers`` starts from: the latest relearning done with a first part of
        these answers (later relearnings, made with answers since taken back, are dropped), else the run's."""
        while self._relearnt and answers[: len(self._relearnt[-1][0])] != self._relearnt[-1][0]:
            self._relearnt.pop()
        return self._relearnt[-1][1] if self._relearnt else self._base

    def _adopt(self, probs: np.ndarray, head) -> None:
        """Labels, probabilities and confidence from the network's cluster probabilities (n, k)."""
        raw = probs.argmax(1)
        ids, sizes = np.unique(raw, return_counts=True)
        order = ids[np.argsort(-sizes, kind="stable")]  # clusters in use, largest first
        if self.n_clusters is not None:  # K given: keep every output, even an empty one
            order = np.concatenate([order, np.setdiff1d(np.arange(probs.shape[1]), order)])
        new_id = np.full(probs.shape[1], -1, dtype=np.int64)
        new_id[order] = np.arange(len(order))
        self.labels_ = new_id[raw]
        sub = probs[:, order].astype(np.float32, copy=False)
        sub /= sub.sum(1, keepdims=True).clip(1e-12)
        self.probabilities_ = sub
        self.confidence_ = sub[np.arange(len(sub)), self.labels_]
        self.n_clusters_ = int(len(order))
        self.head_state_ = None if head is None else {"centres": head.centres.detach().cpu()[torch.as_tensor(order)]}

    def questions(self, n: int = 1, *, kinds: tuple[str, ...] = ("split", "merge", "member")) -> list:
        """The ``n`` most informative questions about the current clusters, best first
        (:func:`l2c_explorer.questions.next_questions`): pairs of images whose answer is not yet known."""
        from .questions import next_questions

        check_is_fitted(self, "graph_")
        scale, bias = self.pair_head_
        return next_questions(self.embedding_, self.graph_, self.labels_, self.probabilities_, self.constraints_,
                              scale=scale, bias=bias, n=n, kinds=kinds)

    # -- new images -----------------------------------------------------------------------------------

    def predict(self, images, *, k: int | None = None, device: str | None = None) -> np.ndarray:
        """The discovered cluster of new images (a folder, an :class:`ImageSet` or arrays): (m,) labels.

        See :meth:`assign` for the rule and for confidences and the unlike-any flag.
        """
        return self.assign(images, k=k, device=device)["labels"]

    def assign(self, images, *, k: int | None = None, device: str | None = None, labelled: bool = False,
               callback: Callback | None = None, follow_links: bool | None = None) -> dict:
        """Assign new images to the discovered clusters without clustering again.

        Each new image is embedded with :attr:`embedding_model_` (the folder's batch-norm statistics, the
        self-trained weights) and compared with every clustered image; its ``k`` (default ``n_neighbors``)
        nearest vote for their clusters, each with the similarity model's P(same) for the pair. Its
        confidence is the winning cluster's share of the votes. It is **unlike any** category when even the
        nearest member of its cluster is less similar than :attr:`unlike_threshold_`: the cosine that only
        1% of the clustered images fall below for their own nearest cluster-mate. A folder's links that lead
        outside it are read only with ``follow_links`` (default: the run's :attr:`follow_links`).

        Returns
        -------
        dict with ``labels`` (m,), ``confidence`` (m,), ``unlike_any`` (m,) bool, ``nearest`` (m,) the
        cosine to the nearest member of the assigned cluster, ``paths`` and ``skipped`` (and ``true_labels``
        with ``labelled``).
        """
        self._check_fitted()
        model = self.embedding_model_
        prep = model.preprocessing
        from .data import as_image_set

        report = Reporter(callback)
        data = as_image_set(images, size=prep.size, channels=prep.channels, labelled=labelled,
                            progress=lambda d, t: report("reading", d, t, message=f"Reading images {d}/{t}"),
                            follow_links=self.follow_links if follow_links is None else follow_links)
        dev = resolve_device(device or self.device)
        from .embedding import embed_store
        from .store import from_image_set

        emb = embed_store(model, from_image_set(data), device=dev,
                          progress=lambda d, t: report("features", d, t, message=f"Computing features {d}/{t}"))
        labels, confidence, unlike, nearest = self._assign_embeddings(emb, k)
        return {"labels": labels, "confidence": confidence, "unlike_any": unlike, "nearest": nearest,
                "paths": list(data.paths), "skipped": list(data.skipped), "true_labels": data.labels}

    def _assign_embeddings(self, emb: torch.Tensor, k: int | None = None):
        run = torch.from_numpy(np.ascontiguousarray(self.embedding_, dtype=np.float32))
        emb = torch.nn.functional.normalize(emb.float(), dim=1)
        k = int(min(k or self.settings_["n_neighbors"], len(run)))
        idx, cos = [], []
        for s in range(0, len(emb), 1024):
            top = torch.topk(emb[s : s + 1024] @ run.T, k, dim=1)
            idx.append(top.indices)
            cos.append(top.values)
        idx, cos = torch.cat(idx).numpy(), torch.cat(cos)
        weights = torch.sigmoid(self._pair_logits(cos)).numpy().astype(np.float64)
        neighbour_labels = self.labels_[idx]
        labels, confidence = vote(neighbour_labels, np.maximum(weights, 1e-9), self.n_clusters_)
        cos = cos.numpy()
        nearest = np.where(neighbour_labels == labels[:, None], cos, -1.0).max(1)
        unlike = nearest < self.unlike_threshold_
        return labels, confidence, unlike, nearest

    def _pair_logits(self, cosines: torch.Tensor) -> torch.Tensor:
        """The similarity model's pair logits for given cosines (its head is scale * cos + bias)."""
        head = self.embedding_model_.net.head
        with torch.no_grad():
            return head.scale.detach() * cosines + head.bias.detach()

    def _check_fitted(self) -> None:
        if not hasattr(self, "labels_") or not hasattr(self, "embedding_model_"):
            raise InputError("This clusterer has not been fitted (or loaded from a run folder) yet.")

    # -- results ------------------------------------------------------------------------------------

    def fit_predict(self, images, **kwargs) -> np.ndarray:
        return self.fit(images, **kwargs).labels_

    def score(self, y_true=None) -> float:
        """Clustering accuracy against ``y_true`` (default: the folder labels recorded with ``labelled=True``)."""
        return self.scores(y_true)["acc"]

    def scores(self, y_true=None) -> dict:
        """ACC, NMI, ARI and the true and predicted numbers of clusters (see :meth:`score` for ``y_true``)."""
        if y_true is None:
            if self.true_labels_ is None:
                if getattr(self, "truth_problem_", None):
                    raise InputError(f"No ground truth: {self.truth_problem_}.")
                raise InputError("No ground truth: pass y_true, or fit with labelled=True (folder names).")
            y_true = self.true_labels_
        return clustering_scores(np.asarray(y_true), self.labels_)

    def summary(self, *, score: bool = False) -> dict:
        """Everything ``summary.json`` records about this run."""
        model = self.similarity_model_
        out = {
            "n_images": len(self.paths_),
            "n_skipped": len(self.skipped_),
            "skipped": [{"file": f, "reason": r} for f, r in self.skipped_],
            "k_estimated": int(self.n_clusters_),
            "k_given": self.n_clusters,
            "k_max": int(self.n_clusters or self.max_clusters),
            "k_eigengap": None if self.k_eigengap_ is None else int(self.k_eigengap_),
            "k_parts": getattr(self, "k_parts_", None),
            "method": self.method,
            "settings": self.settings_,
            "stopped_early": bool(self.stopped_),
            "timings": self.timings_,
            "cpu_timings": getattr(self, "cpu_timings_", {}),
            "cached": list(self.cached_),
            "loss": self.loss,
            "neighbours": self.neighbours,
            "spectrum": self.spectrum,
            "seconds": round(self.seconds_, 2),
            "device": describe_device(self.device_),
            "model": model.name,
            "model_file": model.source,
            "model_sha256": model.digest,
            "seed": self.random_state,
            "cluster_sizes": np.bincount(self.labels_, minlength=self.n_clusters_).tolist(),
            "unlike_threshold": round(float(self.unlike_threshold_), 6),
            "history": self.history_,
            "version": __version__,
            "target": str(self.root_) if self.root_ else None,
        }
        answers = getattr(self, "constraints_", None)
        if answers is not None and len(answers):
            out["answers"] = {"n_answers": len(answers), "n_same": int(len(answers.must_pairs())),
                              "n_different": int(len(answers.cannot_pairs())),
                              "k_before_answers": int(self._base["n_clusters"]),
                              "refit_seconds": self.timings_.get("refit"),
                              "relearnt_with": self.relearnings_,
                              "relearn_seconds": self.timings_.get("relearn")}
        problem = getattr(self, "truth_problem_", None)
        if problem:  # said whether or not a score was asked for: a rewritten summary keeps it
            out["no_scores"] = problem
        elif score:
            m = self.scores()
            out["metrics"] = {"acc": m["acc"], "nmi": m["nmi"], "ari": m["ari"], "k_true": m["k_true"]}
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Save the clustering head and the run settings (the similarity model is referenced by digest)."""
        if self.head_state_ is None:
            raise InputError("Only the graph method's clustering network can be saved (the paper's is a baseline).")
        path = model_file_path(path)
        config = {
            "similarity_model": self.similarity_model_.name,
            "similarity_sha256": self.similarity_model_.digest,
            "n_clusters": self.n_clusters_,
            "input": "diffusion features of the similarity graph",
            "settings": self.settings_,
            "loss": self.loss,
            "seed": self.random_state,
            "version": __version__,
        }
        return save_model_file(path, self.head_state_, kind="clustering", config=config)

    def save_run(self, folder: str | os.PathLike) -> Path:
        """Write what :meth:`predict` needs into a run folder: ``run.safetensors`` (the clustered images'
        embeddings, clusters and confidences, the prototypes, the settings) and ``embedding_model.safetensors``
        (the similarity model the embeddings came from). Read back with :func:`load_run`."""
        from .runs import save_run

        return save_run(self, folder)


def cluster_prototypes(emb: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Each cluster's mean embedding direction: unit embeddings (n, d), labels (n,) -> (n_clusters, d)."""
    sums = np.zeros((n_clusters, emb.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, emb)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.maximum(norms, 1e-12)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# helpers


class _scratch_folder:
    """A temporary folder for the pixels of an uncached run (removed afterwards)."""

    def __enter__(self) -> Path:
        import tempfile

        self._tmp = tempfile.TemporaryDirectory(prefix="l2c-run-")
        return Path(self._tmp.name)

    def __exit__(self, *exc):
        self._tmp.cleanup()


def _same_paths(cached: dict, source) -> bool:
    digest = cached.get("paths_digest")
    return digest is not None and bytes(digest.tobytes()) == paths_digest(source.paths)


def _with_norm_state(model: SimilarityModel, cached: dict) -> SimilarityModel:
    """``model`` with the batch-norm statistics saved next to cached embeddings."""
    import copy

    net = copy.deepcopy(model.net)
    state = net.state_dict()
    for key in list(state):
        if f"norm::{key}" in cached:
            state[key] = torch.from_numpy(np.asarray(cached[f"norm::{key}"])).reshape(state[key].shape)
    net.load_state_dict(state)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    adapted = SimilarityModel(net.eval(), model.preprocessing, dict(model.card))
    adapted.digest, adapted.source = model.digest, model.source
    return adapted


class _FileSource:
    """The images of a folder read from their files on demand (when a cluster embeds them)."""

    def __init__(self, root: Path, listing, prep, labelled: bool):
        from .data import class_of

        self.root = root
        self.files = listing[1]
        self.prep = prep
        self.paths = [f.relative_to(root).as_posix() for f in self.files]
        self.skipped = list(listing[2])
        self.labels = [class_of(p) for p in self.paths] if labelled else None
        self.shape = (prep.channels, prep.size, prep.size)
        self._labelled = labelled

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, indices) -> torch.Tensor:
        from .data import read_image

        arrays = [read_image(self.root / self.paths[i], size=self.prep.size, channels=self.prep.channels)
                  for i in np.asarray(indices, dtype=np.int64).reshape(-1).tolist()]
        return torch.from_numpy(np.stack(arrays))

    def embed_on(self, client, model: SimilarityModel, progress) -> torch.Tensor:
        """Embed every image on the cluster's workers; files that fail to read are dropped (and listed)."""
        from .data import class_of
        from .embedding import embed_on_cluster

        emb, ok, reasons = embed_on_cluster(client, model, [str(self.root / p) for p in self.paths])
        if len(ok) < len(self.paths):  # unreadable files are skipped, as when reading locally
            self.skipped = sorted(self.skipped + [(self.paths[i], r) for i, r in enumerate(reasons) if r])
            self.paths = [self.paths[i] for i in ok]
            self.labels = [class_of(p) for p in self.paths] if self._labelled else None
        progress(len(self.paths), len(self.paths))
        return torch.from_numpy(emb)


def load_run(folder: str | os.PathLike) -> L2CClusterer:
    """A clusterer restored from a ``discover`` run folder, ready to :meth:`~L2CClusterer.predict` new images."""
    from .runs import load_run as _load

    return _load(folder)
