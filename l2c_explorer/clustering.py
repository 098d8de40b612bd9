"""Discovering categories: the clustering network (CCN) trained from transferred pair similarities.

``L2CClusterer(similarity="omniglot").fit(folder)`` does, in order (each step a function of
:mod:`l2c_explorer.discovery` or :mod:`l2c_explorer.sources`; this class stores the options, calls the steps
and keeps their results as its fitted attributes):

1. read the images at the similarity model's input size (bad files are skipped and listed);
2. embed them with the similarity model, its batch-norm statistics re-estimated on this folder;
3. link every image to the images the similarity model finds most probably "same" (a sparse k-nearest-
   neighbour graph; P(same) grows with the embedding cosine) and compute the graph's diffusion features
   (:mod:`l2c_explorer.graph`): there each category is a tight group;
4. K: given, or estimated from the eigengaps of a self-tuning graph of the same features (at most
   ``max_clusters``; after self-training from the largest gap of the sharpened graph);
5. train the clustering network (:mod:`l2c_explorer.ccn`) on the diffusion features with the MCL or KCL loss:
   its cluster distributions must agree on the pairs the graph links (mutual nearest neighbours: "same") and
   disagree on pairs whose diffusion features are far apart ("different"); pairs in between are not
   used. It starts from k-means centres of the features (the spectral solution) and reports the loss
   and the number of clusters in use at every step;
6. self-training (``self_training_steps``, :mod:`l2c_explorer.selftrain`): fine-tune a copy of the
   similarity model on the most confident members of each cluster, then redo steps 2-5 with it.

Answers, relearning and questions come from :class:`~l2c_explorer.answering.AnswersMixin`; run folders are
written and read back by :class:`~l2c_explorer.runfile.RunFilesMixin`.

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
from sklearn.base import BaseEstimator, ClusterMixin

from . import __version__
from .answering import AnswersMixin
from .assignment import UNLIKE_QUANTILE, assign_embeddings, unlike_threshold
from .ccn import Clusters, ranked_clusters
from .constraints import ConstraintSet, check_answers_file
from .corrections import AnswerHistory
from .data import truth_problem
from .device import resolve_device
from .discovery import (
    PassOptions,
    PassResult,
    cached_neighbours,
    first_embeddings,
    first_pass,
    keep_neighbours,
    sharpen,
)
from .errors import InputError, StoppedError
from .groups import cluster_prototypes
from .metrics import clustering_scores
from .model_io import model_file_path, save_model_file
from .options import DISCOVER, discovery_settings
from .planning import Stopwatch, fit_stages, self_training_step_cost
from .progress import Callback, Reporter
from .runfile import RunFilesMixin
from .similarity_model import SimilarityModel, load_similarity_model
from .sources import embedded_images, embedded_new_images, open_images, scratch_folder

_DEFAULTS = DISCOVER.defaults


class L2CClusterer(AnswersMixin, RunFilesMixin, ClusterMixin, BaseEstimator):
    """Find the categories in unlabelled images with a transferred similarity model.

    Parameters
    ----------
    similarity : str, path or SimilarityModel
        The similarity model: a shipped name (``"omniglot"``), a model file, or a loaded model.
    n_clusters, max_clusters, loss, steps, method, ... : see :data:`l2c_explorer.options.DISCOVER`
        Every other parameter is an option of a discovery, in the spec's order (``n_clusters``, ``max_clusters``,
        ``loss``, ``steps``, ``method``, ``n_neighbors``, ``diffusion_time``, ``adapt_norm``,
        ``self_training_steps``, ``self_training_keep``, ``relearn_steps``, ``k_significance``,
        ``k_sharpened_significance``, ``k_graph_neighbours``, ``k_graph_scale_neighbour``, ``neighbours``,
        ``spectrum``, ``cache``, ``follow_links``, ``n_jobs``, ``device``, ``random_state``). The spec declares each
        one's meaning, default and allowed values once, for this class, the ``discover`` command (its ``--help``)
        and the app. The steps they tune are listed in this module's docstring; ``method="paper"`` runs the L2C
        paper's clustering network instead (:mod:`l2c_explorer.paper`), a baseline.

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
        What the fit reused from the cache ("pixels", "embeddings", "neighbours").
    graph_ : sparse matrix of shape (n_images, n_images) or None
        The similarity graph of the final clustering (None for the paper's pipeline): what answers are applied
        along and questions are chosen from. Saved with the run (:meth:`save_run`).
    paths_, skipped_ : list
        Image paths (relative to the folder) and skipped files with reasons.
    true_labels_ : list of str or None
        Each image's true class, fitted with ``labelled=True``: its first-level subfolder. None when the
        folder names cannot be true categories (``truth_problem_`` says why).
    truth_problem_ : str or None
        Why the folder names asked for as true categories are none (:func:`~l2c_explorer.data.truth_problem`):
        the run is then not scored.

    Examples
    --------
    >>> c = L2CClusterer("omniglot", random_state=0).fit("images/", labelled=True)  # doctest: +SKIP
    >>> c.n_clusters_, c.score()  # doctest: +SKIP
    >>> c.predict("new_images/")  # doctest: +SKIP
    """

    def __init__(
        self,
        similarity="omniglot",
        *,
        n_clusters: int | None = _DEFAULTS.n_clusters,
        max_clusters: int = _DEFAULTS.max_clusters,
        loss: str = _DEFAULTS.loss,
        steps: int = _DEFAULTS.steps,
        method: str = _DEFAULTS.method,
        n_neighbors: int | None = _DEFAULTS.n_neighbors,
        diffusion_time: float | None = _DEFAULTS.diffusion_time,
        adapt_norm: bool = _DEFAULTS.adapt_norm,
        self_training_steps: int | None = _DEFAULTS.self_training_steps,
        self_training_keep: float | None = _DEFAULTS.self_training_keep,
        relearn_steps: int | None = _DEFAULTS.relearn_steps,
        k_significance: float | None = _DEFAULTS.k_significance,
        k_sharpened_significance: float | None = _DEFAULTS.k_sharpened_significance,
        k_graph_neighbours: int | None = _DEFAULTS.k_graph_neighbours,
        k_graph_scale_neighbour: int | None = _DEFAULTS.k_graph_scale_neighbour,
        neighbours: str = _DEFAULTS.neighbours,
        spectrum: str = _DEFAULTS.spectrum,
        cache=_DEFAULTS.cache,
        follow_links: bool = _DEFAULTS.follow_links,
        n_jobs: int | None = _DEFAULTS.n_jobs,
        device: str = _DEFAULTS.device,
        random_state: int = _DEFAULTS.random_state,
    ):
        # the options of :data:`~l2c_explorer.options.DISCOVER`, in its order (tests/test_options.py checks)
        self.similarity = similarity
        self.n_clusters = n_clusters
        self.max_clusters = max_clusters
        self.loss = loss
        self.steps = steps
        self.method = method
        self.n_neighbors = n_neighbors
        self.diffusion_time = diffusion_time
        self.adapt_norm = adapt_norm
        self.self_training_steps = self_training_steps
        self.self_training_keep = self_training_keep
        self.relearn_steps = relearn_steps
        self.k_significance = k_significance
        self.k_sharpened_significance = k_sharpened_significance
        self.k_graph_neighbours = k_graph_neighbours
        self.k_graph_scale_neighbour = k_graph_scale_neighbour
        self.neighbours = neighbours
        self.spectrum = spectrum
        self.cache = cache
        self.follow_links = follow_links
        self.n_jobs = n_jobs
        self.device = device
        self.random_state = random_state

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

    def _pass_options(self) -> PassOptions:
        return PassOptions.of(self.get_params(), self.settings_)

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
        if isinstance(constraints, (str, os.PathLike)) and isinstance(images, (str, os.PathLike)) \
                and Path(images).expanduser().is_dir():  # a bad answers file is said before the folder is clustered
            check_answers_file(constraints, images, follow_links=self.follow_links)
        started = time.perf_counter()
        with limited_threads(self.n_jobs), scratch_folder() as scratch:
            self._discover(images, Reporter(callback, stop), labelled, client, scratch)
            if constraints is not None and not self.stopped_:
                self.refit(constraints, callback=callback, stop=stop)
                if relearn and len(self.constraints_):
                    self.relearn(callback=callback, stop=stop)
                self.seconds_ = time.perf_counter() - started
        return self

    def _discover(self, images, report: Reporter, labelled: bool, client, scratch: Path) -> None:
        """The steps of :meth:`fit`, in order; the fitted attributes are set from their results at the end."""
        started = time.perf_counter()
        timings = Stopwatch()
        timings.start("reading")
        device = resolve_device(self.device)
        model = load_similarity_model(self.similarity)
        settings = discovery_settings(model.card.get("discovery"), self.get_params())
        options = PassOptions.of(self.get_params(), settings)

        def stopped_before_training() -> None:
            if report.should_stop():
                raise StoppedError("Stopped before training began; nothing was learnt.")

        def reading(done: int, total: int, message: str | None = None) -> None:
            if report.run_plan is None:  # the first report gives the number of images: plan the whole run
                report.plan(fit_stages(total, model, method=self.method, steps=self.steps,
                                       self_training_steps=settings["self_training_steps"],
                                       groups=self.n_clusters or self.max_clusters))
            report("reading", done, total, message=message or f"Reading images {done}/{total}")

        opened = open_images(images, model, labelled=labelled, follow_links=self.follow_links, cache=self.cache,
                             scratch=scratch, reading=reading, should_stop=report.should_stop, client=client)
        source, folder_cache = opened.source, opened.folder_cache
        stopped_before_training()
        self._validate(len(source))
        timings.stop("reading")

        timings.start("features")
        embedded = first_embeddings(model, source, folder_cache, adapt_norm=self.adapt_norm, device=device,
                                    report=report, client=client)
        stopped_before_training()
        timings.stop("features")

        cached = ["pixels"] * opened.pixels_cached + ["embeddings"] * embedded.cached
        # neighbour lists are kept only next to the embeddings they were found in
        neighbours = (cached_neighbours(folder_cache, model, options, len(source), device) if embedded.cached
                      else None)
        if neighbours is not None:
            cached.append("neighbours")
        result = first_pass(
            model, embedded.embeddings, options, method=self.method, device=device, report=report, timings=timings,
            neighbours=neighbours,
            on_neighbours=lambda found: keep_neighbours(folder_cache, model, options, found, device),
            # the self-training batch follows from the groups found
            on_k=lambda k: report.revise("self-training", self_training_step_cost(k, model)))
        history, final_model = list(result.history), embedded.model
        if self.method == "graph" and settings["self_training_steps"] and not report.should_stop():
            # None when stopped, or with nothing to learn from: the first clustering stands
            sharpened = sharpen(embedded.model, source, result.probabilities.argmax(1), result.probabilities.max(1),
                                options, steps=settings["self_training_steps"], device=device, report=report,
                                timings=timings, adapted=embedded.model if self.adapt_norm else None, client=client)
            if sharpened is not None:
                result, final_model = sharpened.result, sharpened.model
                history += result.history
        self._fitted(source, result, history, model, final_model, settings, device, timings, cached, report, started)
        self.stage_seconds_ = report.run_plan.measured() if report.run_plan is not None else []

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
        from .threads import limited_threads

        self._validate()
        report = Reporter(callback, stop)
        started = time.perf_counter()
        device = resolve_device(self.device)
        emb, model, source = embedded_images(embedded, paths, root=root, labels=labels, similarity=self.similarity)
        self._validate(len(emb))
        timings = Stopwatch()
        settings = discovery_settings(model.card.get("discovery"), self.get_params())
        options = PassOptions.of(self.get_params(), settings)
        with limited_threads(self.n_jobs):
            result = first_pass(model, emb, options, method=self.method, device=device, report=report, timings=timings)
        self._fitted(source, result, list(result.history), model, model, settings, device, timings, [], report, started)
        return self

    def _fitted(self, source, result: PassResult, history: list, model: SimilarityModel, final_model: SimilarityModel,
                settings: dict, device, timings: Stopwatch, cached: list, report: Reporter, started: float) -> None:
        """Every fitted attribute of a fit, from the steps' results: the one place they are set (but
        ``stage_seconds_``, the fit's measured pace, set when it ends)."""
        self.settings_ = settings
        self.cached_ = cached
        self.history_ = history
        self.stopped_ = report.should_stop()
        self.timings_ = {key: round(v, 3) for key, v in timings.items()}
        self.cpu_timings_ = {key: round(v, 3) for key, v in timings.cpu.items()}
        self._adopt_pass(result, final_model)
        self.paths_ = list(source.paths)
        self.skipped_ = list(source.skipped)
        self.root_ = source.root
        # folder names that cannot be categories are no truth: nothing is scored or coloured against them
        self.truth_problem_ = truth_problem(source.labels) if source.labels is not None else None
        self.true_labels_ = None if self.truth_problem_ else source.labels
        self.similarity_model_ = model
        self.device_ = device
        self.seconds_ = time.perf_counter() - started
        head_of_pairs = model.net.head
        self.pair_head_ = (float(head_of_pairs.scale.detach()), float(head_of_pairs.bias.detach()))
        self.constraints_ = ConstraintSet(len(source.paths), names=self.paths_)
        # what a refit starts from: this run's clusters, before any answer; relearning adds later ones
        self._answers = AnswerHistory(self._snapshot())

    def _adopt_pass(self, result: PassResult, embedding_model: SimilarityModel) -> None:
        """The clusters, graph, spectrum and embeddings of a pass (a fit's last, or a relearning's)."""
        self._set_clusters(ranked_clusters(result.probabilities, result.head, keep_empty=self.n_clusters is not None),
                           result.embedding)
        self.diffusion_features_, self.graph_ = result.features, result.graph
        estimate = result.estimate
        self.k_eigengap_ = None if estimate is None else estimate.k
        self.k_parts_ = None if estimate is None else estimate.parts
        self.eigenvalues_ = None if estimate is None else estimate.eigenvalues
        self.embedding_model_ = embedding_model
        self.unlike_threshold_ = unlike_threshold(result.neighbours, self.labels_, UNLIKE_QUANTILE)

    def _set_clusters(self, clusters: Clusters, embedding: np.ndarray) -> None:
        self.labels_, self.probabilities_ = clusters.labels, clusters.probabilities
        self.confidence_, self.n_clusters_ = clusters.confidence, clusters.n_clusters
        self.head_state_ = clusters.head_state
        self.embedding_ = embedding
        self.prototypes_ = cluster_prototypes(embedding, self.labels_, self.n_clusters_)

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
        (:func:`~l2c_explorer.assignment.assign_embeddings`.)

        Returns
        -------
        dict with ``labels`` (m,), ``confidence`` (m,), ``unlike_any`` (m,) bool, ``nearest`` (m,) the
        cosine to the nearest member of the assigned cluster, ``paths`` and ``skipped`` (and ``true_labels``
        with ``labelled``).
        """
        if not hasattr(self, "labels_") or not hasattr(self, "embedding_model_"):
            raise InputError("This clusterer has not been fitted (or loaded from a run folder) yet.")
        model = self.embedding_model_
        emb, data = embedded_new_images(images, model, device=resolve_device(device or self.device),
                                        report=Reporter(callback), labelled=labelled,
                                        follow_links=self.follow_links if follow_links is None else follow_links)
        head = model.net.head  # the pair head of the model the run's embeddings came from
        found = assign_embeddings(emb, self.embedding_, self.labels_, self.n_clusters_,
                                  k=k or self.settings_["n_neighbors"], unlike_below=self.unlike_threshold_,
                                  pair_scale=head.scale.detach(), pair_bias=head.bias.detach())
        return {"labels": found.labels, "confidence": found.confidence, "unlike_any": found.unlike_any,
                "nearest": found.nearest, "paths": list(data.paths), "skipped": list(data.skipped),
                "true_labels": data.labels}

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
        """Everything ``summary.json`` records about this run (:func:`~l2c_explorer.results.run_summary`)."""
        from .results import run_summary

        return run_summary(self, score=score)

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


def load_run(folder: str | os.PathLike) -> L2CClusterer:
    """A clusterer restored from a ``discover`` run folder, ready to :meth:`~L2CClusterer.predict` new images."""
    return L2CClusterer.load_run(folder)
