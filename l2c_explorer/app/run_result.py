"""A finished run in one shape, whatever produced it (a discovery or an adaptation): what the explorer shows.

Imported by :mod:`~l2c_explorer.app.teaching` and :mod:`~l2c_explorer.app.workbench` (which imports teaching):
it imports neither. Never imports gradio, torch or the core estimators.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..names import category_names, group_names


@dataclass
class RunResult:
    """A finished discovery or adaptation, as the explorer sees it.

    Attributes
    ----------
    kind : {"discover", "adapt"}
    estimator : L2CClusterer or DomainAdapter
        The fitted object (what notebooks get back).
    run_dir : Path
        Where ``assignments.csv`` and ``summary.json`` were written.
    names : list of str
        Name of each label value: "cluster 00", ... (a person may rename them, :meth:`Workbench.rename_group`),
        or the source classes, by their readable names (:mod:`l2c_explorer.names`).
    n_clusters : int
        Clusters found (the clusterer's ``n_clusters_``), or the adapter's number of classes.
    truth : list of str or None
        True labels when the folder names were declared ground truth, by their readable names.
    numbers : ndarray of shape (n_clusters,) or None
        The number shown for each of the estimator's clusters after a person's corrections
        (:mod:`l2c_explorer.numbering`: a group keeps its number while most of its images stay); ``labels``
        are these numbers. None: the estimator's own numbers.
    """

    kind: str
    estimator: Any
    run_dir: Path
    summary: dict
    labels: np.ndarray
    confidence: np.ndarray
    embedding: np.ndarray
    paths: list[str]
    root: Path
    skipped: list
    names: list[str]
    n_clusters: int
    truth: list[str] | None = None
    stopped: bool = False
    numbers: np.ndarray | None = None

    @property
    def metrics(self) -> dict | None:
        return self.summary.get("metrics")

    def image_path(self, i: int) -> Path:
        return Path(self.root) / self.paths[i]

    def to_frame(self):
        """One row per image: path, label (and its name), confidence, true label when known."""
        import pandas as pd

        frame = pd.DataFrame({
            "path": self.paths,
            "cluster" if self.kind == "discover" else "predicted": self.labels,
            "name": [self.names[i] for i in self.labels],
            "confidence": self.confidence,
        })
        if self.truth is not None:
            frame["true_label"] = self.truth
        return frame


def run_result(fitted, run_dir: Path, summary: dict, stopped: bool, *, numbers: np.ndarray | None = None,
               names: list[str] | None = None) -> RunResult:
    """A fitted :class:`L2CClusterer` or :class:`DomainAdapter` as the explorer sees it (``numbers``: the
    number shown for each cluster, see :attr:`RunResult.numbers`; ``names``: names by number so far, kept)."""
    truth = getattr(fitted, "true_labels_", None)
    labels = np.asarray(fitted.labels_)
    if hasattr(fitted, "classes_"):  # an adapter: its labels are the source classes
        kind, n_clusters = "adapt", len(fitted.classes_)
        readable = category_names([*fitted.classes_, *(truth or [])], fitted.source_root_)
        names = [readable[str(c)] for c in fitted.classes_]
    else:
        kind, n_clusters = "discover", int(fitted.n_clusters_)
        if numbers is not None:
            labels = np.asarray(numbers)[labels]
        defaults = group_names(int(np.max(labels)) + 1)
        names = [*(names or [])[: len(defaults)], *defaults[len(names or []):]]
        readable = category_names(truth or [], fitted.root_)
    if truth is not None:
        truth = [readable[str(t)] for t in truth]
    return RunResult(
        kind=kind,
        estimator=fitted,
        run_dir=run_dir,
        summary=summary,
        labels=labels,
        confidence=np.asarray(fitted.confidence_),
        embedding=np.asarray(fitted.embedding_),
        paths=list(fitted.paths_),
        root=Path(fitted.root_),
        skipped=list(fitted.skipped_),
        names=names,
        n_clusters=n_clusters,
        truth=truth,
        stopped=stopped,
        numbers=None if numbers is None else np.asarray(numbers),
    )
