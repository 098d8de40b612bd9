"""Writing results to disk: ``assignments.csv``, ``summary.json`` and per-cluster folders.

Nothing here ever writes inside the folder that was analysed, unless the user explicitly exports into it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from . import __version__
from .errors import FolderNotEmptyError, InputError
from .files import write_csv, write_text
from .names import category_names, group_names, has_readable_names


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def check_output_folder(out: str | os.PathLike, analysed=None, *, run=None, results: bool = False,
                        force: bool = False) -> Path:
    """Check, before any work, that ``out`` can take the results; returns it as a Path.

    Refused, each with a one-line reason: a folder inside the analysed one (``analysed``: one folder, a list,
    or ``{role: folder}`` for ``adapt``'s two, named by their role when they cannot be read; they are only
    ever read), the run read from (``run``, for ``assign``: its own
    files would be replaced), a system folder or ``/``, a path that is not a folder, and a place this user
    cannot write to. With ``results``, a folder that already holds files is refused unless it holds an
    earlier run's results (they are replaced) or ``force``. Nothing is created: the writers create the folder
    when they write, so a command that fails leaves no empty folder behind.
    """
    from .errors import MAX_PATH_CHARS, check_folder, system_folder

    if out is None or not str(out).strip():
        raise InputError("No output folder given.")
    if len(str(out)) > MAX_PATH_CHARS:
        raise InputError(f"The output folder's name is {len(str(out)):,} characters long (at most {MAX_PATH_CHARS:,}).")
    out = Path(out).expanduser()
    if isinstance(analysed, dict):  # {role: folder}: a folder that cannot be read is named by its role
        folders = list(analysed.items())
    else:
        folders = [(None, f) for f in ([analysed] if isinstance(analysed, (str, os.PathLike)) else analysed or [])]
    for role, folder in folders:
        try:
            folder = check_folder(folder)
        except InputError as exc:
            if role is None:
                raise
            raise InputError(f"{role}: {exc}") from None
        if _inside(out, folder):
            raise InputError(
                f"The output folder {out} is inside the folder being analysed; choose a folder outside it "
                "(the analysed folder is never written to)."
            )
    try:
        resolved = out.resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise InputError(f"The output folder {out} cannot be used: {exc}.") from None
    if resolved == Path(resolved.anchor) or system_folder(resolved):
        raise InputError(f"The output folder {out} is a system folder; choose a folder of your own.")
    if run is not None and _inside(out, Path(run).expanduser()):
        raise InputError(f"The output folder {out} is the run's own folder (or inside it), whose files would be "
                         "replaced; choose another folder.")
    if out.exists() and not out.is_dir():
        raise InputError(f"The output path {out} exists and is not a folder.")
    if results and out.is_dir() and not force:
        present = [p.name for p in out.iterdir()]
        if present and not _earlier_results(out):
            raise InputError(f"The output folder {out} already holds {len(present)} file(s) that are not an "
                             "earlier run's results; choose an empty or new folder (or give --force to write "
                             "there anyway).")
    _check_writable(out)
    return out


def _earlier_results(folder: Path) -> bool:
    """Whether ``folder`` holds the results of an earlier command (its summary.json and assignments.csv)."""
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and "n_images" in summary and (folder / "assignments.csv").is_file()


def _check_writable(out: Path) -> None:
    """Create ``out`` (and what is missing above it), write a file there, and take all of it away again."""
    import tempfile

    created = []
    probe = out
    while not probe.exists():
        created.append(probe)
        probe = probe.parent
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise InputError(f"Cannot write into the output folder {out}: {exc.strerror or exc}.") from None
    finally:
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                pass


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


ANSWERS_FILE = "answers.csv"


def run_summary(clusterer, *, score: bool = False) -> dict:
    """Everything ``summary.json`` records about a fitted :class:`~l2c_explorer.clustering.L2CClusterer`."""
    from .device import describe_device

    model = clusterer.similarity_model_
    out = {
        "n_images": len(clusterer.paths_),
        "n_skipped": len(clusterer.skipped_),
        "skipped": [{"file": f, "reason": r} for f, r in clusterer.skipped_],
        "k_estimated": int(clusterer.n_clusters_),
        "k_given": clusterer.n_clusters,
        "k_max": int(clusterer.n_clusters or clusterer.max_clusters),
        "k_eigengap": None if clusterer.k_eigengap_ is None else int(clusterer.k_eigengap_),
        "k_parts": getattr(clusterer, "k_parts_", None),
        "method": clusterer.method,
        "settings": clusterer.settings_,
        "stopped_early": bool(clusterer.stopped_),
        "timings": clusterer.timings_,
        "cpu_timings": getattr(clusterer, "cpu_timings_", {}),
        "cached": list(clusterer.cached_),
        "loss": clusterer.loss,
        "neighbours": clusterer.neighbours,
        "spectrum": clusterer.spectrum,
        "seconds": round(clusterer.seconds_, 2),
        "device": describe_device(clusterer.device_),
        "model": model.name,
        "model_file": model.source,
        "model_sha256": model.digest,
        "seed": clusterer.random_state,
        "cluster_sizes": np.bincount(clusterer.labels_, minlength=clusterer.n_clusters_).tolist(),
        "unlike_threshold": round(float(clusterer.unlike_threshold_), 6),
        "history": clusterer.history_,
        "version": __version__,
        "target": str(clusterer.root_) if clusterer.root_ else None,
    }
    answers = getattr(clusterer, "constraints_", None)
    if answers is not None and len(answers):
        out["answers"] = {"n_answers": len(answers), "n_same": int(len(answers.must_pairs())),
                          "n_different": int(len(answers.cannot_pairs())),
                          "k_before_answers": clusterer.k_before_answers_,
                          "refit_seconds": clusterer.timings_.get("refit"),
                          "relearnt_with": clusterer.relearnings_,
                          "relearn_seconds": clusterer.timings_.get("relearn")}
    problem = getattr(clusterer, "truth_problem_", None)
    if problem:  # said whether or not a score was asked for: a rewritten summary keeps it
        out["no_scores"] = problem
    elif score:
        m = clusterer.scores()
        out["metrics"] = {"acc": m["acc"], "nmi": m["nmi"], "ari": m["ari"], "k_true": m["k_true"]}
    return out


def write_discovery_results(clusterer, out: Path, *, score: bool = False, save_model: bool = False,
                            names: list[str] | None = None, numbers=None) -> dict:
    """Write ``assignments.csv`` and ``summary.json`` for a fitted clusterer.

    ``assignments.csv`` has one row per image: ``path``, ``cluster``, ``confidence`` and, when the groups have
    names (``names``, by cluster number: given by a person, or read from the true categories), ``name``. Also
    the answers it used (``answers.csv``, when there are any) and the run that ``assign`` and ``questions``
    read (``run.safetensors``, ``embedding_model.safetensors``, :mod:`l2c_explorer.runs`). In that order,
    ``summary.json`` last with the run file's digest: a folder whose writing was cut short is refused as a
    run (:func:`~l2c_explorer.runs.finished_run`), not read as a mix of two.

    ``numbers`` (k,): the number shown for each cluster after a person's corrections
    (:mod:`l2c_explorer.numbering`); the ``cluster`` column and ``names`` then go by these numbers, and the
    summary records them (``group_numbers``, by the clusterer's own cluster index).
    """
    from .constraints import write_constraints_csv
    from .model_io import read_model_file
    from .runfile import SUMMARY_KEY

    out = Path(out)
    header = ["path", "cluster", "confidence"]
    shown = clusterer.labels_ if numbers is None else np.asarray(numbers)[clusterer.labels_]
    columns = [clusterer.paths_, shown.tolist(), np.round(clusterer.confidence_, 4).tolist()]
    if names is not None:
        header.append("name")
        columns.append([names[i] for i in shown])
    write_csv(out / "assignments.csv", header, zip(*columns))
    summary = clusterer.summary(score=score)
    if names is not None:
        summary["group_names"] = list(names)
    if numbers is not None:
        summary["group_numbers"] = np.asarray(numbers).tolist()
    if save_model:
        summary["clustering_model"] = str(clusterer.save(out / "clustering_model"))
    answers = getattr(clusterer, "constraints_", None)
    if answers is not None and len(answers):
        write_constraints_csv(out / ANSWERS_FILE, answers, clusterer.paths_)
    elif (out / ANSWERS_FILE).exists():
        (out / ANSWERS_FILE).unlink()  # an earlier run's answers in the same folder are not this run's
    run_file = clusterer.save_run(out)
    summary["run_file"] = str(run_file)
    summary[SUMMARY_KEY] = read_model_file(run_file, kind="run")[2]
    write_json(out / "summary.json", summary)
    return summary


def write_assignment_results(clusterer, assigned: dict, out: Path, *, run_dir=None, seconds: float | None = None,
                             score: bool = False, numbers=None) -> dict:
    """Write ``assignments.csv`` (path, cluster, confidence, unlike_any) and ``summary.json`` for new images
    assigned to a run's clusters (:meth:`~l2c_explorer.clustering.L2CClusterer.assign`); ``numbers``: the
    numbers the run's groups are shown with (see :func:`write_discovery_results`)."""
    out = Path(out)
    labels, confidence, unlike = assigned["labels"], assigned["confidence"], assigned["unlike_any"]
    shown = np.asarray(labels) if numbers is None else np.asarray(numbers)[np.asarray(labels)]
    rows = zip(assigned["paths"], shown.tolist(), np.round(confidence, 4).tolist(),
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
    """Write ``assignments.csv`` (path, predicted_class, confidence, and ``name`` when the classes are codes
    with readable names, see :mod:`l2c_explorer.names`) and ``summary.json`` for an adapter."""
    out = Path(out)
    classes = adapter.classes_
    header = ["path", "predicted_class", "confidence"]
    columns = [adapter.paths_, [classes[i] for i in adapter.labels_], np.round(adapter.confidence_, 4).tolist()]
    readable = category_names(classes, adapter.source_root_)
    if has_readable_names(readable):
        header.append("name")
        columns.append([readable[classes[i]] for i in adapter.labels_])
    write_csv(out / "assignments.csv", header, zip(*columns))
    summary = adapter.summary(score=score)
    write_json(out / "summary.json", summary)
    return summary


EXPORT_MANIFEST = ".l2c-export.json"  # what an export wrote, so that exporting again can replace exactly that


def export_cluster_folders(
    root: Path,
    paths: list[str],
    labels: np.ndarray,
    out: str | os.PathLike,
    *,
    names: dict | None = None,
    mode: str = "copy",
    overwrite: bool = False,
    extra_files: list[Path] = (),
) -> dict:
    """Copy (or link) each image into ``out/<group name>/``, keeping file names unique.

    An output folder that already holds files is refused (:class:`~l2c_explorer.errors.FolderNotEmptyError`)
    unless ``overwrite``: then the files of an earlier export there (listed in its ``.l2c-export.json``)
    are removed first, and other files are left alone.

    Parameters
    ----------
    root : Path
        The analysed folder the relative ``paths`` are under (only read).
    names : dict of cluster id -> name, optional
        Folder names (made safe for a file system, spaces as ``_``); defaults to ``cluster_00``,
        ``cluster_01``, ... (zero-padded, so that they sort).
    mode : {"copy", "symlink"}
    extra_files : list of Path
        Files copied into ``out`` as they are (e.g. ``assignments.csv``, ``summary.json``).

    Returns
    -------
    dict of folder name -> number of files written.
    """
    if mode not in ("copy", "symlink"):
        raise InputError(f"mode must be 'copy' or 'symlink', not {mode!r}")
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    present = [p for p in out.iterdir()]
    if present and not overwrite:
        raise FolderNotEmptyError(out, len(present))
    if present:
        _remove_earlier_export(out)
    labels = np.asarray(labels).tolist()
    folders = export_folder_names(sorted(set(labels)), names)
    counts: dict[str, int] = {}
    written: list[str] = []
    for rel, label in zip(paths, labels):
        folder = folders[label]
        dest_dir = out / folder
        dest_dir.mkdir(exist_ok=True)
        dest = dest_dir / rel.replace("/", "__")
        src = Path(root) / rel
        if dest.exists() or dest.is_symlink():
            dest.unlink()
        if mode == "copy":
            shutil.copy2(src, dest)
        else:
            dest.symlink_to(src.resolve())
        counts[folder] = counts.get(folder, 0) + 1
        written.append(dest.relative_to(out).as_posix())
    for f in extra_files:
        shutil.copy2(f, out / Path(f).name)
        written.append(Path(f).name)
    write_json(out / EXPORT_MANIFEST, {"folders": sorted(counts), "files": written})
    return counts


def export_folder_names(labels, names: dict | None = None) -> dict:
    """Cluster id -> a distinct folder name (``names`` made safe, else ``cluster_00``, ...)."""
    labels = list(labels)
    defaults = group_names(max(labels) + 1 if labels else 0)
    out, used = {}, set()
    for label in labels:
        base = safe_folder_name(names.get(label) if names else None) or defaults[label]
        base = base.replace(" ", "_")
        folder, k = base, 2
        while folder.lower() in used:  # two groups given the same name keep separate folders
            folder, k = f"{base}_{k}", k + 1
        used.add(folder.lower())
        out[label] = folder
    return out


def _remove_earlier_export(out: Path) -> None:
    """Remove what an earlier export into ``out`` wrote (its manifest says what), and nothing else."""
    manifest = out / EXPORT_MANIFEST
    try:
        earlier = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    for rel in earlier.get("files", []):
        target = out / rel
        if _inside(target.parent, out) and (target.is_file() or target.is_symlink()):
            target.unlink()
    for folder in earlier.get("folders", []):
        target = out / folder
        if target.is_dir() and _inside(target, out) and target != out:
            try:
                target.rmdir()  # only when nothing else was put there since
            except OSError:
                pass
    manifest.unlink(missing_ok=True)


def safe_folder_name(name: str | None) -> str | None:
    """A name usable as one folder level: no separators, no leading dots, at most 100 characters."""
    if not name:
        return None
    cleaned = "".join(c if (c.isalnum() or c in " -_.()") else "_" for c in str(name)).strip().lstrip(".")
    return cleaned[:100] or None
