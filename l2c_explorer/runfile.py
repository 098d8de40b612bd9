"""A finished discovery as files, so new images can be assigned to its categories later.

:func:`write_run` writes a :class:`RunState` (what an estimator hands over: no estimator is imported here) as two
safetensors files (read back without unpickling, their contents
checked against the digest recorded when saved, :mod:`l2c_explorer.model_io`):

``run.safetensors`` (kind ``"run"``)
    the clustered images' unit embeddings (n, d), clusters (n,), confidences (n,) and cluster probabilities
    (n, K), the cluster prototypes (K, d), the clustering network's centres, and as JSON the settings: K, the
    neighbours that vote, the unlike-any threshold, the similarity model's name, sha256 and pair head (scale,
    bias: what asking questions about the run needs, :func:`read_run_state`), and the sha256 of the file below.
``embedding_model.safetensors`` (kind ``"similarity"``)
    the similarity model the embeddings were computed with: the run's model with the batch-norm statistics
    of the analysed folder, and self-trained weights when self-training ran.

:func:`read_run` reads them back into a :class:`RunState`. The estimator's :meth:`save_run` and :meth:`load_run`
(:class:`RunFilesMixin`, a base of :class:`~l2c_explorer.clustering.L2CClusterer`) turn it into one and back:
a restored estimator can :meth:`predict`, :meth:`assign` and ask :meth:`questions` with the fitted graph.

A run folder is rewritten file by file (each file atomically), so a run stopped or killed while writing
could leave files of two runs side by side. They are chained instead: ``run.safetensors`` records the sha256
of the ``assignments.csv`` and ``answers.csv`` written before it, and ``summary.json``, written last, the
digest of ``run.safetensors``. :func:`finished_run` follows the chain; a folder where a link does not hold is
not a finished run and is refused, never read as one.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from . import __version__
from .assignment import UNLIKE_QUANTILE
from .constraints import ConstraintSet, read_constraints_csv
from .corrections import AnswerHistory
from .device import resolve_device
from .errors import InputError, ModelFileError
from .files import file_sha256
from .model_io import read_model_file, save_model_file
from .options import MODEL_SETTINGS, discovery_settings
from .similarity_model import SimilarityModel

RUN_FILE = "run.safetensors"
MODEL_FILE = "embedding_model.safetensors"
ASSIGNMENTS_FILE = "assignments.csv"
ANSWERS_FILE = "answers.csv"
SUMMARY_FILE = "summary.json"
CHAINED_FILES = (ASSIGNMENTS_FILE, ANSWERS_FILE)  # written before the run file, which records their sha256
SUMMARY_KEY = "run_sha256"  # the run file's digest, in summary.json (written last)


@dataclass
class RunState:
    """A finished run as plain data: the clustered images' unit ``embedding`` (n, d), ``labels`` (n,),
    ``confidence`` (n,), ``probabilities`` (n, K) and cluster ``prototypes`` (K, d); the clustering network's
    ``centres`` (K, m), the similarity ``graph`` (n, n) and the diffusion ``features`` (n, m) (None for the
    paper's pipeline, or a run written before they were kept); ``config`` (the settings, as JSON); the embedding
    ``model``; and, once read back, the images' ``paths`` and the run's ``answers``."""

    embedding: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    probabilities: np.ndarray | None
    prototypes: np.ndarray
    config: dict
    model: SimilarityModel
    centres: torch.Tensor | None = None
    graph: sp.csr_matrix | None = None
    features: np.ndarray | None = None
    paths: list[str] = field(default_factory=list)
    answers: list = field(default_factory=list)


def write_run(folder: str | os.PathLike, state: RunState) -> Path:
    """Write ``run.safetensors`` and ``embedding_model.safetensors`` into ``folder``; returns the run file.

    ``state.config`` is completed with the model file's name and digest and the digests of the files chained
    before the run file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model_path = state.model.save(folder / MODEL_FILE)
    _, _, model_digest = read_model_file(model_path, kind="similarity")
    tensors = {
        "embeddings": torch.from_numpy(np.ascontiguousarray(state.embedding, dtype=np.float32)),
        "labels": torch.from_numpy(np.asarray(state.labels, dtype=np.int64)),
        "confidence": torch.from_numpy(np.asarray(state.confidence, dtype=np.float32)),
        "probabilities": torch.from_numpy(np.ascontiguousarray(state.probabilities, dtype=np.float32)),
        "prototypes": torch.from_numpy(np.asarray(state.prototypes, dtype=np.float32)),
    }
    if state.centres is not None:  # the paper's baseline has no clustering network of ours
        tensors["centres"] = state.centres.float()
    if state.graph is not None:  # the fitted graph itself: rebuilding it would miss an approximate search
        graph = sp.csr_matrix(state.graph)
        tensors["graph_indptr"] = torch.from_numpy(graph.indptr.astype(np.int64))
        tensors["graph_indices"] = torch.from_numpy(graph.indices.astype(np.int64))
        tensors["graph_data"] = torch.from_numpy(graph.data.astype(np.float32))
    if state.features is not None:
        tensors["features"] = torch.from_numpy(np.ascontiguousarray(state.features, dtype=np.float32))
    config = {**state.config, "embedding_model_file": MODEL_FILE, "embedding_model_sha256": model_digest,
              "files": {name: file_sha256(folder / name) for name in CHAINED_FILES if (folder / name).is_file()}}
    return save_model_file(folder / RUN_FILE, tensors, kind="run", config=config)


def read_run(folder: str | os.PathLike) -> RunState:
    """The :class:`RunState` of a run folder written by :func:`write_run` (and finished, :func:`finished_run`).

    Raises
    ------
    InputError
        When the folder is not a finished discovery run (no ``run.safetensors``).
    ModelFileError
        When a file is damaged, foreign, or the two files do not belong together.
    """
    folder = Path(folder).expanduser()
    tensors, config = finished_run(folder)
    model_file = folder / config.get("embedding_model_file", MODEL_FILE)
    _, _, digest = read_model_file(model_file, kind="similarity")
    if digest != config.get("embedding_model_sha256"):
        raise ModelFileError(f"{model_file.name} does not belong to this run ({RUN_FILE} expects another model).")
    model = SimilarityModel.load(model_file)
    try:
        labels = tensors["labels"].numpy()
        n = len(labels)
        state = RunState(
            embedding=tensors["embeddings"].numpy(), labels=labels, confidence=tensors["confidence"].numpy(),
            probabilities=tensors["probabilities"].numpy() if "probabilities" in tensors else None,
            prototypes=tensors["prototypes"].numpy(), config=config, model=model,
            centres=tensors.get("centres"), graph=_graph(tensors, n),
            features=tensors["features"].numpy() if "features" in tensors else None,
        )
        n_clusters = int(config["n_clusters"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{RUN_FILE} lacks what a run needs ({exc}).") from None
    if state.embedding.shape[0] != n or len(state.confidence) != n or (n and labels.max() >= n_clusters):
        raise ModelFileError(f"{RUN_FILE} is inconsistent (arrays of different lengths).")
    state.paths = _assignment_paths(folder, n)
    answers_file = folder / ANSWERS_FILE
    if answers_file.exists():
        state.answers = read_constraints_csv(answers_file, state.paths)
    return state


def _graph(tensors: dict, n: int) -> sp.csr_matrix | None:
    """The similarity graph kept in a run file (None in one written before it was kept)."""
    if "graph_indptr" not in tensors:
        return None
    return sp.csr_matrix((tensors["graph_data"].numpy().astype(np.float64), tensors["graph_indices"].numpy(),
                          tensors["graph_indptr"].numpy()), shape=(n, n))


def finished_run(folder: Path) -> tuple[dict, dict]:
    """The tensors and config of the run file of ``folder``, once its files are known to be one finished run.

    Raises :class:`InputError` (one line: what is wrong, and what to do) when the folder is not a run, or
    holds the files of a run that did not finish writing (stopped, killed, crashed) or of two runs;
    :class:`ModelFileError` when the run file is damaged.
    """
    if not folder.is_dir():
        raise InputError(f"Run folder not found: {folder}")
    run_file = folder / RUN_FILE
    if not run_file.is_file():
        raise InputError(
            f"{folder} holds no {RUN_FILE}: give the --out folder of a finished 'discover' run "
            "(runs made before new images could be assigned must be run again)."
        )
    unfinished = f"{folder} is not a finished run: "
    again = "; run 'discover' again into it."
    try:
        summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(unfinished + f"it has no {SUMMARY_FILE} (the run stopped before the end)" + again) from None
    except (OSError, UnicodeDecodeError, ValueError):
        raise InputError(unfinished + f"its {SUMMARY_FILE} cannot be read" + again) from None
    tensors, config, digest = read_model_file(run_file, kind="run")
    if not isinstance(summary, dict) or summary.get(SUMMARY_KEY) != digest:
        raise InputError(unfinished + f"its {SUMMARY_FILE} is not the one of its {RUN_FILE} (a run stopped while "
                         "writing, or files of two runs)" + again)
    recorded = config.get("files")
    if not isinstance(recorded, dict) or ASSIGNMENTS_FILE not in recorded:
        raise InputError(unfinished + "it was written by an older l2c-explorer" + again)
    for name in CHAINED_FILES:
        path = folder / name
        present = file_sha256(path) if path.is_file() else None
        if present != recorded.get(name):
            raise InputError(unfinished + f"its {name} is not the one its {RUN_FILE} was written with "
                             "(a run stopped while writing, or a file changed since)" + again)
    return tensors, config


def _assignment_paths(folder: Path, n: int) -> list[str]:
    """The clustered images' paths from the run's assignments.csv (generated names when it is missing)."""
    csv_file = folder / "assignments.csv"
    if csv_file.is_file():
        rows = _read_paths(csv_file)
        if len(rows) == n:
            return rows
    return [f"image_{i:06d}" for i in range(n)]


def _read_paths(csv_file: Path) -> list[str]:
    """The ``path`` column of an ``assignments.csv``."""
    with open(csv_file, newline="", encoding="utf-8") as f:
        return [row["path"] for row in csv.DictReader(f)]


def read_run_state(folder: str | os.PathLike) -> dict:
    """What asking questions about a finished run needs, without the images or the models.

    Returns a dict with ``embedding`` (n, d), ``labels`` (n,), ``probabilities`` (n, K) (numpy), ``paths``
    (from ``assignments.csv``), ``answers`` (from ``answers.csv``, [] without it), ``n_neighbors``,
    ``pair_scale``, ``pair_bias``, ``model`` and ``graph`` (the fitted similarity graph (n, n), None in a run
    written before it was kept). Raises :class:`InputError` when the folder is not the output
    folder of ``discover``, :class:`ModelFileError` when its run file is damaged or foreign.
    """
    folder = Path(folder).expanduser()
    run_file, assignments = folder / RUN_FILE, folder / ASSIGNMENTS_FILE
    if not run_file.is_file() or not assignments.is_file():
        raise InputError(f"{folder} is not the output folder of a finished `discover` run (it needs "
                         f"assignments.csv and {RUN_FILE}).")
    tensors, config = finished_run(folder)
    if "probabilities" not in tensors or "pair_scale" not in config:
        raise InputError(f"{run_file} was written before questions could be asked about a run; run `discover` "
                         "again.")
    paths = _read_paths(assignments)
    n = len(tensors["labels"])
    if len(paths) != n or config.get("n_images") != n:
        raise InputError(f"{assignments} and {run_file} do not describe the same images; run `discover` again.")
    answers_file = folder / ANSWERS_FILE
    answers = read_constraints_csv(answers_file, paths) if answers_file.exists() else []
    return {"embedding": tensors["embeddings"].numpy(), "labels": tensors["labels"].numpy(),
            "probabilities": tensors["probabilities"].numpy(), "paths": paths, "answers": answers,
            "n_neighbors": int(config["n_neighbors"]), "pair_scale": float(config["pair_scale"]),
            "pair_bias": float(config["pair_bias"]), "model": config.get("similarity_model"),
            "graph": _graph(tensors, n)}


# ---------------------------------------------------------------------------------------------------
# the estimator's side


class RunFilesMixin:
    """:meth:`save_run` and :meth:`load_run` of :class:`~l2c_explorer.clustering.L2CClusterer`: a fitted
    estimator as a :class:`RunState` and back (its fitted attributes; the estimator is not imported here)."""

    def save_run(self, folder: str | os.PathLike) -> Path:
        """Write what :meth:`predict`, :meth:`assign` and :meth:`questions` need into a run folder:
        ``run.safetensors`` (the clustered images' embeddings, clusters and confidences, the prototypes, the
        similarity graph, the settings) and ``embedding_model.safetensors`` (the similarity model the embeddings
        came from). Read back with :func:`load_run`."""
        model = self.embedding_model_
        card = dict(model.card)
        card["adapted_to"] = {
            "folder": str(self.root_) if self.root_ else None,
            "n_images": len(self.paths_),
            "self_training_steps": int(self.settings_["self_training_steps"]) if model is not self.similarity_model_
            else 0,
            "from_model_sha256": self.similarity_model_.digest,
        }
        config = {
            "n_clusters": int(self.n_clusters_), "n_images": len(self.paths_),
            "n_neighbors": int(self.settings_["n_neighbors"]), "settings": self.settings_, "method": self.method,
            "unlike_threshold": float(self.unlike_threshold_), "unlike_quantile": UNLIKE_QUANTILE,
            "similarity_model": self.similarity_model_.name, "similarity_sha256": self.similarity_model_.digest,
            "pair_scale": self.pair_head_[0], "pair_bias": self.pair_head_[1], "k_given": self.n_clusters,
            "max_clusters": int(self.max_clusters), "loss": self.loss, "seed": int(self.random_state),
            "follow_links": bool(self.follow_links), "target": str(self.root_) if self.root_ else None,
            "version": __version__,
        }
        state = RunState(
            embedding=self.embedding_, labels=self.labels_, confidence=self.confidence_,
            probabilities=self.probabilities_, prototypes=self.prototypes_, config=config,
            model=SimilarityModel(model.net, model.preprocessing, card),
            centres=None if self.head_state_ is None else self.head_state_["centres"],
            graph=getattr(self, "graph_", None), features=getattr(self, "diffusion_features_", None))
        return write_run(folder, state)

    @classmethod
    def load_run(cls, folder: str | os.PathLike) -> RunFilesMixin:
        """A clusterer restored from a run folder written by :meth:`save_run` (:func:`read_run`).

        It assigns new images and asks questions with the fitted graph; refits start from the saved clusters
        (the run's answers, from its ``answers.csv``, already applied)."""
        return cls._from_run_state(read_run(folder))

    @classmethod
    def _from_run_state(cls, state) -> RunFilesMixin:
        """Every fitted attribute of a loaded run, from its :class:`RunState`."""
        config, model = state.config, state.model
        try:
            c = cls(similarity=model, n_clusters=config.get("k_given"), max_clusters=config["max_clusters"],
                    loss=config["loss"], method=config.get("method", "graph"), random_state=config["seed"],
                    follow_links=bool(config.get("follow_links", False)),
                    **{k: v for k, v in config.get("settings", {}).items() if k in MODEL_SETTINGS})
            c.settings_ = discovery_settings(None, {**config.get("settings", {}), "n_neighbors": config["n_neighbors"]})
            if "pair_scale" in config:
                c.pair_head_ = (float(config["pair_scale"]), float(config["pair_bias"]))
            c.n_clusters_ = int(config["n_clusters"])
            c.unlike_threshold_ = float(config["unlike_threshold"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{RUN_FILE} lacks what a run needs ({exc}).") from None
        c.embedding_, c.labels_, c.confidence_ = state.embedding, state.labels, state.confidence
        if state.probabilities is not None:
            c.probabilities_ = state.probabilities
        c.prototypes_ = state.prototypes
        c.head_state_ = None if state.centres is None else {"centres": state.centres}
        c.embedding_model_ = c.similarity_model_ = model
        c.paths_ = state.paths
        c.root_ = Path(config["target"]) if config.get("target") else None
        c.skipped_, c.true_labels_, c.history_, c.cached_ = [], None, [], []
        c.device_ = resolve_device("auto")
        c.run_config_ = config
        c.graph_, c.diffusion_features_ = state.graph, state.features
        c.k_eigengap_, c.k_parts_, c.eigenvalues_ = None, None, None
        c.constraints_ = ConstraintSet(len(c.paths_), state.answers, names=c.paths_)
        if state.graph is not None and state.features is not None and state.probabilities is not None:
            c._answers = AnswerHistory(c._snapshot())
        return c
