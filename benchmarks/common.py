"""Helpers shared by the benchmark scripts (a library, not a script): result files and the machine, the flags
the scripts share, folder listing, scoring, the simulated person of the teach benchmarks, the authors' published
Omniglot numbers and the package as it was at an earlier commit.

The data and the folders built from it are in ``benchmarks/datasets.py``. A script imports from these two
modules and from ``l2c_explorer``, never from another script. Nothing here imports ``l2c_explorer`` at import
time (only inside the functions that need it): the scale benchmarks import this module in processes that run
an older version of the package.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from datasets import OMNIGLOT_BACKGROUND, ROOT, shown, validation_setup

RESULTS = Path(__file__).resolve().parent / "results"


# ---------------------------------------------------------------------------------------------------
# the machine and the result files


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_description(threads: int | None = None) -> str:
    """E.g. 'Intel Xeon ... , 2 cores, torch 2.14.1, CPU only'."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU used"
    cores = os.cpu_count()
    used = f", {threads} threads" if threads else ""
    return f"{cpu_model()}, {cores} cores{used}, {gpu}, torch {torch.__version__}, Python {platform.python_version()}"


def write_results(name: str, data: dict, markdown: str) -> None:
    """benchmarks/results/<name>.json (everything) and <name>.md (the table BENCHMARKS.md includes)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=float) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown.rstrip() + "\n")


# ---------------------------------------------------------------------------------------------------
# the flags the scripts share

_NOT_ADDED = object()


def add_common_flags(parser: argparse.ArgumentParser, *, data=_NOT_ADDED, data_help: str = "the data folder",
                     seeds=_NOT_ADDED, seeds_help: str = "runs with seeds 0..N-1", max_k=_NOT_ADDED,
                     device=_NOT_ADDED, device_help: str = "auto (a CUDA GPU when there is one), cpu or cuda",
                     threads=_NOT_ADDED, threads_help: str = "torch threads") -> argparse.ArgumentParser:
    """Add the flags the benchmark scripts share to ``parser``, each with the default a script gives it (a flag
    whose default is not given is not added): ``--data`` (a folder; its default shown as the documented commands
    write it), ``--seeds``, ``--max-k`` (the largest K considered when K is estimated), ``--device`` and
    ``--threads``. The parsed values are ``args.data``, ``args.seeds``, ``args.max_k``, ``args.device`` and
    ``args.threads``."""
    if data is not _NOT_ADDED:
        parser.add_argument("--data", default=None if data is None else str(data),
                            help=data_help + ("" if data is None else f" (default: {shown(data)})"))
    if seeds is not _NOT_ADDED:
        parser.add_argument("--seeds", type=int, default=seeds, help=f"{seeds_help} (default {seeds})")
    if max_k is not _NOT_ADDED:
        parser.add_argument("--max-k", type=int, default=max_k,
                            help=f"the largest number of categories considered when K is estimated (default {max_k})")
    if device is not _NOT_ADDED:
        parser.add_argument("--device", default=device, help=device_help)
    if threads is not _NOT_ADDED:
        parser.add_argument("--threads", type=int, default=threads,
                            help=threads_help + ("" if threads is None else f" (default {threads})"))
    return parser


# ---------------------------------------------------------------------------------------------------
# folder listing


def subfolders(folder: str | os.PathLike) -> list[Path]:
    """The folders directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_dir())


def class_folders(folder: str | os.PathLike, *, at_least: int = 2) -> list[Path]:
    """The class folders of a labelled folder (one folder per class); exits when it has fewer than ``at_least``."""
    found = subfolders(folder)
    if len(found) < at_least:
        raise SystemExit(f"{folder} needs one folder per class")
    return found


def alphabet_folders(folder: str | os.PathLike) -> list[Path]:
    """The alphabets of an Omniglot-like folder: its folders that hold class folders; exits when there are none."""
    found = [p for p in subfolders(folder) if any(c.is_dir() for c in p.iterdir())]
    if not found:
        raise SystemExit(f"No alphabet folders (folders of character folders) in {folder}")
    return found


# ---------------------------------------------------------------------------------------------------
# scoring (l2c_explorer.metrics)


def label_ids(names) -> np.ndarray:
    """Class names (n,) -> class numbers 0..k-1, in the order of the sorted names."""
    return np.unique(np.asarray(names), return_inverse=True)[1]


def scores(truth, labels) -> dict:
    """ACC (images in extra clusters count as errors), NMI, ARI, the true and predicted numbers of clusters
    (:func:`l2c_explorer.metrics.clustering_scores`), and ``k_error``: clusters found minus true classes."""
    from l2c_explorer.metrics import clustering_scores

    s = clustering_scores(np.asarray(truth), np.asarray(labels))
    return {**s, "k_error": s["k_pred"] - s["k_true"]}


def accuracy_and_k_error(truth, labels) -> tuple[float, int]:
    """(clustering accuracy, clusters found minus true classes)."""
    s = scores(truth, labels)
    return float(s["acc"]), int(s["k_error"])


def matched_accuracy(truth, labels, subset) -> tuple[float, float]:
    """(accuracy on all images, accuracy on the ``subset`` (n,) bool) under one Hungarian matching of the clusters
    to the classes over all of them (:func:`l2c_explorer.metrics.hungarian_mapping`)."""
    from l2c_explorer.metrics import hungarian_mapping

    truth, pred = label_ids(truth), np.asarray(labels)
    mapping = hungarian_mapping(truth, pred)
    right = np.array([mapping.get(int(c), -1) for c in pred]) == truth
    return float(right.mean()), float(right[np.asarray(subset)].mean())


def kmeans_labels(x: np.ndarray, k: int, *, seed: int = 0, n_init: int = 10) -> np.ndarray:
    """k-means (scikit-learn) clusters of the rows of ``x``."""
    from sklearn.cluster import KMeans

    return KMeans(k, n_init=n_init, random_state=seed).fit_predict(x)


def kmeans_accuracy(x: np.ndarray, truth, *, k: int | None = None, seeds: int = 1, n_init: int = 10) -> float:
    """Mean clustering accuracy of k-means on the rows of ``x`` with K known (``k``, by default the number of
    classes of ``truth``), over seeds 0..``seeds``-1."""
    from l2c_explorer.metrics import cluster_accuracy

    truth = np.asarray(truth)
    k = len(np.unique(truth)) if k is None else k
    return float(np.mean([cluster_accuracy(truth, kmeans_labels(x, k, seed=s, n_init=n_init)) for s in range(seeds)]))


# ---------------------------------------------------------------------------------------------------
# the simulated person of the teach benchmarks


class Oracle:
    """Answers "same category?" for a pair of images from their folder names, and counts the answers."""

    def __init__(self, truth: np.ndarray, budget: int):
        self.truth = np.asarray(truth)
        self.budget = budget
        self.asked = 0

    def __call__(self, a: int, b: int) -> bool:
        if self.asked >= self.budget:
            raise RuntimeError("the budget of answers is spent")
        self.asked += 1
        return bool(self.truth[a] == self.truth[b])


def same_groups(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether two labelings group the images alike, whatever their numbers."""
    pairs = len(set(zip(x.tolist(), y.tolist(), strict=True)))
    return pairs == len(np.unique(x)) == len(np.unique(y))


def contradicts(answer, labels: np.ndarray) -> bool:
    """Whether an answer goes against the groups it was asked about (an answer that changes them)."""
    return answer.same != bool(labels[answer.a] == labels[answer.b])


def run_ours(clusterer, truth, budgets, *, relearn: bool = False) -> dict:
    """Our questions (``L2CClusterer.questions``) answered by the :class:`Oracle` one at a time, a ``refit`` after
    each (and with ``relearn``, a ``relearn`` at each budget); the scores ``(accuracy, K error)`` after each of
    ``budgets`` answers, each refit's seconds, the kinds of question asked and whether each answer changed the
    groups. The clusterer is left as the run was, before any answer."""
    from l2c_explorer.constraints import Answer

    oracle = Oracle(truth, max(budgets))
    answers: list[Answer] = []
    out, seconds, kinds, relearn_seconds, changed, contradicted = {}, [], [], [], [], []
    clusterer.refit([])
    for t in range(max(budgets) + 1):
        if t in budgets:
            if relearn and answers:
                started = time.perf_counter()
                clusterer.relearn(answers)
                relearn_seconds.append(time.perf_counter() - started)
            out[t] = accuracy_and_k_error(truth, clusterer.labels_)
        if t == max(budgets):
            break
        found = clusterer.questions(1)
        if not found:  # nothing left worth asking: the clustering stays
            out.update({b: out[t] for b in budgets if b > t})
            break
        q = found[0]
        answers.append(Answer(q.a, q.b, oracle(q.a, q.b), q.kind))
        kinds.append(q.kind)
        contradicted.append(contradicts(answers[-1], clusterer.labels_))
        before = clusterer.labels_.copy()
        started = time.perf_counter()
        clusterer.refit(answers)
        seconds.append(time.perf_counter() - started)
        changed.append(not same_groups(before, clusterer.labels_))
    clusterer.refit([])  # the run as it was, for the next method
    return {"scores": out, "refit_seconds": seconds, "kinds": kinds, "relearn_seconds": relearn_seconds,
            "changed": changed, "contradicted": contradicted}


def run_rounds(fit, truth, budgets, *, per_round: int = 5) -> dict:
    """The README's batch flow: rounds of ``questions --n per_round`` answered by the :class:`Oracle` in one
    sitting, then ``discover --constraints FILE --relearn`` (a new run from the folder with every answer so far,
    relearnt from them), whose questions make the next round. ``fit(answers)``: that run (a fitted
    clusterer; no answers: the first discovery). The scores ``(accuracy, K error)`` at each of ``budgets``
    (multiples of ``per_round``), the kinds asked and whether each answer contradicted the groups it was asked
    about (an answer that changes the groups)."""
    from l2c_explorer.constraints import Answer

    if any(b % per_round for b in budgets):
        raise ValueError(f"the budgets of the batch flow are whole rounds of {per_round} answers")
    oracle = Oracle(truth, max(budgets))
    answers: list[Answer] = []
    out, kinds, contradicted, fit_seconds = {}, [], [], []
    clusterer = fit([])
    for t in range(0, max(budgets) + 1, per_round):
        if t in budgets:
            out[t] = accuracy_and_k_error(truth, clusterer.labels_)
        if t == max(budgets):
            break
        batch = clusterer.questions(per_round)
        if not batch:
            out.update({b: out[t] for b in budgets if b > t})
            break
        for q in batch:
            answers.append(Answer(q.a, q.b, oracle(q.a, q.b), q.kind))
            kinds.append(q.kind)
            contradicted.append(contradicts(answers[-1], clusterer.labels_))
        started = time.perf_counter()
        clusterer = fit(answers)
        fit_seconds.append(time.perf_counter() - started)
    return {"scores": out, "kinds": kinds, "contradicted": contradicted, "relearn_seconds": fit_seconds}


def add_validation_teach_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of the scripts that choose a teach constant with `teach.py` on background fold 5's validation
    alphabets (questions_prior.py, relearn_steps.py)."""
    parser.add_argument("--skip-runs", action="store_true", help="only tabulate the teach results there are")
    parser.add_argument("--background", default=str(OMNIGLOT_BACKGROUND))
    parser.add_argument("--model", default=None, help="a model trained on the fold's 25 training alphabets "
                        "(trained by the shipped recipe when missing)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each teach run")


def choose_on_validation(args: argparse.Namespace, results: str, runs: dict[str, list[str]], summarise, render) -> None:
    """Run `teach.py` on the Omniglot folder of fold 5's validation alphabets with the fold's model (``args`` from
    :func:`add_validation_teach_flags`), once per entry of ``runs`` (teach results name -> its other teach
    arguments), then write ``results`` from ``summarise(name)`` of each run there is, as ``render`` tabulates them."""
    if not args.skip_runs:
        with tempfile.TemporaryDirectory() as tmp:
            valid, model = validation_setup(Path(args.background), Path(tmp), args.model)
            for name, extra in runs.items():
                subprocess.run([sys.executable, str(Path(__file__).with_name("teach.py")), "--only", "omniglot",
                                "--omniglot", str(valid), "--omniglot-model", model, "--threads", str(args.threads),
                                "--no-speed", "--name", name, *extra], check=True)
    summaries = [summarise(name) for name in runs if (RESULTS / f"{name}.json").is_file()]
    write_results(results, {"machine": machine_description(), "summaries": summaries}, render(summaries))
    print(render(summaries))


# ---------------------------------------------------------------------------------------------------
# the authors' published Omniglot numbers

# Published per-alphabet clustering accuracy (%) of the authors' code with their reference SPN: the table in
# the L2C README (github.com/GT-RIPL/L2C, README.md, "mean of 3 clustering runs"). Columns:
# KCL k=100, MCL k=100, KCL k=gt, MCL k=gt. Names as in that table; matched to folders by normalise_name.
PUBLISHED = {
    "Angelic": (73.2, 82.2, 89.0, 91.7),
    "Atemayar_Qelisayer": (73.3, 89.2, 82.5, 86.0),
    "Atlantean": (65.5, 83.3, 89.4, 93.5),
    "Aurek_Besh": (88.4, 92.8, 91.5, 92.4),
    "Avesta": (79.0, 85.8, 85.4, 86.1),
    "Ge_ez": (77.1, 84.0, 85.4, 86.6),
    "Glagolitic": (83.9, 85.3, 84.9, 87.4),
    "Gurmukhi": (78.8, 78.7, 77.0, 78.0),
    "Kannada": (64.6, 81.1, 73.3, 81.2),
    "Keble": (91.4, 95.1, 94.7, 94.3),
    "Malayalam": (73.5, 75.0, 72.7, 73.0),
    "Manipuri": (82.8, 81.2, 85.8, 81.5),
    "Mongolian": (84.7, 89.0, 88.3, 90.2),
    "Old_Church_Slavonic_Cyrillic": (89.9, 90.7, 88.7, 89.8),
    "Oriya": (56.5, 73.4, 63.2, 75.3),
    "Sylheti": (61.8, 68.2, 69.8, 80.6),
    "Syriac_Serto": (72.1, 82.0, 85.8, 89.8),
    "Tengwar": (67.7, 76.4, 82.5, 85.5),
    "Tibetan": (81.8, 80.2, 84.3, 81.9),
    "ULOG": (53.3, 77.1, 73.0, 89.1),
}


def normalise_name(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


PUBLISHED_BY_KEY = {normalise_name(k): v for k, v in PUBLISHED.items()}
PUBLISHED_MEANS = {"kcl-unknown": 75.0, "mcl-unknown": 82.5, "kcl-known": 82.4, "mcl-known": 85.7}
COLUMN = {"kcl-unknown": 0, "mcl-unknown": 1, "kcl-known": 2, "mcl-known": 3}


# ---------------------------------------------------------------------------------------------------
# K rules

# the eigengap significances (a drop counts when it is at least this share of the largest) the K-rule
# benchmarks score (omniglot_k_rule.py, omniglot_self_training.py)
SIGNIFICANCE_CANDIDATES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


# ---------------------------------------------------------------------------------------------------
# the package at an earlier commit

BASELINE = "f1b477a"  # main before the scale work: "today's" pipeline of scale.py, the baseline of discover_large.py


def baseline_package(scratch: Path, commit: str) -> Path:
    """The package at ``commit``, extracted once into ``scratch/baseline-<commit>`` (for PYTHONPATH)."""
    dest = scratch / f"baseline-{commit}"
    if not (dest / "l2c_explorer").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit, "l2c_explorer", "models"], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest
