"""Teach it: a simulated person answers questions about pairs of images; how fast do the clusters improve?

Protocol. Each folder (an Omniglot alphabet, or the 25 photo classes of Tiny ImageNet's `novel-dev`) is
first clustered as `discover` does it, K unknown (at most 100), self-training on. Then every method gets the
same budget of **answers**, 0, 10, 25, 50 and 100, from the same oracle, and the clustering after each
budget is scored (accuracy with images in extra clusters counted as errors, |K error|).

* **One answer** is the oracle's reply to one question about one pair of images: "do these two images show
  the same category?". The oracle only ever sees the two images it is asked about and answers from their
  folder names (first-level sub-folder = category). Our group questions ("is this group one category?",
  "are these two groups one category?") are such pairs (the most typical image of each half, of each
  group), so each costs one answer, like any other pair.
* **ours**: `L2CClusterer.questions()` chooses the next pair, the oracle answers, `refit()` re-clusters with
  every answer so far; repeated one answer at a time.
* **ours, relearnt**: the same, and at each budget the person presses Relearn: `relearn()` self-trains the
  features on the groups the answers left, clusters again and applies the answers (seconds); the next
  questions are about the relearnt groups. The score after b answers is the relearnt clustering's.
* **ours, 5 at a time** (the README's batch flow): `questions --n 5` answered in one sitting, then
  `discover --constraints FILE --relearn` with every answer so far (the run's discovery, the answers applied,
  relearnt from them), whose questions make the next round; up to 25 answers. The score after b answers is
  that of the run after b / 5 rounds. Which answers "changed the groups" is counted the same way for every
  flow: an answer that contradicts the groups it was asked about.
* **random pairs**: the same, but the pair is drawn at random among the pairs whose answer does not follow
  from the answers so far; the same refit.
* **COBRAS** (Van Craenendonck et al. 2018, PyPI `cobras-ts`, `COBRAS_kmeans`): its own questions and
  clustering, on the same features our clustering network uses (the run's diffusion features), with the
  same oracle; K is its own. Its clustering after b questions is the intermediate clustering it records.
* **NPU + PCKMeans** (Xiong et al. 2014; Basu et al. 2004; PyPI `active-semi-supervised-clustering`): the
  NPU active learner chooses the pairs, PCKMeans clusters with them, on the same features, with the same
  oracle. It needs K: it gets the run's own estimate (what ours starts from), so its K error is that of the
  estimate. Run once per budget (NPU's choice of pairs depends on the budget only through when it stops).

The two baselines run with the package versions installed by `pip install -e .[bench]`; where they do not
work with current numpy/scikit-learn, this script patches around it (see `patch_baselines`).

Also measured: the seconds of each refit (one answer) on a 1,000-image folder (50 characters: Kannada's 41 and
Keble's first 9, as `discover_speed.py`), and of one answer in the app's engine on the demo folder (re-cluster,
files, counts, map colours), with the load average of the machine at the time.

    python benchmarks/teach.py --threads 2                 # Omniglot; photos too when models/photos exists
    python benchmarks/teach.py --only omniglot --methods ours random
    python benchmarks/teach.py --only photos --resume --photo-classes 25 --photo-per-class 20   # a subset

Results are saved after every folder; `--resume` keeps what an earlier run with the same methods, budgets and
seed measured, so the parts (and the timings, best on a quiet machine) can be run at different times.

Writes benchmarks/results/teach.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import (
    RESULTS,
    Oracle,
    accuracy_and_k_error,
    add_common_flags,
    alphabet_folders,
    label_ids,
    machine_description,
    run_ours,
    run_rounds,
    subfolders,
    write_results,
)
from datasets import OMNIGLOT_EVALUATION, ROOT, TINY_NOVEL, photo_subset, thousand_drawings

from l2c_explorer import questions as questions_module
from l2c_explorer.clustering import L2CClusterer
from l2c_explorer.constraints import Answer, ConstraintSet
from l2c_explorer.similarity_model import list_models, load_similarity_model

BUDGETS = (0, 10, 25, 50, 100)
METHODS = ("ours", "relearn", "rounds", "random", "cobras", "npu")
METHOD_NAMES = {"ours": "our questions", "relearn": "our questions, relearnt at each budget",
                "rounds": "our questions 5 at a time, each round relearnt (the README's batch flow)",
                "random": "random pairs", "cobras": "COBRAS", "npu": "NPU + PCKMeans (K from the run)"}
OURS = ("ours", "relearn", "rounds")
PER_ROUND = 5  # the README's batch flow: `questions --n 5`, answered in one sitting
ROUNDS_UP_TO = 25  # each round is a relearning (seconds each): the batch flow stops at 25 answers


# ---------------------------------------------------------------------------------------------------
# ours (common.run_ours) and random pairs: one refit per answer


def run_random(clusterer: L2CClusterer, truth, budgets, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    n = len(truth)
    oracle = Oracle(truth, max(budgets))
    cs = ConstraintSet(n)
    out = {}
    for t in range(max(budgets) + 1):
        if t in budgets:
            out[t] = accuracy_and_k_error(truth, clusterer.refit(cs).labels_)
        if t == max(budgets):
            break
        while True:
            a, b = (int(x) for x in rng.integers(0, n, 2))
            if a != b and cs.known(a, b) is None:
                break
        cs = cs.with_answer(Answer(a, b, oracle(a, b)))
    return {"scores": out}


# ---------------------------------------------------------------------------------------------------
# the baselines


def patch_baselines() -> list[str]:
    """Make the two baseline packages run, and run in reasonable time, with current numpy/scikit-learn.

    Returns what was patched. Every patch keeps the package's results: the same values computed without
    Python loops over all pairs, and aliases that numpy removed.
    """
    notes = []
    if "int" not in np.__dict__:  # np.int / np.float: removed in numpy 1.24, used by cobras-ts
        np.int = int  # type: ignore[attr-defined]
        np.float = float  # type: ignore[attr-defined]
        notes.append("the aliases np.int and np.float (removed in numpy 1.24, used by cobras-ts) restored")
    errors = np.geterr()
    try:
        from active_semi_clustering.active.pairwise_constraints import npu as npu_module
        from active_semi_clustering.exceptions import EmptyClustersException
        from active_semi_clustering.semi_supervised.pairwise_constraints import pckmeans as pck_module
    except ImportError:
        return notes
    finally:
        if np.geterr() != errors:  # its MPCKMeans module makes every floating-point warning an error on import
            np.seterr(**errors)
            notes.append("numpy's floating-point error handling, which importing active-semi-supervised-clustering "
                         "sets to 'raise', restored")

    def assign_clusters(self, X, cluster_centers, ml_graph, cl_graph, w):
        # PCKMeans' own assignment (same visiting order, same objective), with the distances to the centres
        # computed for all points at once instead of one Python call per point and cluster
        labels = np.full(X.shape[0], fill_value=-1)
        distance = 0.5 * ((X[:, None, :] - cluster_centers[None, :, :]) ** 2).sum(-1)
        index = list(range(X.shape[0]))
        np.random.shuffle(index)
        for x_i in index:
            cost = distance[x_i].copy()
            for y_i in ml_graph[x_i]:
                if labels[y_i] != -1:
                    cost += w
                    cost[labels[y_i]] -= w
            for y_i in cl_graph[x_i]:
                if labels[y_i] != -1:
                    cost[labels[y_i]] += w
            labels[x_i] = int(np.argmin(cost))
        if np.any(np.bincount(labels, minlength=self.n_clusters) == 0):
            raise EmptyClustersException
        return labels

    pck_module.PCKMeans._assign_clusters = assign_clusters
    notes.append("PCKMeans' cluster assignment computes the point-to-centre distances in one array operation "
                 "(same order, same objective, same result)")

    def most_informative(self, X, clusterer, neighborhoods):
        # NPU's choice (Xiong et al. 2014, as the package computes it): a 50-tree random forest learns the
        # current clusters, S = share of trees where two images share a leaf, p = mean S to each
        # neighbourhood (normalised), the most informative image maximises entropy(p) / expected cost. The
        # package loops over every pair in Python; S here is one product of leaf indicators, the same values.
        from sklearn.ensemble import RandomForestClassifier

        n, n_hoods = X.shape[0], len(neighborhoods)
        queried = {i for hood in neighborhoods for i in hood}
        free = np.array(sorted(set(range(n)) - queried))
        if n_hoods <= 1:
            return np.random.choice(free), [1]
        forest = RandomForestClassifier(n_estimators=50).fit(X, clusterer.labels_)
        leaves = forest.apply(X)
        codes = leaves + (np.arange(leaves.shape[1]) * (leaves.max() + 1))[None, :]
        onehot = np.zeros((n, int(codes.max()) + 1))
        onehot[np.repeat(np.arange(n), leaves.shape[1]), codes.ravel()] = 1.0
        S = (onehot @ onehot.T) / 50
        p = np.stack([S[:, hood].mean(1) for hood in neighborhoods], axis=1)
        p[np.all(p == 0, axis=1)] = 1.0
        p = p / p.sum(1, keepdims=True)
        uncertainty, cost = np.zeros(n), np.ones(n)
        for i in free:
            if not np.any(p[i] == 1):
                positive = p[i][p[i] > 0]
                uncertainty[i] = -(positive * np.log2(positive)).sum()
                cost[i] = (positive * np.arange(1, len(positive) + 1)).sum()
        best = int(np.argmax(uncertainty / cost))
        return best, p[best]

    npu_module.NPU._most_informative = most_informative
    notes.append("NPU's random-forest similarity computed as one product of leaf indicators instead of a Python "
                 "loop over every pair of images (same values)")
    return notes


class CobrasOracle:
    """cobras-ts's querier interface, answered by the oracle."""

    def __init__(self, oracle: Oracle):
        self.oracle = oracle

    def query_points(self, i, j):
        return self.oracle(int(i), int(j))

    def continue_cluster_process(self):
        return True

    def update_clustering(self, clustering):
        return None

    def update_clustering_detailed(self, clustering):
        return None


def run_cobras(features: np.ndarray, truth, budgets) -> dict:
    """COBRAS (k-means super-instances) with the oracle; its clustering after b answers is the intermediate
    clustering it records at its b-th question (before the first question it has one cluster)."""
    from cobras_ts.cobras_kmeans import COBRAS_kmeans

    oracle = Oracle(truth, max(budgets))
    np.random.seed(0)  # COBRAS' k-means splits draw from numpy's global generator
    result = COBRAS_kmeans(features.astype(np.float64), CobrasOracle(oracle), max(budgets)).cluster()
    intermediate = result[1]  # (clustering, intermediate labellings, runtimes, ml, cl)
    out = {}
    for b in budgets:
        labels = np.zeros(len(truth), dtype=int) if b == 0 or not intermediate else \
            np.asarray(intermediate[min(b, len(intermediate)) - 1])
        out[b] = accuracy_and_k_error(truth, labels)
    return {"scores": out, "questions_asked": oracle.asked}


def run_npu(features: np.ndarray, truth, budgets, k: int) -> dict:
    """NPU choosing the pairs, PCKMeans clustering with them, K = ``k``; one run up to the largest budget.

    The clustering after b answers is PCKMeans' clustering when NPU is about to ask its (b+1)-th question:
    NPU adds constraints only between questions and refits PCKMeans right after, so that clustering is
    fitted on exactly the answers a run with budget b ends with, from the same random draws (what the
    package returns for a budget of b answers), without running NPU once per budget.
    """
    from active_semi_clustering.active.pairwise_constraints import NPU
    from active_semi_clustering.active.pairwise_constraints.example_oracle import MaximumQueriesExceeded

    wanted = sorted(set(budgets))
    snapshots: dict[int, np.ndarray] = {}
    oracle = Oracle(truth, max(wanted))
    learner = NPU(clusterer=None)

    class SnapshotOracle:
        def query(self, i, j):
            if oracle.asked in wanted and oracle.asked not in snapshots:
                snapshots[oracle.asked] = np.asarray(learner.clusterer.labels_).copy()
            if oracle.asked >= oracle.budget:
                raise MaximumQueriesExceeded
            return oracle(int(i), int(j))

    from active_semi_clustering.semi_supervised.pairwise_constraints import PCKMeans

    np.random.seed(0)  # NPU, PCKMeans and the random forest draw from numpy's global generator
    learner.clusterer = PCKMeans(n_clusters=k)
    learner.fit(features.astype(np.float64), oracle=SnapshotOracle())
    out = {b: accuracy_and_k_error(truth, snapshots[b]) for b in wanted}
    return {"scores": out, "questions_asked": oracle.asked}


# ---------------------------------------------------------------------------------------------------
# folders


def run_folder(folder: Path, model, methods, budgets, seed: int, relearn_steps: int | None = None) -> dict:
    started = time.perf_counter()
    clusterer = L2CClusterer(similarity=model, random_state=seed, relearn_steps=relearn_steps).fit(folder, labelled=True)
    fit_seconds = time.perf_counter() - started
    truth = label_ids(clusterer.true_labels_)
    features = np.asarray(clusterer.diffusion_features_)
    k_run = int(clusterer.n_clusters_)
    row = {"n_images": len(truth), "k_true": int(truth.max() + 1), "k_run": k_run, "fit_seconds": fit_seconds}
    for method in methods:
        t0 = time.perf_counter()
        if method == "rounds":
            def fit(answers):
                # `discover --constraints FILE --relearn` is the same discovery, then refit(answers), then relearn():
                # a copy of this run stands for its deterministic first part
                if not answers:
                    return clusterer
                again = copy.deepcopy(clusterer)
                again.refit(answers)
                return again.relearn()

            row[method] = run_rounds(fit, truth, [b for b in budgets if b % PER_ROUND == 0 and b <= ROUNDS_UP_TO],
                                     per_round=PER_ROUND)
        elif method in OURS:
            row[method] = run_ours(clusterer, truth, budgets, relearn=method == "relearn")
        elif method == "random":
            row[method] = run_random(clusterer, truth, budgets, seed)
        elif method == "cobras":
            row[method] = run_cobras(features, truth, budgets)
        elif method == "npu":
            row[method] = run_npu(features, truth, budgets, k_run)
        row[method]["seconds"] = time.perf_counter() - t0
        line = " ".join(f"{b}:{100 * a:.1f}/{e:+d}" for b, (a, e) in row[method]["scores"].items())
        print(f"  {method:7s} {line}  ({row[method]['seconds']:.0f} s)", flush=True)
    return row


def refit_speed(data: Path, model, seed: int, n_answers: int = 10) -> dict:
    """Seconds of each refit (one answer) on 1,000 images, with the load average before and after."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = thousand_drawings(data, Path(tmp) / "folder")
        clusterer = L2CClusterer(similarity=model, random_state=seed).fit(folder, labelled=True)
        truth = label_ids(clusterer.true_labels_)
        load_before = os.getloadavg()
        timing = run_ours(clusterer, truth, (0, n_answers))
        relearnt = run_ours(clusterer, truth, (0, n_answers), relearn=True)
        load_after = os.getloadavg()
    s = timing["refit_seconds"]
    return {"n_images": len(truth), "seconds": s, "median": float(np.median(s)), "max": float(np.max(s)),
            "relearn_seconds": relearnt["relearn_seconds"][0], "n_answers": n_answers,
            "load_before": load_before, "load_after": load_after}


def app_speed(folder: Path, seed: int, n_answers: int = 5) -> dict:
    """Seconds of one answer in the app's engine on the demo folder, as the Teach it panel gives it.

    A finished demo run (the settings of the app's "Try the demo": model `omniglot`, K unknown), its map
    computed; then each answer re-clusters, rewrites the run's files and recomputes the groups' counts and
    the map colours (:meth:`~l2c_explorer.app.teaching.Teacher.answer`). The page's drawing is not counted.
    """
    from l2c_explorer.app.workbench import Workbench
    from l2c_explorer.options import DISCOVER

    with tempfile.TemporaryDirectory() as tmp:
        bench = Workbench(Path(tmp) / "work")
        try:
            job = bench.start_discovery(folder, model="omniglot", labelled=True, steps=DISCOVER.defaults.steps,
                                        random_state=seed, device="cpu")
            if not job.wait(3600) or job.result is None:
                raise RuntimeError(f"the demo run failed: {job.error}")
            deadline = time.monotonic() + 3600
            while not job.extra("map_final") and time.monotonic() < deadline:
                time.sleep(0.5)
            teacher = bench.teacher(job.id)
            truth = np.unique(np.asarray(job.result.truth), return_inverse=True)[1]
            load_before, seconds = os.getloadavg(), []
            for _ in range(n_answers):
                q = teacher.question()
                teacher.answer(q["a"], q["b"], bool(truth[q["a"]] == truth[q["b"]]))
                seconds.append(teacher.seconds)
            teacher.relearn()
            relearn_seconds = teacher.seconds
            load_after = os.getloadavg()
            n_images = len(job.result.paths)
        finally:
            bench.close()
    return {"folder": folder.name, "n_images": n_images, "seconds": seconds, "median": float(np.median(seconds)),
            "max": float(np.max(seconds)), "relearn_seconds": relearn_seconds, "n_answers": n_answers,
            "load_before": load_before, "load_after": load_after}


# ---------------------------------------------------------------------------------------------------
# report


def at_budget(rows: dict, m: str, b: int) -> list[tuple[float, int]]:
    """(accuracy, K error) of method ``m`` after ``b`` answers, for each folder where it was measured there."""
    return [r[m]["scores"][b] for r in rows.values() if b in r.get(m, {}).get("scores", {})]


def summary_table(rows: dict, methods, budgets) -> list[str]:
    head = "| method | " + " | ".join(f"{b} answers" for b in budgets) + " |"
    lines = [head, "|---|" + "---|" * len(budgets)]
    for m in methods:
        cells = []
        for b in budgets:
            acc = [100 * a for a, _ in at_budget(rows, m, b)]
            kerr = [abs(e) for _, e in at_budget(rows, m, b)]
            cells.append(f"{np.mean(acc):.1f} (min {np.min(acc):.1f}), K err {np.mean(kerr):.2f}" if acc else "not run")
        lines.append(f"| {METHOD_NAMES[m]} | " + " | ".join(cells) + " |")
    return lines


def per_folder_table(rows: dict, methods, budgets) -> list[str]:
    lines = ["| folder | images | K | method | " + " | ".join(f"{b}" for b in budgets) + " |",
             "|---|---|---|---|" + "---|" * len(budgets)]
    for name, r in rows.items():
        for m in methods:
            if m not in r:
                continue
            cells = [f"{100 * r[m]['scores'][b][0]:.1f} ({r[m]['scores'][b][1]:+d})" if b in r[m]["scores"] else "-"
                     for b in budgets]
            lines.append(f"| {name} | {r['n_images']} | {r['k_true']} | {METHOD_NAMES[m]} | " + " | ".join(cells) + " |")
    return lines


N_ALPHABETS = 10  # the development alphabets of images_evaluation: the accuracy and K targets are about all


def targets(rows: dict, methods, budgets, *, accuracy_targets: bool = True) -> list[str]:
    """The targets, met or not (the accuracy and K ones are about all 10 Omniglot development alphabets: with
    fewer measured, their numbers are shown and the verdict is left open)."""
    def acc(m, b):
        return [100 * a for a, _ in at_budget(rows, m, b)]

    def verdict(met: bool) -> str:
        if accuracy_targets and len(rows) < N_ALPHABETS:
            return f"not assessed: {len(rows)} of the {N_ALPHABETS} alphabets measured"
        return "met" if met else "not met"

    out = []
    ours = [m for m in OURS if m in methods]
    for m in ours if accuracy_targets else []:
        a = acc(m, 25) if 25 in budgets else []
        if a:
            met = np.mean(a) >= 95 and np.min(a) >= 91
            out.append(f"- {METHOD_NAMES[m]}, after 25 answers: mean accuracy {np.mean(a):.1f}%, lowest "
                       f"{np.min(a):.1f}% (target: mean >= 95%, every alphabet >= 91%): **{verdict(met)}**.")
        if 50 in budgets and at_budget(rows, m, 50):
            e = np.mean([abs(err) for _, err in at_budget(rows, m, 50)])
            out.append(f"- {METHOD_NAMES[m]}, after 50 answers: mean |K error| {e:.2f} (target <= 0.3): "
                       f"**{verdict(e <= 0.3)}**.")
    others = [m for m in methods if m not in OURS]
    for m in ours if others else []:
        beaten = {o: all(np.mean(acc(m, b)) > np.mean(acc(o, b)) for b in budgets if b > 0 and acc(m, b))
                  for o in others}
        words = ", ".join(f"{METHOD_NAMES[o]}: {'yes' if v else 'no'}" for o, v in beaten.items())
        out.append(f"- {METHOD_NAMES[m]} above each other method at every budget from "
                   f"{min(b for b in budgets if b > 0)} answers on (mean accuracy; target: yes for all): {words}"
                   f"{f' ({verdict(False)})' if accuracy_targets and len(rows) < N_ALPHABETS else ''}.")
    return out


def changed_lines(rows: dict, methods) -> list[str]:
    """How many of our answers changed the groups (the rest confirmed what the clustering already said): an
    answer that contradicts the groups it was asked about (two images of one group said to differ, of two
    groups said to be the same), and, one at a time, whether the refit after it grouped the images otherwise."""
    out = []
    for m in methods:
        told = [r[m]["contradicted"] for r in rows.values() if r.get(m, {}).get("contradicted")]
        if not told:
            continue
        flat = [c for seq in told for c in seq]
        fives = [sum(seq[i:i + 5]) for seq in told for i in range(0, len(seq) - 4, 5)]
        met = all(f >= 2 for f in fives)
        line = (f"- {METHOD_NAMES[m]}: {sum(flat)} of {len(flat)} answers ({100 * np.mean(flat):.0f}%) contradicted "
                f"the groups they were asked about; {sum(f >= 2 for f in fives)} of {len(fives)} runs of 5 questions "
                f"had at least 2 such (target: every 5: **{'met' if met else 'not met'}**)")
        changed = [c for r in rows.values() for c in r.get(m, {}).get("changed", [])]
        if changed:
            line += f"; the refit after the answer grouped the images otherwise {sum(changed)} times"
        out.append(line + ".")
    return out


def render(data: dict) -> str:
    """benchmarks/results/teach.md from the results (also those of earlier, resumed runs)."""
    methods, budgets = data["methods"], [int(b) for b in data["budgets"]]
    runs = "; ".join(f"{'timings' if r['args'].get('timings_only') else r['args'].get('only') or 'all parts'}"
                     f"{' (timings skipped)' if r['args'].get('no_speed') else ''}"
                     f" with {r['args']['threads']} torch thread(s)" for r in data["runs"])
    lines = [f"Machine: {data['machine']}; benchmark time {data['seconds'] / 60:.1f} min (all runs added up; "
             f"runs: {runs}).",
             "One answer = the oracle's reply to one question about one pair of images, from the two images' "
             "folder names (see the script's docstring). Cells: mean clustering accuracy % over the folders "
             "(lowest), mean |K error|. Accuracies do not depend on the machine's load; the seconds do.", ""]
    if data.get("patches"):
        lines += ["Baselines patched to run with this numpy/scikit-learn: " + "; ".join(data["patches"]) + ".", ""]
    for part, rows in data["results"].items():
        title = data["titles"][part]
        if part == "omniglot":
            which = f"the {N_ALPHABETS}" if len(rows) == N_ALPHABETS else \
                f"{len(rows)} of the {N_ALPHABETS} ({', '.join(rows)})"
            title = f"Omniglot, {which} development alphabets (model `omniglot`), K unknown"
        lines += [f"#### {title}", ""] + summary_table(rows, methods, budgets) + [""]
        if part == "omniglot":
            lines += targets(rows, methods, budgets) + [""]
        else:
            lines += targets(rows, methods, budgets, accuracy_targets=False) + [""]
        lines += changed_lines(rows, methods) + [""]
        lines += ["Per folder: accuracy % (K found minus true K); the clustering before any answer took "
                  + ", ".join(f"{r['fit_seconds']:.0f} s ({name})" for name, r in rows.items())
                  + "; load average (1 min) at the end of each folder "
                  + ", ".join(f"{r['load_average'][0]:.1f}" for r in rows.values() if "load_average" in r) + ".",
                  ""] + per_folder_table(rows, methods, budgets) + [""]
    speed = data.get("speed")
    if speed:
        lines += [f"**One answer on {speed['n_images']:,} images** (`refit`, {speed.get('threads', 2)} threads): "
                  + timing(speed) + "."]
        if "relearn_seconds" in speed:
            lines += ["", f"**Relearning on {speed['n_images']:,} images** (`relearn` after {speed['n_answers']} "
                      f"answers: self-training, features, graph, clustering, the answers applied): "
                      f"{seconds_text(speed['relearn_seconds'])} (no target: a button pressed now and then, not "
                      "after every answer)."]
    app = data.get("app_speed")
    if app:
        lines += ["", f"**One answer in the app's engine on the demo folder** (`{app['folder']}`, "
                  f"{app['n_images']:,} images: re-cluster, rewrite the run's files, new counts and map colours; "
                  f"the page's drawing not counted): " + timing(app) + "."]
        if "relearn_seconds" in app:
            lines += ["", f"**Relearn in the app's engine on the demo folder** (after {app['n_answers']} answers, "
                      f"the run's files rewritten and the page's data computed): "
                      f"{seconds_text(app['relearn_seconds'])}."]
    return "\n".join(lines)


def seconds_text(x: float) -> str:
    return f"{1000 * x:.0f} ms" if x < 0.1 else f"{x:.2f} s"


def timing(speed: dict, target: float = 3.0) -> str:
    met = speed["max"] <= target
    return (f"{seconds_text(speed['median'])} (median of {len(speed['seconds'])}), at most "
            f"{seconds_text(speed['max'])} (target "
            f"<= {target:g} s: {'met' if met else 'not met'}); load average (1, 5, 15 min) "
            f"{', '.join(f'{x:.1f}' for x in speed['load_before'])} before, "
            f"{', '.join(f'{x:.1f}' for x in speed['load_after'])} after"
            + ("; measured on a shared machine (load above its 2 cores): an upper bound, to rerun on a quiet one"
               if max(speed["load_before"][0], speed["load_after"][0]) > 2.5 else ""))


def with_int_budgets(rows: dict) -> dict:
    """Rows read back from JSON: budgets as whole numbers again."""
    for r in rows.values():
        for m in METHODS:
            if m in r:
                r[m]["scores"] = {int(b): tuple(v) for b, v in r[m]["scores"].items()}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--omniglot", default=str(OMNIGLOT_EVALUATION), help="the Omniglot alphabets")
    parser.add_argument("--photos", default=str(TINY_NOVEL), help="the photo folder")
    parser.add_argument("--omniglot-model", default="omniglot")
    parser.add_argument("--photo-model", default="photos")
    parser.add_argument("--photo-classes", type=int, default=None,
                        help="only the first N classes of --photos (default: all); stated in the results")
    parser.add_argument("--photo-per-class", type=int, default=None,
                        help="only the first N images of each photo class (default: all); stated in the results")
    parser.add_argument("--only", choices=("omniglot", "photos"), default=None)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS))
    parser.add_argument("--alphabets", nargs="*", default=None, help="only these alphabets (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    add_common_flags(parser, threads=2)
    parser.add_argument("--no-speed", action="store_true",
                        help="skip the timings (refit on 1,000 images, one answer in the app on the demo folder)")
    parser.add_argument("--timings-only", action="store_true",
                        help="only the timings (with --resume: added to the results already there)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the folders (and the refit timing) already in benchmarks/results/NAME.json, "
                             "measured with the same methods, budgets and seed, and add the others")
    parser.add_argument("--rerun", action="store_true",
                        help="with --resume: measure the folders of the parts asked for again (e.g. after a new "
                             "model), keeping the other parts")
    parser.add_argument("--name", default="teach")
    parser.add_argument("--merge", nargs="+", default=[], metavar="NAME",
                        help="with --resume: also keep the folders measured by runs saved as NAME (e.g. the same "
                             "methods on other alphabets in a parallel process, with --name NAME --alphabets ...)")
    parser.add_argument("--prior-answers", type=float, default=None,
                        help="how many answers the model's own P(same) is worth when answers recalibrate it "
                             "(default: the package's PRIOR_ANSWERS); for choosing that constant")
    parser.add_argument("--relearn-steps", type=int, default=None,
                        help="self-training steps of each relearning (default: the package's RELEARN_STEPS); for "
                             "choosing that constant")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.prior_answers is not None:
        questions_module.PRIOR_ANSWERS = args.prior_answers
    budgets = sorted(set(args.budgets) | {0})
    notes = patch_baselines() if {"cobras", "npu"} & set(args.methods) else []
    data = {"methods": list(args.methods), "budgets": budgets, "seed": args.seed,
            "machine": machine_description(), "patches": notes, "seconds": 0.0, "results": {},
            "titles": {}, "speed": None, "app_speed": None, "runs": []}
    previous = RESULTS / f"{args.name}.json"
    if args.resume and previous.is_file():
        old = json.loads(previous.read_text())
        if (old.get("methods"), old.get("budgets"), old.get("seed")) == (data["methods"], budgets, args.seed):
            data.update({k: old[k] for k in ("seconds", "results", "titles", "speed", "app_speed", "runs")
                         if k in old})
            for rows in data["results"].values():
                with_int_budgets(rows)
        else:
            print(f"{previous} has other methods, budgets or seed: starting afresh", flush=True)
        for other in args.merge:
            part = json.loads((RESULTS / f"{other}.json").read_text())
            if (part.get("methods"), part.get("budgets"), part.get("seed")) != (data["methods"], budgets, args.seed):
                raise SystemExit(f"{other}.json has other methods, budgets or seed than {previous.name}")
            for key, rows in part["results"].items():
                data["results"].setdefault(key, {}).update(with_int_budgets(rows))
                data["titles"].setdefault(key, part["titles"][key])
            data["seconds"] += part["seconds"]
            data["runs"] += part["runs"]
    data["runs"].append({"args": vars(args), "load_average_start": os.getloadavg()})
    started = time.perf_counter()

    def save():
        data["seconds"] += time.perf_counter() - save.last
        save.last = time.perf_counter()
        data["runs"][-1]["load_average_end"] = os.getloadavg()
        write_results(args.name, data, render(data))

    save.last = started

    def run_part(part: str, title: str, folders: list[Path], model) -> None:
        rows = data["results"].setdefault(part, {})
        data["titles"][part] = title
        for folder, name in folders:
            if name in rows and not args.rerun:
                print(f"{name}: kept from {previous.name}", flush=True)
                continue
            print(name, flush=True)
            rows[name] = run_folder(folder, model, args.methods, budgets, args.seed, args.relearn_steps)
            rows[name]["load_average"] = os.getloadavg()
            save()  # after every folder: a stopped run keeps what it measured

    if args.only in (None, "omniglot") and not args.timings_only:
        model = load_similarity_model(args.omniglot_model)
        folders = alphabet_folders(Path(args.omniglot))
        if args.alphabets:
            folders = [f for f in folders if f.name in args.alphabets]
        which = "the 10" if len(folders) == 10 else f"{len(folders)} of the 10"
        run_part("omniglot", f"Omniglot, {which} development alphabets (model `omniglot`), K unknown",
                 [(f, f.name) for f in folders], model)
    if args.only in (None, "photos") and not args.timings_only:
        if args.photo_model in list_models() or Path(args.photo_model).is_file():
            model = load_similarity_model(args.photo_model)
            with tempfile.TemporaryDirectory() as tmp:
                folder = photo_subset(Path(args.photos), args.photo_classes, args.photo_per_class, Path(tmp) / "photos")
                classes = subfolders(folder)
                n_images = sum(1 for c in classes for f in c.rglob("*") if f.is_file())
                subset = "" if folder == Path(args.photos) else \
                    f" (subset: the first {len(classes)} classes, first {args.photo_per_class or 'all'} images of each)"
                run_part("photos", f"Photos, {len(classes)} classes of Tiny ImageNet's `novel-dev`, {n_images:,} "
                         f"images{subset} (model `{args.photo_model}`), K unknown", [(folder, "novel-dev")], model)
        else:
            print(f"photo model {args.photo_model!r} not found: photo part skipped", flush=True)
    if not args.no_speed and args.only in (None, "omniglot"):
        data["speed"] = refit_speed(Path(args.omniglot), load_similarity_model(args.omniglot_model), args.seed)
        data["speed"]["threads"] = args.threads
        print("refit speed", data["speed"], flush=True)
        save()
        data["app_speed"] = app_speed(ROOT / "demo_data" / "omniglot_keble", args.seed)
        data["app_speed"]["threads"] = args.threads
        print("app speed", data["app_speed"], flush=True)
    save()
    print(render(data))


if __name__ == "__main__":
    main()
