"""A finished discovery as files, so new images can be assigned to its categories later.

``save_run(clusterer, folder)`` writes two safetensors files (read back without unpickling, their contents
checked against the digest recorded when saved, :mod:`l2c_explorer.model_io`):

``run.safetensors`` (kind ``"run"``)
    the clustered images' unit embeddings (n, d), clusters (n,), confidences (n,) and cluster probabilities
    (n, K), the cluster prototypes (K, d), the clustering network's centres, and as JSON the settings: K, the
    neighbours that vote, the unlike-any threshold, the similarity model's name, sha256 and pair head (scale,
    bias: what asking questions about the run needs, :func:`read_run_state`), and the sha256 of the file below.
``embedding_model.safetensors`` (kind ``"similarity"``)
    the similarity model the embeddings were computed with: the run's model with the batch-norm statistics
    of the analysed folder, and self-trained weights when self-training ran.

:func:`load_run` restores an :class:`~l2c_explorer.clustering.L2CClusterer` that can :meth:`predict` and
:meth:`assign` (but not be refitted from where it stopped).

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
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .errors import InputError, ModelFileError
from .files import file_sha256
from .model_io import read_model_file, save_model_file
from .options import MODEL_SETTINGS, discovery_settings

RUN_FILE = "run.safetensors"
MODEL_FILE = "embedding_model.safetensors"
ASSIGNMENTS_FILE = "assignments.csv"
SUMMARY_FILE = "summary.json"
CHAINED_FILES = (ASSIGNMENTS_FILE, "answers.csv")  # written before the run file, which records their sha256
SUMMARY_KEY = "run_sha256"  # the run file's digest, in summary.json (written last)


def save_run(clusterer, folder: str | os.PathLike) -> Path:
    """Write ``run.safetensors`` and ``embedding_model.safetensors`` into ``folder``; returns the run file."""
    from .clustering import UNLIKE_QUANTILE

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = clusterer.embedding_model_
    card = dict(model.card)
    card["adapted_to"] = {
        "folder": str(clusterer.root_) if clusterer.root_ else None,
        "n_images": len(clusterer.paths_),
        "self_training_steps": int(clusterer.settings_["self_training_steps"]) if model is not clusterer.similarity_model_
        else 0,
        "from_model_sha256": clusterer.similarity_model_.digest,
    }
    from .similarity import SimilarityModel

    to_save = SimilarityModel(model.net, model.preprocessing, card)
    model_path = to_save.save(folder / MODEL_FILE)
    _, _, model_digest = read_model_file(model_path, kind="similarity")
    tensors = {
        "embeddings": torch.from_numpy(np.ascontiguousarray(clusterer.embedding_, dtype=np.float32)),
        "labels": torch.from_numpy(np.asarray(clusterer.labels_, dtype=np.int64)),
        "confidence": torch.from_numpy(np.asarray(clusterer.confidence_, dtype=np.float32)),
        "probabilities": torch.from_numpy(np.ascontiguousarray(clusterer.probabilities_, dtype=np.float32)),
        "prototypes": torch.from_numpy(np.asarray(clusterer.prototypes_, dtype=np.float32)),
    }
    if clusterer.head_state_ is not None:  # the paper's baseline has no clustering network of ours
        tensors["centres"] = clusterer.head_state_["centres"].float()
    config = {
        "n_clusters": int(clusterer.n_clusters_),
        "n_images": len(clusterer.paths_),
        "n_neighbors": int(clusterer.settings_["n_neighbors"]),
        "settings": clusterer.settings_,
        "method": clusterer.method,
        "unlike_threshold": float(clusterer.unlike_threshold_),
        "unlike_quantile": UNLIKE_QUANTILE,
        "similarity_model": clusterer.similarity_model_.name,
        "similarity_sha256": clusterer.similarity_model_.digest,
        "pair_scale": clusterer.pair_head_[0],
        "pair_bias": clusterer.pair_head_[1],
        "embedding_model_file": MODEL_FILE,
        "embedding_model_sha256": model_digest,
        "k_given": clusterer.n_clusters,
        "max_clusters": int(clusterer.max_clusters),
        "loss": clusterer.loss,
        "seed": int(clusterer.random_state),
        "follow_links": bool(clusterer.follow_links),
        "target": str(clusterer.root_) if clusterer.root_ else None,
        "version": __version__,
        "files": {name: file_sha256(folder / name) for name in CHAINED_FILES if (folder / name).is_file()},
    }
    return save_model_file(folder / RUN_FILE, tensors, kind="run", config=config)


def load_run(folder: str | os.PathLike):
    """An :class:`~l2c_explorer.clustering.L2CClusterer` restored from a run folder written by :func:`save_run`.

    Raises
    ------
    InputError
        When the folder is not a finished discovery run (no ``run.safetensors``).
    ModelFileError
        When a file is damaged, foreign, or the two files do not belong together.
    """
    from .clustering import L2CClusterer
    from .device import resolve_device
    from .similarity import SimilarityModel

    folder = Path(folder).expanduser()
    tensors, config = finished_run(folder)
    run_file = folder / RUN_FILE
    model_file = folder / config.get("embedding_model_file", MODEL_FILE)
    _, _, digest = read_model_file(model_file, kind="similarity")
    if digest != config.get("embedding_model_sha256"):
        raise ModelFileError(f"{model_file.name} does not belong to this run ({RUN_FILE} expects another model).")
    model = SimilarityModel.load(model_file)
    try:
        c = L2CClusterer(similarity=model, n_clusters=config.get("k_given"), max_clusters=config["max_clusters"],
                         loss=config["loss"], method=config.get("method", "graph"), random_state=config["seed"],
                         follow_links=bool(config.get("follow_links", False)),
                         **{k: v for k, v in config.get("settings", {}).items() if k in MODEL_SETTINGS})
        c.settings_ = discovery_settings(None, {**config.get("settings", {}), "n_neighbors": config["n_neighbors"]})
        c.embedding_ = tensors["embeddings"].numpy()
        c.labels_ = tensors["labels"].numpy()
        c.confidence_ = tensors["confidence"].numpy()
        if "probabilities" in tensors:
            c.probabilities_ = tensors["probabilities"].numpy()
        if "pair_scale" in config:
            c.pair_head_ = (float(config["pair_scale"]), float(config["pair_bias"]))
        c.prototypes_ = tensors["prototypes"].numpy()
        c.head_state_ = {"centres": tensors["centres"]} if "centres" in tensors else None
        c.n_clusters_ = int(config["n_clusters"])
        c.unlike_threshold_ = float(config["unlike_threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{RUN_FILE} lacks what a run needs ({exc}).") from None
    n = len(c.labels_)
    if c.embedding_.shape[0] != n or len(c.confidence_) != n or (n and c.labels_.max() >= c.n_clusters_):
        raise ModelFileError(f"{RUN_FILE} is inconsistent (arrays of different lengths).")
    c.embedding_model_ = model
    c.similarity_model_ = model
    c.paths_ = _assignment_paths(folder, n)
    c.root_ = Path(config["target"]) if config.get("target") else None
    c.skipped_, c.true_labels_, c.history_, c.cached_ = [], None, [], []
    c.device_ = resolve_device("auto")
    c.run_config_ = config
    return c


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
    ``pair_scale``, ``pair_bias`` and ``model``. Raises :class:`InputError` when the folder is not the output
    folder of ``discover``, :class:`ModelFileError` when its run file is damaged or foreign.
    """
    from .constraints import read_constraints_csv
    from .results import ANSWERS_FILE

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
            "pair_bias": float(config["pair_bias"]), "model": config.get("similarity_model")}
