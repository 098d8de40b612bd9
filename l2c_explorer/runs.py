"""A finished discovery as files, so new images can be assigned to its categories later.

The files and their chain are described in :mod:`l2c_explorer.runfile`, which reads and writes them as a plain
:class:`~l2c_explorer.runfile.RunState`; here they meet the estimator: :func:`save_run` writes a fitted
:class:`~l2c_explorer.clustering.L2CClusterer`, :func:`load_run` restores one that can :meth:`predict`,
:meth:`assign` and ask :meth:`questions` with the fitted graph.
"""

from __future__ import annotations

import os
from pathlib import Path

from .clustering import L2CClusterer
from .runfile import (  # noqa: F401 (the run folder's names, read here by the commands and the app)
    ASSIGNMENTS_FILE,
    CHAINED_FILES,
    MODEL_FILE,
    RUN_FILE,
    SUMMARY_FILE,
    SUMMARY_KEY,
    RunState,
    finished_run,
    read_run,
    read_run_state,
)


def save_run(clusterer: L2CClusterer, folder: str | os.PathLike) -> Path:
    """Write ``run.safetensors`` and ``embedding_model.safetensors`` into ``folder``; returns the run file."""
    return clusterer.save_run(folder)


def load_run(folder: str | os.PathLike) -> L2CClusterer:
    """An :class:`~l2c_explorer.clustering.L2CClusterer` restored from a run folder written by :func:`save_run`
    (the errors of :func:`~l2c_explorer.runfile.read_run`)."""
    return L2CClusterer.load_run(folder)
