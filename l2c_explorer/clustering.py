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
from .data import ImageSet
from .device import describe_device, resolve_device
from .errors import InputError, StoppedError
from .graph import (
    DIFFUSION_COMPONENTS,
    NEIGHBOUR_SHARE,
    diffusion_features,
    eigengap_k,
    knn_graph,
    neighbourhood,
    self_tuning_spectrum,
)
from .losses import CLUSTERING_LOSSES
from .metrics import clustering_scores
from .model_io import model_file_path, save_model_file
from .nets import CosineClusterHead
from .options import DISCOVER, discovery_settings
from .paper import train_paper_ccn
from .progress import Callback, Reporter, Stage
from .selftrain import batch_images, self_train
from .similarity import SimilarityModel, load_similarity_model

_DEFAULTS = DISCOVER.defaults

# ---------------------------------------------------------------------------------------------------
# pure steps


def pair_targets(
    features: torch.Tensor, positives: sp.spmatrix, index: torch.Tensor | None = None, *, negative_below: float = 0.3
) -> torch.Tensor:
    """Pair targets among the images ``index`` (all when None): (m,) -> (m, m) in {+1, 0, -1}.

    +1 where ``positives`` links the two images, -1 where the cosine of their unit ``features`` (n, d)
    is below ``negative_below``, 0 (pair not used) otherwise.
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
    return targets


def kmeans_centres(features: np.ndarray, n_clusters: int, *, seed: int = 0, n_init: int = 10) -> np.ndarray:
    """Unit k-means centres (k, d) of unit features (n, d): the clustering network's starting point."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters, n_init=n_init, random_state=seed).fit(features)
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


def train_cluster_head(
    features: torch.Tensor,
    positives: sp.csr_matrix,
    centres: torch.Tensor,
    *,
    loss: str = _DEFAULTS.loss,
    steps: int = _DEFAULTS.steps,
    batch_size: int = 2048,
    lr: float = 0.01,
    temperature: float = 10.0,
    negative_below: float = 0.3,
    seed: int = 0,
    report=None,
    history: list | None = None,
    stop: threading.Event | None = None,
) -> tuple[CosineClusterHead, torch.Tensor]:
    """Train a :class:`CosineClusterHead` starting at ``centres`` (k, d) on unit features (n, d).

    Up to ``batch_size`` images all pairs are used at every step (n x n matrix products); beyond, each
    step takes a batch of anchors and linked partners. Returns the head and the cluster probabilities
    (n, k) of every image.
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
    targets = pair_targets(features, positives, negative_below=negative_below) if full_batch else None
    report_every = max(1, steps // 100)
    for step in range(1, steps + 1):
        if stop is not None and stop.is_set():
            break
        if full_batch:
            batch, batch_targets = features, targets
        else:
            index = sample_batch(positives, batch_size, g).to(features.device)
            batch = features[index]
            batch_targets = pair_targets(features, positives, index, negative_below=negative_below)
        probs = torch.softmax(head(batch), dim=1)
        value = loss_fn(probs, batch_targets)
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


# ---------------------------------------------------------------------------------------------------
# estimator


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
        Re-estimate the similarity model's batch-norm statistics on the target images.
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
    device : {"auto", "cpu", "cuda"}
    random_state : int

    Every optional setting left at None is the similarity model's own (chosen for it on its held-out
    classes and stored in its card), else the package's (:data:`l2c_explorer.options.MODEL_SETTINGS`);
    ``settings_`` records the values used.

    Attributes
    ----------
    labels_ : ndarray of shape (n_images,)
        Cluster of each image, numbered 0..n_clusters_-1 by decreasing size.
    n_clusters_ : int
        Number of clusters found (the estimate of K when ``n_clusters`` is None).
    k_eigengap_ : int
        The eigengap estimate of K (computed in both modes, for reference).
    eigenvalues_ : ndarray of shape (n_eigen,)
        The spectrum ``k_eigengap_`` was read from, in decreasing order: the largest eigenvalues of the
        normalised self-tuning graph (first pass) or of the sharpened similarity graph (after
        self-training).
    probabilities_ : ndarray of shape (n_images, n_clusters_)
        Each image's distribution over the final clusters.
    confidence_ : ndarray of shape (n_images,)
        Probability of the assigned cluster.
    embedding_ : ndarray of shape (n_images, d)
        The similarity model's unit features of the images (for maps and exemplars).
    history_ : list of dict
        ``step``, ``epoch``, ``loss``, ``k_estimated`` (clusters in use) and ``pass`` (1, or 2 after
        self-training) during training.
    settings_ : dict
        The discovery settings this run used (see above).
    stopped_ : bool
        Whether training was ended early by the stop flag (the result is what was learnt so far; a stop
        during self-training or the second pass keeps the first clustering).
    timings_ : dict
        Seconds spent reading, embedding, building the graph, training and self-training (both passes).
    paths_, skipped_ : list
        Image paths (relative to the folder) and skipped files with reasons.
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

    def fit(self, images, *, constraints=None, callback: Callback | None = None,
            stop: threading.Event | None = None, labelled: bool = False) -> L2CClusterer:
        """Cluster a folder, an :class:`ImageSet` or in-memory images; return ``self``.

        ``constraints``: a person's answers about pairs of images (same category or not), applied as by
        :meth:`refit` once the folder is clustered: a ``path_a,path_b,same`` CSV file (paths as in
        ``paths_``), or answers as :meth:`refit` takes them. ``labelled=True`` also records each image's
        first-level subfolder as its true class, for :meth:`score` only: the labels are never used to
        cluster. When ``stop`` is set during training the clusters learnt so far are kept (``stopped_``
        is True); set before training, it raises :class:`~l2c_explorer.errors.StoppedError`.
        """
        self._validate()
        report = Reporter(callback, stop)
        started = time.perf_counter()
        timings: dict[str, float] = {}
        device = resolve_device(self.device)
        model = load_similarity_model(self.similarity)
        self.settings_ = discovery_settings(model.card.get("discovery"), self.get_params())

        def stopped_before_training() -> None:
            if report.should_stop():
                raise StoppedError("Stopped before training began; nothing was learnt.")

        def reading(done: int, total: int) -> None:
            if report.run_plan is None:  # the first report gives the number of images: plan the whole run
                report.plan(self._stages(total, model))
            report("reading", done, total, message=f"Reading images {done}/{total}")

        data = model.prepare(images, labelled=labelled, progress=reading, should_stop=report.should_stop)
        stopped_before_training()
        self._validate(len(data))
        timings["reading"] = time.perf_counter() - started

        t0 = time.perf_counter()
        emb = self._embed(model, data.pixels, device, report)
        stopped_before_training()
        timings["features"] = time.perf_counter() - t0

        self.history_: list[dict] = []
        if self.method == "paper":
            result = self._paper_ccn(model, emb, device, report, stop, timings)
        else:
            def replan(k: int) -> None:  # the self-training batch follows from the groups found
                report.revise("self-training", self._self_training_step_cost(k, model))

            result = self._cluster(emb, device, report, stop, timings, on_k=replan)
        if self.method == "graph" and self.settings_["self_training_steps"] and not report.should_stop():
            # None when stopped, or with nothing to learn from: the first clustering stands
            result = self._refine(model, data.pixels, result, device, report, stop, timings) or result
        self.stopped_ = report.should_stop()
        self.timings_ = {key: round(v, 3) for key, v in timings.items()}
        self._finish(data, *result, model, device, started)
        if constraints is not None and not self.stopped_:
            self.refit(constraints, callback=callback, stop=stop)
            self.seconds_ = time.perf_counter() - started
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

        The result depends only on this run and the answers, not on earlier refits: answering one by one
        gives what the same answers in a file give, and refitting with fewer answers undoes. With no
        answers, the run's own clusters come back. ``constraints``: as :meth:`constraint_set` takes them.
        """
        cs = self.constraint_set(constraints)
        base = self._base
        report = Reporter(callback, stop)
        started = time.perf_counter()
        if self.n_clusters is not None and cs.min_clusters() > self.n_clusters:
            raise InputError(f"The answers say that {cs.min_clusters()} images are all different categories, "
                             f"but K was given as {self.n_clusters}.")
        del self.history_[len(base["history"]):]
        self.n_clusters_, self.diffusion_features_, self.eigenvalues_ = base["n_clusters"], base["features"], \
            base["eigenvalues"]
        self.k_eigengap_ = base["k_eigengap"]
        self.constraints_ = cs
        if len(cs) == 0:
            self.labels_, self.probabilities_, self.confidence_ = base["labels"], base["probabilities"], \
                base["confidence"]
            self.head_state_ = base["head_state"]
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

    def _embed(self, model: SimilarityModel, pixels: torch.Tensor, device, report, what: str = "features"):
        return model.embed(
            pixels,
            device=device,
            adapt_norm=self.adapt_norm,
            progress=lambda done, total: report("features", done, total, message=f"Computing {what} {done}/{total}"),
            should_stop=report.should_stop,
        )

    def _cluster(self, emb: torch.Tensor, device, report, stop, timings: dict, pass_number: int = 1, on_k=None):
        """Graph, K and clustering network from unit embeddings (n, d):
        (emb, features, probs, head, graph, pass_number).

        ``on_k(k)`` is called once K is chosen, before training.
        """
        t0 = time.perf_counter()
        n = len(emb)
        report("graph", 0, 1, message="Linking similar images")
        emb_on_device = emb.to(device)
        settings = self.settings_
        neighbours = neighbourhood(settings["n_neighbors"], n, share=NEIGHBOUR_SHARE)
        graph = knn_graph(emb_on_device, k=neighbours)
        n_components = min(max(DIFFUSION_COMPONENTS, self.max_clusters, self.n_clusters or 0) + 1, n)
        features, eigenvalues = diffusion_features(
            graph, n_components=n_components, diffusion_time=settings["diffusion_time"], seed=self.random_state
        )
        self.k_eigengap_, self.eigenvalues_ = self._estimate_k(emb_on_device, eigenvalues, pass_number)
        k = int(self.n_clusters or self.k_eigengap_)
        if on_k is not None:
            on_k(k)
        centres = kmeans_centres(features, k, seed=self.random_state)
        feats = torch.from_numpy(features).to(device)
        positives = knn_graph(feats, k=max(1, neighbours // 2), mutual=True)
        report("graph", 1, 1, message=f"Similarity graph ready: starting from {k} clusters",
               details={"spectrum": self._spectrum(k, pass_number)})
        timings["graph"] = timings.get("graph", 0.0) + time.perf_counter() - t0
        if stop is not None and stop.is_set():
            raise StoppedError("Stopped before training began; nothing was learnt.")

        t0 = time.perf_counter()
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
        )
        timings["training"] = timings.get("training", 0.0) + time.perf_counter() - t0
        for point in self.history_[first_point:]:
            point["pass"] = pass_number
        return emb.numpy(), features, probs.cpu().numpy(), head, graph, pass_number

    def _paper_ccn(self, model: SimilarityModel, emb: torch.Tensor, device, report, stop, timings: dict):
        """The paper's pipeline (:mod:`l2c_explorer.paper`) on the same embeddings, as :meth:`_cluster` returns
        it without diffusion features, network or graph: (emb, None, probs, None, None, 1).

        With K unknown the network has ``max_clusters`` outputs and K is the number of dominant ones; images
        whose most probable output is not dominant go to their most probable dominant one.
        """
        n_outputs = int(self.n_clusters or min(self.max_clusters, len(emb)))
        self.k_eigengap_, self.eigenvalues_ = None, None
        t0 = time.perf_counter()
        probs = train_paper_ccn(emb.to(device), model.pair_probabilities, n_outputs=n_outputs, loss=self.loss,
                                seed=self.random_state, report=report, history=self.history_, stop=stop)
        timings["training"] = time.perf_counter() - t0
        if self.n_clusters is None:
            sizes = np.bincount(probs.argmax(1), minlength=n_outputs)
            dominant = np.flatnonzero(sizes >= len(probs) / n_outputs)
            dominant = dominant if len(dominant) else np.array([int(sizes.argmax())])
            probs = probs[:, dominant]
        for point in self.history_:
            point["pass"] = 1
        return emb.numpy(), None, probs, None, None, 1

    def _spectrum(self, k: int, pass_number: int) -> dict:
        """What K was chosen from, for people: the spectrum, the eigengap estimate and the K used."""
        return {"eigenvalues": [round(float(v), 5) for v in self.eigenvalues_], "k_eigengap": int(self.k_eigengap_),
                "k": int(k), "k_given": self.n_clusters is not None, "pass": pass_number,
                "rule": "largest drop" if pass_number > 1 else "half the largest drop"}

    def _stages(self, n_images: int, model: SimilarityModel) -> list[Stage]:
        """The stages of a fit on ``n_images`` images, with their priors (see :data:`STAGE_COSTS`)."""
        c = STAGE_COSTS
        pixels = _pixel_scale(model)
        batch = min(n_images, 2048)  # a training step sees every pair of up to 2,048 images
        one_pass = [
            Stage("features", n_images, c["features"] * pixels),
            Stage("graph", n_images, c["graph"] + c["graph_squared"] * min(n_images, 3000)),
            Stage("training", self.steps, c["training"] + c["training_pair"] * batch ** 2),
        ]
        reading = Stage("reading", n_images, c["reading"], calibrates=False)
        stages = [reading, *one_pass]
        if self.method == "paper":  # the paper's network on the embeddings: no graph, no second round
            return [reading, one_pass[0], one_pass[2]]
        if self.settings_["self_training_steps"]:
            # until the first clustering says how many groups there are, as if every batch were full
            groups = self.n_clusters or self.max_clusters
            stages += [Stage("self-training", self.settings_["self_training_steps"],
                             self._self_training_step_cost(groups, model)), *one_pass]
        return stages

    @staticmethod
    def _self_training_step_cost(n_clusters: int, model: SimilarityModel) -> float:
        """Prior seconds of one self-training step after a first clustering into ``n_clusters`` groups."""
        per_step = STAGE_COSTS["self-training"] + STAGE_COSTS["self-training_image"] * batch_images(n_clusters)
        return per_step * _pixel_scale(model)

    def _estimate_k(self, emb: torch.Tensor, graph_eigenvalues: np.ndarray, pass_number: int):
        """The eigengap estimate of K and the spectrum it was read from: (k, eigenvalues (m,)).

        First pass: the spectrum of the self-tuning graph of the similarity model's features, where
        categories drawn in two styles stay one group. After self-training the sharpened features'
        own graph has one clear drop, and its largest gap is the answer.
        """
        settings = self.settings_
        max_k = min(self.max_clusters, len(emb) - 1)
        if pass_number > 1:
            k = eigengap_k(graph_eigenvalues, max_k=max_k, significance=settings["k_sharpened_significance"])
            return k, graph_eigenvalues
        values = self_tuning_spectrum(emb, max_k + 1, neighbours=settings["k_graph_neighbours"],
                                      scale_neighbour=settings["k_graph_scale_neighbour"], seed=self.random_state)
        return eigengap_k(values, max_k=max_k, significance=settings["k_significance"]), values

    def _refine(self, model: SimilarityModel, pixels: torch.Tensor, first, device, report, stop, timings: dict):
        """Self-train the similarity model on the first clusters, then cluster again; None if stopped."""
        probs = first[2]
        t0 = time.perf_counter()
        tuned = self_train(
            model,
            pixels,
            probs.argmax(1),
            probs.max(1),
            steps=self.settings_["self_training_steps"],
            keep=self.settings_["self_training_keep"],
            device=device,
            seed=self.random_state,
            progress=lambda step, total: report(
                "self-training", step, total, message=f"Sharpening the features on these images: step {step}/{total}"
            ),
            should_stop=report.should_stop,
        )
        timings["self_training"] = time.perf_counter() - t0
        if tuned is None:
            return None
        history_before = len(self.history_)
        spectrum_before = self.eigenvalues_, self.k_eigengap_
        try:
            t0 = time.perf_counter()
            emb = self._embed(tuned, pixels, device, report, what="sharpened features")
            timings["features"] += time.perf_counter() - t0
            result = self._cluster(emb, device, report, stop, timings, pass_number=2)
        except StoppedError:
            result = None
        if result is None or (stop is not None and stop.is_set()):
            del self.history_[history_before:]
            self.eigenvalues_, self.k_eigengap_ = spectrum_before
            return None
        return result

    def _finish(self, data: ImageSet, emb, features, probs, head, graph, pass_number, model, device, started) -> None:
        self._adopt(probs, head)
        self.embedding_ = emb
        self.diffusion_features_ = features
        self.graph_ = graph
        self.paths_ = list(data.paths)
        self.skipped_ = list(data.skipped)
        self.root_ = data.root
        self.true_labels_ = data.labels
        self.similarity_model_ = model
        self.device_ = device
        self.seconds_ = time.perf_counter() - started
        head_of_pairs = model.net.head
        self.pair_head_ = (float(head_of_pairs.scale.detach()), float(head_of_pairs.bias.detach()))
        self.constraints_ = ConstraintSet(len(data.paths), names=self.paths_)
        # what a refit starts from: this run's clusters, before any answer
        self._base = dict(labels=self.labels_, probabilities=self.probabilities_, confidence=self.confidence_,
                          n_clusters=self.n_clusters_, features=features, eigenvalues=self.eigenvalues_,
                          k_eigengap=self.k_eigengap_, head_state=self.head_state_, history=list(self.history_),
                          pass_number=pass_number)

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
        sub = probs[:, order]
        sub = sub / sub.sum(1, keepdims=True).clip(1e-12)
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
            "method": self.method,
            "settings": self.settings_,
            "stopped_early": bool(self.stopped_),
            "timings": self.timings_,
            "loss": self.loss,
            "seconds": round(self.seconds_, 2),
            "device": describe_device(self.device_),
            "model": model.name,
            "model_file": model.source,
            "model_sha256": model.digest,
            "seed": self.random_state,
            "cluster_sizes": np.bincount(self.labels_, minlength=self.n_clusters_).tolist(),
            "history": self.history_,
            "version": __version__,
            "target": str(self.root_) if self.root_ else None,
        }
        answers = getattr(self, "constraints_", None)
        if answers is not None and len(answers):
            out["answers"] = {"n_answers": len(answers), "n_same": int(len(answers.must_pairs())),
                              "n_different": int(len(answers.cannot_pairs())),
                              "k_before_answers": int(self._base["n_clusters"]),
                              "refit_seconds": self.timings_.get("refit")}
        if score:
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
