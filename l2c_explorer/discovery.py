"""Discovery as named steps: embedding, neighbour lists, the graph and K, the clustering network, self-training.

Each step is a module-level function that takes its inputs and returns a small result (a dataclass); none
writes anything else (the folder's cache only through the explicit ``on_neighbours`` and cache arguments).
:class:`~l2c_explorer.clustering.L2CClusterer` calls them in order:

1. :func:`~l2c_explorer.sources.open_images`;
2. :func:`first_embeddings` (from the folder's cache when it was embedded before), else :func:`embed_images`;
3. :func:`cluster_pass`: neighbour lists (:func:`search_neighbours`), the similarity graph, its diffusion
   features, K (:func:`estimate_k`, the rule an explicit argument), and the clustering network
   (:func:`~l2c_explorer.ccn.train_cluster_head`); or :func:`paper_pass`, the paper's pipeline (a fit chooses
   between them with :func:`first_pass`);
4. :func:`sharpen`: self-train the similarity model on the clusters, embed again and run :func:`cluster_pass`
   with the sharpened graph's K rule. The same function is a fit's second pass and a relearning.

``report`` is a :class:`~l2c_explorer.progress.Reporter`: it hears the progress and holds the stop flag.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from .ccn import kmeans_centres, train_cluster_head
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
from .neighbours import Neighbours, nearest_neighbours, rerank, search_backend
from .nets import has_frozen_trunk
from .paper import dominant_outputs, train_paper_ccn
from .planning import Stopwatch
from .progress import Reporter
from .selftrain import self_train
from .similarity_model import SimilarityModel
from .store import paths_digest

# Each image's neighbour lists are searched once per pass, this long at least: the self-tuning graph of the
# K estimate needs 20, and they are the candidates of the positive pairs of large folders.
NEIGHBOUR_LISTS = 20
# The K rules (:func:`estimate_k`): the eigengaps of the self-tuning graph of the similarity model's embeddings
# (a first pass: categories drawn in two styles stay one group), or of the sharpened similarity graph itself
# (after self-training, or relearning: its spectrum has one clear drop).
K_RULES = ("self-tuning", "sharpened")


def check_k_rule(k_rule: str) -> None:
    """Raise ValueError unless ``k_rule`` is one of :data:`K_RULES` (before any work is done with it)."""
    if k_rule not in K_RULES:
        raise ValueError(f"k_rule must be one of {', '.join(K_RULES)}, not {k_rule!r}")


@dataclass(frozen=True)
class PassOptions:
    """What a clustering pass needs of a run's parameters: ``settings`` (the resolved discovery settings,
    :func:`~l2c_explorer.options.discovery_settings`) and the estimator's own options."""

    settings: Mapping
    n_clusters: int | None = None
    max_clusters: int = 100
    loss: str = "mcl"
    steps: int = 500
    neighbours: str = "auto"
    spectrum: str = "auto"
    adapt_norm: bool = True
    seed: int = 0

    @classmethod
    def of(cls, params: Mapping, settings: Mapping) -> PassOptions:
        """From an estimator's ``get_params()`` and its ``settings_``."""
        return cls(settings=dict(settings), n_clusters=params["n_clusters"], max_clusters=params["max_clusters"],
                   loss=params["loss"], steps=params["steps"], neighbours=params["neighbours"],
                   spectrum=params["spectrum"], adapt_norm=params["adapt_norm"], seed=params["random_state"])

    @property
    def neighbour_lists(self) -> int:
        """How many neighbours of each image are searched: enough for the graph and the K estimate's graph."""
        s = self.settings
        return max(s["n_neighbors"], s["k_graph_neighbours"], NEIGHBOUR_LISTS)


# ---------------------------------------------------------------------------------------------------
# embedding


@dataclass
class Embedded:
    """Unit embeddings (n, d) of a folder's images, the model that computed them (with this folder's batch-norm
    statistics when they were re-estimated), and whether they were read back from the folder's cache."""

    embeddings: torch.Tensor
    model: SimilarityModel
    cached: bool = False


def embed_images(model: SimilarityModel, source, *, adapt_norm: bool, device, report: Reporter, client=None,
                 what: str = "features") -> Embedded:
    """Embed every image of ``source`` with ``model`` (its batch-norm statistics re-estimated on them first with
    ``adapt_norm``; on a Dask ``client``'s workers when given)."""
    from .embedding import adapt_model, embed_store

    progress = lambda done, total: report("features", done, total, message=f"Computing {what} {done}/{total}")
    progress(0, len(source))  # this stage has begun (the batch-norm pass below reports nothing)
    adapted = model
    if adapt_norm:
        adapted = adapt_model(model, source.take, len(source), device=device)
    if client is not None:
        emb = source.embed_on(client, adapted, progress)
    else:
        emb = embed_store(adapted, source, device=device, progress=progress, should_stop=report.should_stop)
    return Embedded(emb, adapted)


def reopen_images(root, model: SimilarityModel, embedding_model: SimilarityModel, *, paths: list[str], labelled: bool,
                  follow_links: bool, cache, scratch, device, report: Reporter):
    """A run's images read again for a relearning (from the folder's cache when there is one): the source.

    Raises :class:`~l2c_explorer.errors.InputError` when the folder's images are no longer the run's ``paths``.
    With a pretrained trunk (``embedding_model``), its features are read back from the cache, else computed here
    (a planned stage, not a silent wait).
    """
    from .embedding import trunk_features
    from .sources import open_images

    def reading(done: int, total: int, message: str | None = None) -> None:
        report("reading", done, total, message=message or f"Reading images {done}/{total}")

    source = open_images(root, model, labelled=labelled, follow_links=follow_links, cache=cache, scratch=scratch,
                         reading=reading, should_stop=report.should_stop).source
    if list(source.paths) != list(paths):
        raise InputError(f"The images in {root} changed since this run: run the discovery again.")
    if has_frozen_trunk(embedding_model.net):
        def features(done: int, total: int) -> None:
            report("features", done, total, message=f"Computing features {done}/{total}")

        features(0, len(source))
        trunk_features(embedding_model, source, device=device, progress=features, should_stop=report.should_stop)
    return source


def first_embeddings(model: SimilarityModel, source, folder_cache, *, adapt_norm: bool, device, report: Reporter,
                     client=None) -> Embedded:
    """A first pass's embeddings: from the folder's cache when this folder was embedded with ``model`` before,
    else :func:`embed_images` (and kept in the cache for the next run)."""
    key = f"embeddings-{model.digest[:16]}-{'norm' if adapt_norm else 'raw'}"
    if folder_cache is not None and model.digest:
        cached = folder_cache.load(key, ("embeddings",))
        if cached is not None and len(cached["embeddings"]) == len(source) and _same_paths(cached, source):
            adapted = with_norm_state(model, cached) if adapt_norm else model
            report("features", len(source), len(source), message="Features reused from the cache")
            return Embedded(torch.from_numpy(cached["embeddings"]), adapted, cached=True)
    embedded = embed_images(model, source, adapt_norm=adapt_norm, device=device, report=report, client=client)
    if folder_cache is not None and model.digest:
        norm = {f"norm::{k}": v.cpu().numpy() for k, v in embedded.model.net.state_dict().items()
                if "running_" in k or "num_batches" in k} if adapt_norm else {}
        folder_cache.save(key, embeddings=embedded.embeddings.numpy(),
                          paths_digest=np.frombuffer(paths_digest(source.paths), np.uint8), **norm)
    return embedded


def _same_paths(cached: dict, source) -> bool:
    digest = cached.get("paths_digest")
    return digest is not None and bytes(digest.tobytes()) == paths_digest(source.paths)


def with_norm_state(model: SimilarityModel, cached: dict) -> SimilarityModel:
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


# ---------------------------------------------------------------------------------------------------
# neighbour lists


def search_neighbours(emb: torch.Tensor, options: PassOptions, device=None) -> Neighbours:
    """Each image's ``options.neighbour_lists`` nearest others (on CPU), by the run's search method."""
    found = nearest_neighbours(emb.float().to(device or "cpu"), min(options.neighbour_lists, len(emb) - 1),
                               method=options.neighbours, seed=options.seed)
    return Neighbours(found.indices.cpu(), found.cosines.cpu(), found.exact)


def neighbour_backend(n_images: int, options: PassOptions, device=None) -> str:
    """The search :func:`search_neighbours` makes for ``n_images`` on ``device``: exact, faiss-ivf or ivf."""
    return search_backend(n_images, min(options.neighbour_lists, n_images - 1), method=options.neighbours,
                          device=device or "cpu")


def neighbour_cache_key(model: SimilarityModel, options: PassOptions, backend: str) -> str:
    """Where a first pass's neighbour lists are kept in the folder's cache; ``backend`` (:func:`neighbour_backend`)
    keeps the lists of faiss's IVF search and of ours apart (they can differ slightly)."""
    return (f"neighbours-{model.digest[:16]}-{'norm' if options.adapt_norm else 'raw'}-{options.neighbour_lists}-"
            f"{options.neighbours}-{options.seed}-{backend}")


def cached_neighbours(folder_cache, model: SimilarityModel, options: PassOptions, n_images: int,
                      device=None) -> Neighbours | None:
    """A first pass's neighbour lists read back from the folder's cache (None when there are none), where they
    were found by the search that would be made now on ``device``."""
    if folder_cache is None or not model.digest:
        return None
    key = neighbour_cache_key(model, options, neighbour_backend(n_images, options, device))
    cached = folder_cache.load(key, ("indices", "cosines"))
    if cached is None or len(cached["indices"]) != n_images:
        return None
    return Neighbours(torch.from_numpy(cached["indices"].astype(np.int64)), torch.from_numpy(cached["cosines"]),
                      exact=bool(cached["exact"]))


def keep_neighbours(folder_cache, model: SimilarityModel, options: PassOptions, neighbours: Neighbours,
                    device=None) -> None:
    """Keep a first pass's neighbour lists, searched on ``device``, in the folder's cache (see
    :func:`cached_neighbours`)."""
    if folder_cache is not None and model.digest:
        key = neighbour_cache_key(model, options, neighbour_backend(len(neighbours.indices), options, device))
        folder_cache.save(key, indices=neighbours.indices.numpy().astype(np.int32),
                          cosines=neighbours.cosines.numpy(), exact=np.array(neighbours.exact))


# ---------------------------------------------------------------------------------------------------
# K


@dataclass
class KEstimate:
    """The eigengap estimate of K (``k``), how many parts of the folder it was read in (``parts``), the
    spectrum it was read from (``eigenvalues``, decreasing) and the rule's significance."""

    k: int
    parts: int
    eigenvalues: np.ndarray
    significance: float

    @property
    def rule(self) -> str:
        """The K rule in words."""
        s = self.significance
        if s >= 1:
            return "the largest drop"
        return f"the last drop at least {'half' if s == 0.5 else f'{s:.0%} of'} the largest"


def _k_bounds(n: int, options: PassOptions) -> tuple[int, int, int]:
    """(largest K considered, smallest folder read again in parts, spectrum readings)."""
    max_k = min(options.max_clusters, n - 1)
    # with K given, the estimate is for reference only: not worth reading the parts of a large folder again,
    # nor an estimated spectrum more than once
    split_min = SPLIT_MIN if options.n_clusters is None else n + 1
    readings = K_READINGS if options.n_clusters is None else 1
    return max_k, split_min, readings


def estimate_k(k_rule: str, options: PassOptions, *, embedding: torch.Tensor | None = None,
               neighbours: Neighbours | None = None, graph: sp.spmatrix | None = None,
               eigenvalues: np.ndarray | None = None, n_components: int | None = None) -> KEstimate:
    """The eigengap estimate of K by rule ``k_rule`` (one of :data:`K_RULES`).

    ``"self-tuning"``: from the self-tuning graph of the unit ``embedding`` (n, d) (its ``neighbours`` lists
    reused) and the ``k_significance`` setting. ``"sharpened"``: from the similarity ``graph`` and its top
    ``eigenvalues`` (computed with ``n_components`` diffusion features) and the ``k_sharpened_significance``
    setting.
    """
    check_k_rule(k_rule)
    s, seed, method = options.settings, options.seed, options.spectrum
    if k_rule == "self-tuning":
        n = len(embedding)
        max_k, split_min, readings = _k_bounds(n, options)
        graph = k_estimate_graph(embedding, neighbours=s["k_graph_neighbours"],
                                 scale_neighbour=s["k_graph_scale_neighbour"], found=neighbours)
        eigenvalues = top_eigenvalues(normalised_adjacency(graph), max_k + 1, seed=seed, method=method)
        significance = s["k_significance"]
    else:  # "sharpened"
        n = graph.shape[0]
        max_k, split_min, readings = _k_bounds(n, options)
        # one clear drop after self-training; an estimated spectrum blurs it over a few neighbouring gaps, so
        # its largest single gap may fall short of the drop's end, and the first pass's rule reads it there
        # (Omniglot background, 500 characters, 10,000 drawings: exact eigenvalues 480 groups; estimated
        # ones 422 with the largest gap, 497 with the first pass's rule)
        significance = s["k_sharpened_significance"]
        if stochastic_spectrum(n, max(n_components, max_k + 1), method):
            significance = min(significance, s["k_significance"])
    k, parts = coarse_to_fine_k(graph, eigenvalues, max_k=max_k, significance=significance, readings=readings,
                                seed=seed, method=method, split_min=split_min)
    return KEstimate(int(k), int(parts), eigenvalues, significance)


def spectrum_details(estimate: KEstimate, k: int, *, k_given: bool, k_rule: str) -> dict:
    """What K was chosen from, for people: the spectrum, the eigengap estimate and the K used (``pass`` 1 with
    the first pass's rule, 2 with the sharpened graph's)."""
    return {"eigenvalues": [round(float(v), 5) for v in estimate.eigenvalues], "k_eigengap": int(estimate.k),
            "k": int(k), "k_given": k_given, "pass": 1 if k_rule == "self-tuning" else 2,
            "rule": estimate.rule, "parts": int(estimate.parts)}


# ---------------------------------------------------------------------------------------------------
# a pass


@dataclass
class PassResult:
    """One clustering pass: unit ``embedding`` (n, d), diffusion ``features`` (n, m) (None for the paper's
    pipeline), cluster ``probabilities`` (n, k), the trained ``head`` (None: paper), the ``neighbours`` lists,
    the similarity ``graph`` (n, n) (None: paper), the K ``estimate`` (None: paper) and the training
    ``history`` (points with ``step``, ``epoch``, ``loss``, ``k_estimated`` and ``pass``)."""

    embedding: np.ndarray
    features: np.ndarray | None
    probabilities: np.ndarray
    head: torch.nn.Module | None
    neighbours: Neighbours
    graph: sp.csr_matrix | None
    estimate: KEstimate | None
    history: list = field(default_factory=list)


def cluster_pass(emb: torch.Tensor, options: PassOptions, *, k_rule: str, pass_label, device, report: Reporter,
                 timings: Stopwatch | None = None, neighbours: Neighbours | None = None,
                 on_neighbours: Callable[[Neighbours], None] | None = None, on_k: Callable[[int], None] | None = None,
                 answers: sp.spmatrix | None = None) -> PassResult:
    """The similarity graph, K and the clustering network from unit embeddings (n, d).

    ``neighbours``: lists found before (read from the cache), else searched here and handed to
    ``on_neighbours``. K is ``options.n_clusters`` when given, else :func:`estimate_k` by ``k_rule``; ``on_k(k)``
    hears it before training. ``answers``: a person's answers as pair targets (n, n) the network learns from too
    (:func:`~l2c_explorer.ccn.train_cluster_head`). History points are marked ``pass_label``. Raises
    :class:`StoppedError` when stopped before training.
    """
    check_k_rule(k_rule)
    timings = timings if timings is not None else Stopwatch()
    settings = options.settings
    timings.start("graph")
    n = len(emb)
    report("graph", 0, 1, message="Linking similar images")
    emb = emb.float()
    if neighbours is None:
        neighbours = search_neighbours(emb, options, device)
        if on_neighbours is not None:
            on_neighbours(neighbours)
    linked = neighbourhood(settings["n_neighbors"], n, share=NEIGHBOUR_SHARE)
    graph = knn_adjacency(neighbours, linked)
    max_k = min(options.max_clusters, n - 1)
    n_components = min(max(DIFFUSION_COMPONENTS, options.max_clusters, options.n_clusters or 0) + 1, n)
    if k_rule == "self-tuning":  # read before the diffusion features, as it always was
        estimate = estimate_k(k_rule, options, embedding=emb, neighbours=neighbours)
    features, eigenvalues = diffusion_features(
        graph, n_components=n_components, diffusion_time=settings["diffusion_time"], seed=options.seed,
        n_values=max_k + 1, method=options.spectrum,
    )
    if k_rule != "self-tuning":
        estimate = estimate_k(k_rule, options, graph=graph, eigenvalues=eigenvalues, n_components=n_components)
    k = int(options.n_clusters or estimate.k)
    if on_k is not None:
        on_k(k)
    centres = kmeans_centres(features, k, seed=options.seed)
    feats = torch.from_numpy(features).to(device)
    k_positive = max(1, linked // 2)
    if neighbours.exact:
        positives = knn_graph(feats, k=k_positive, mutual=True)
    else:  # the feature-space neighbours among the embedding neighbours: O(n k m), not O(n^2 m)
        positives = knn_adjacency(rerank(feats.cpu(), neighbours.indices, k_positive), k_positive, mutual=True)
    report("graph", 1, 1, message=f"Similarity graph ready: starting from {k} clusters",
           details={"spectrum": spectrum_details(estimate, k, k_given=options.n_clusters is not None,
                                                 k_rule=k_rule)})
    timings.stop("graph")
    if report.should_stop():
        raise StoppedError("Stopped before training began; nothing was learnt.")

    timings.start("training")
    history: list[dict] = []
    head, probs = train_cluster_head(
        feats, positives, torch.from_numpy(centres).to(device), loss=options.loss, steps=options.steps,
        seed=options.seed, report=report, history=history, stop=report.stop, answers=answers,
    )
    timings.stop("training")
    for point in history:
        point["pass"] = pass_label
    return PassResult(emb.cpu().numpy(), features, probs.cpu().numpy(), head, neighbours, graph, estimate, history)


def paper_pass(model: SimilarityModel, emb: torch.Tensor, options: PassOptions, *, device, report: Reporter,
               timings: Stopwatch | None = None, neighbours: Neighbours | None = None) -> PassResult:
    """The paper's pipeline (:mod:`l2c_explorer.paper`) on the same embeddings: no diffusion features, network
    of ours, graph or eigengap estimate.

    With K unknown the network has ``max_clusters`` outputs and K is the number of dominant ones; images
    whose most probable output is not dominant go to their most probable dominant one. The neighbour
    lists serve the unlike-any rule of :meth:`~l2c_explorer.clustering.L2CClusterer.assign` only.
    """
    timings = timings if timings is not None else Stopwatch()
    n_outputs = int(options.n_clusters or min(options.max_clusters, len(emb)))
    emb = emb.float()
    if neighbours is None:
        neighbours = search_neighbours(emb, options, device)
    timings.start("training")
    history: list[dict] = []
    probs = train_paper_ccn(emb.to(device), model.pair_probabilities, n_outputs=n_outputs, loss=options.loss,
                            seed=options.seed, report=report, history=history, stop=report.stop)
    timings.stop("training")
    if options.n_clusters is None:
        probs = probs[:, dominant_outputs(probs.argmax(1), n_outputs)]
    for point in history:
        point["pass"] = 1
    return PassResult(emb.numpy(), None, probs, None, neighbours, None, None, history)


def first_pass(model: SimilarityModel, emb: torch.Tensor, options: PassOptions, *, method: str, device,
               report: Reporter, timings: Stopwatch | None = None, neighbours: Neighbours | None = None,
               on_neighbours: Callable[[Neighbours], None] | None = None,
               on_k: Callable[[int], None] | None = None, k_rule: str = "self-tuning") -> PassResult:
    """A fit's first clustering of ``model``'s embeddings ``emb``: :func:`cluster_pass` with the K rule ``k_rule``
    (``method="graph"``; a fit's is the self-tuning rule, another of :data:`K_RULES` is for comparing rules), or
    :func:`paper_pass` (``method="paper"``, which hears neither hook and reads no K rule)."""
    if method == "paper":
        return paper_pass(model, emb, options, device=device, report=report, timings=timings, neighbours=neighbours)
    return cluster_pass(emb, options, k_rule=k_rule, pass_label=1, device=device, report=report,
                        timings=timings, neighbours=neighbours, on_neighbours=on_neighbours, on_k=on_k)


# ---------------------------------------------------------------------------------------------------
# self-training


@dataclass
class Sharpened:
    """A pass after self-training: its ``result`` and the ``model`` (self-trained, this folder's batch-norm
    statistics) its embeddings came from."""

    result: PassResult
    model: SimilarityModel


def sharpen(model: SimilarityModel, source, labels: np.ndarray, confidence: np.ndarray, options: PassOptions, *,
            steps: int, device, report: Reporter, timings: Stopwatch | None = None, adapted=None,
            pass_label=2, message: str = "Sharpening the features on these images", what: str = "sharpened features",
            client=None, answers: sp.spmatrix | None = None, k_rule: str = "sharpened") -> Sharpened | None:
    """Self-train a copy of ``model`` on the clusters ``labels`` (n,) (the most ``confidence``-t members of each,
    :func:`~l2c_explorer.selftrain.self_train`; ``adapted``: the model with this folder's batch-norm statistics),
    embed the images again and run :func:`cluster_pass` with the K rule ``k_rule`` (a fit's and a relearning's is
    the sharpened graph's; another of :data:`K_RULES` is for comparing rules).

    A fit's second pass and a relearning (``answers`` among the pair targets) are this. Returns None when stopped
    or when there was nothing to learn from.
    """
    check_k_rule(k_rule)
    timings = timings if timings is not None else Stopwatch()
    timings.start("self_training")
    tuned = self_train(
        model, source, labels, confidence, steps=steps, keep=options.settings["self_training_keep"], device=device,
        seed=options.seed,
        progress=lambda step, total, loss: report("self-training", step, total,
                                                  message=f"{message}: step {step}/{total}", loss=loss),
        should_stop=report.should_stop, adapted=adapted,
    )
    timings.stop("self_training")
    if tuned is None:
        return None
    try:
        timings.start("features")
        embedded = embed_images(tuned, source, adapt_norm=options.adapt_norm, device=device, report=report,
                                client=client, what=what)
        timings.stop("features")
        result = cluster_pass(embedded.embeddings, options, k_rule=k_rule, pass_label=pass_label, device=device,
                              report=report, timings=timings, answers=answers)
    except StoppedError:
        return None
    if report.should_stop():
        return None
    return Sharpened(result, embedded.model)
