"""Writing results to disk: ``assignments.csv``, ``summary.json`` and per-cluster folders.

Nothing here ever writes inside the folder that was analysed, unless the user explicitly exports into it.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np

from .errors import InputError
from .files import atomic_path, write_text


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def check_output_folder(out: str | os.PathLike, analysed=None) -> Path:
    """Create the output folder, refusing one that lies inside the analysed folder (it is only ever read).

    ``analysed`` is one folder or a list of folders (``adapt`` reads a source and a target folder).
    """
    out = Path(out).expanduser()
    folders = [analysed] if isinstance(analysed, (str, os.PathLike)) else list(analysed or [])
    for folder in folders:
        folder = Path(folder).expanduser()
        if folder.is_dir() and _inside(out, folder):
            raise InputError(
                f"The output folder {out} is inside the folder being analysed; choose a folder outside it "
                "(the analysed folder is never written to)."
            )
    if out.exists() and not out.is_dir():
        raise InputError(f"The output path {out} exists and is not a folder.")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_csv(path: Path, header: list[str], rows) -> Path:
    """A CSV file with a header row, written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return Path(path)


def write_json(path: Path, data: dict) -> Path:
    """A JSON file (numpy numbers and paths converted), written atomically."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_discovery_results(clusterer, out: Path, *, score: bool = False, save_model: bool = False) -> dict:
    """Write ``assignments.csv`` (path, cluster, confidence), ``summary.json`` and the run state that
    ``assign`` reads (``run.safetensors``, ``embedding_model.safetensors``) for a fitted clusterer."""
    out = Path(out)
    rows = zip(clusterer.paths_, clusterer.labels_.tolist(), np.round(clusterer.confidence_, 4).tolist())
    write_csv(out / "assignments.csv", ["path", "cluster", "confidence"], rows)
    summary = clusterer.summary(score=score)
    if save_model:
        summary["clustering_model"] = str(clusterer.save(out / "clustering_model"))
    summary["run_file"] = str(clusterer.save_run(out))
    write_json(out / "summary.json", summary)
    return summary


def write_assignment_results(clusterer, assigned: dict, out: Path, *, run_dir=None, seconds: float | None = None,
                             score: bool = False) -> dict:
    """Write ``assignments.csv`` (path, cluster, confidence, unlike_any) and ``summary.json`` for new images
    assigned to a run's clusters (:meth:`~l2c_explorer.clustering.L2CClusterer.assign`)."""
    out = Path(out)
    labels, confidence, unlike = assigned["labels"], assigned["confidence"], assigned["unlike_any"]
    rows = zip(assigned["paths"], np.asarray(labels).tolist(), np.round(confidence, 4).tolist(),
               np.asarray(unlike, dtype=int).tolist())
    write_csv(out / "assignments.csv", ["path", "cluster", "confidence", "unlike_any"], rows)
    counts = np.bincount(np.asarray(labels)[~np.asarray(unlike, dtype=bool)], minlength=clusterer.n_clusters_)
    summary = {
        "n_images": len(assigned["paths"]),
        "n_skipped": len(assigned["skipped"]),
        "skipped": [{"file": f, "reason": r} for f, r in assigned["skipped"]],
        "n_unlike_any": int(np.sum(unlike)),
        "unlike_threshold": round(float(clusterer.unlike_threshold_), 6),
        "rule": ("each image goes to the cluster its nearest clustered images vote for (weighted by the similarity "
                 "model's P(same)); unlike_any = 1 when its nearest member of that cluster is less similar than "
                 "the cosine 99% of the run's own images exceed for their nearest cluster-mate"),
        "n_clusters": int(clusterer.n_clusters_),
        "assigned_per_cluster": counts.tolist(),
        "run": str(run_dir) if run_dir is not None else None,
        "model": clusterer.embedding_model_.name,
        "seconds": round(seconds, 2) if seconds is not None else None,
    }
    if score and assigned.get("true_labels") is not None:
        summary["true_labels_known"] = True
    write_json(out / "summary.json", summary)
    return summary


def write_adaptation_results(adapter, out: Path, *, score: bool = False) -> dict:
    """Write ``assignments.csv`` (path, predicted_class, confidence) and ``summary.json`` for an adapter."""
    out = Path(out)
    names = adapter.classes_
    rows = zip(adapter.paths_, [names[i] for i in adapter.labels_], np.round(adapter.confidence_, 4).tolist())
    write_csv(out / "assignments.csv", ["path", "predicted_class", "confidence"], rows)
    summary = adapter.summary(score=score)
    write_json(out / "summary.json", summary)
    return summary


def export_cluster_folders(
    root: Path,
    paths: list[str],
    labels: np.ndarray,
    out: str | os.PathLike,
    *,
    names: dict | None = None,
    mode: str = "copy",
) -> dict:
    """Copy (or link) each image into ``out/<cluster name>/``, keeping file names unique.

    Parameters
    ----------
    root : Path
        The analysed folder the relative ``paths`` are under (only read).
    names : dict of cluster id -> folder name, optional
        Defaults to ``cluster_000``, ``cluster_001``, ...
    mode : {"copy", "symlink"}

    Returns
    -------
    dict of folder name -> number of files written.
    """
    if mode not in ("copy", "symlink"):
        raise InputError(f"mode must be 'copy' or 'symlink', not {mode!r}")
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for rel, label in zip(paths, np.asarray(labels).tolist()):
        folder = safe_folder_name(names.get(label) if names else None) or f"cluster_{int(label):03d}"
        dest_dir = out / folder
        dest_dir.mkdir(exist_ok=True)
        flat = rel.replace("/", "__")
        dest = dest_dir / flat
        src = Path(root) / rel
        if mode == "copy":
            shutil.copy2(src, dest)
        else:
            if dest.exists() or dest.is_symlink():
                dest.unlink()
            dest.symlink_to(src.resolve())
        counts[folder] = counts.get(folder, 0) + 1
    return counts


def safe_folder_name(name: str | None) -> str | None:
    """A name usable as one folder level: no separators, no leading dots, at most 100 characters."""
    if not name:
        return None
    cleaned = "".join(c if (c.isalnum() or c in " -_.()") else "_" for c in str(name)).strip().lstrip(".")
    return cleaned[:100] or None
