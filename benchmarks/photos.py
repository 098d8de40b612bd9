"""Photo benchmark: discover unseen categories of colour photographs, and compare with the baselines.

Protocol: the `photos` similarity model (learnt on Tiny ImageNet's `source` classes) is transferred to the
25 `novel-dev` classes, which it never saw (50 photos each, 1,250 images), and to random 10-class subsets
of them. For each folder and seed, in the same run:

* **ours**, K known and K unknown (estimated, at most ``--max-k``);
* **the paper's pipeline** (``method="paper"``: the CCN on dense P(same) > 0.5 targets with 100 outputs and
  the dominant-cluster count), K unknown, and K known;
* **k-means on the same model's embeddings** (K known; batch-norm adapted to the folder as ours);
* **k-means on raw pixels** (K known; the model's input size and normalisation).

Scores: clustering accuracy (Hungarian on final predictions; images in extra clusters are errors), NMI,
ARI, |K_est - K_true| and seconds. Folder names are used for scoring only.

    python benchmarks/photos.py --data ../shared/data/tiny-imagenet/novel-dev --seeds 3 --subsets 5

Writes benchmarks/results/photos.json (every run) and photos.md (the tables).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_description, write_results  # noqa: E402

from l2c_explorer.clustering import L2CClusterer  # noqa: E402
from l2c_explorer.data import model_input  # noqa: E402
from l2c_explorer.metrics import clustering_scores  # noqa: E402
from l2c_explorer.similarity import load_similarity_model  # noqa: E402

METHODS = ("ours-known", "ours-unknown", "paper-unknown", "paper-known", "kmeans-embeddings", "kmeans-pixels")
LABELS = {
    "ours-known": "ours, K known",
    "ours-unknown": "ours, K unknown",
    "paper-unknown": "paper's pipeline, K unknown (100 outputs)",
    "paper-known": "paper's pipeline, K known",
    "kmeans-embeddings": "k-means on the model's embeddings, K known",
    "kmeans-pixels": "k-means on raw pixels, K known",
}


def class_folders(data: Path) -> list[Path]:
    found = sorted(p for p in data.iterdir() if p.is_dir())
    if len(found) < 2:
        raise SystemExit(f"{data} needs one folder per class")
    return found


def subset_folder(classes: list[Path], scratch: Path, name: str) -> Path:
    """A folder of symlinks to the given class folders (the data is never copied)."""
    dest = scratch / name
    dest.mkdir(parents=True)
    for c in classes:
        (dest / c.name).symlink_to(c.resolve(), target_is_directory=True)
    return dest


def scored(y_true, labels, k_true: int, seconds: float) -> dict:
    s = clustering_scores(np.asarray(y_true), np.asarray(labels))
    k_est = int(len(np.unique(labels)))
    return {"acc": s["acc"], "nmi": s["nmi"], "ari": s["ari"], "k_true": k_true, "k_est": k_est,
            "k_error": abs(k_est - k_true), "seconds": seconds}


def kmeans_labels(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(k, n_init=10, random_state=seed).fit_predict(x)


def run_folder(folder: Path, model, *, seed: int, max_k: int, device: str) -> dict[str, dict]:
    k_true = sum(1 for c in folder.iterdir() if c.is_dir())
    out = {}
    for method in ("ours", "paper"):
        for kmode in ("known", "unknown"):
            t0 = time.perf_counter()
            clusterer = L2CClusterer(similarity=model, n_clusters=k_true if kmode == "known" else None,
                                     max_clusters=max_k, method="graph" if method == "ours" else "paper",
                                     device=device, random_state=seed,
                                     cache=False).fit(folder, labelled=True)  # each fit timed from the files
            out[f"{method}-{kmode}"] = scored(clusterer.true_labels_, clusterer.labels_, k_true,
                                              time.perf_counter() - t0)
            if method == "ours":
                out[f"{method}-{kmode}"]["timings"] = clusterer.timings_
    # baselines on the same images
    t0 = time.perf_counter()
    data = model.prepare(folder, labelled=True)
    emb = model.embed(data.pixels, device=device).numpy()
    out["kmeans-embeddings"] = scored(data.labels, kmeans_labels(emb, k_true, seed), k_true, time.perf_counter() - t0)
    t0 = time.perf_counter()
    pixels = model_input(data.pixels, model.preprocessing).flatten(1).numpy()
    out["kmeans-pixels"] = scored(data.labels, kmeans_labels(pixels, k_true, seed), k_true, time.perf_counter() - t0)
    return out


def summary_table(title: str, runs: list[dict[str, dict]]) -> list[str]:
    lines = [f"#### {title}", "", "| method | ACC % | NMI | ARI | K est (true) | mean abs K error | seconds |",
             "|---|---|---|---|---|---|---|"]
    for method in METHODS:
        rs = [r[method] for r in runs]
        acc = np.array([100 * r["acc"] for r in rs])
        lines.append(
            f"| {LABELS[method]} | **{acc.mean():.1f}** ± {acc.std():.1f} | {np.mean([r['nmi'] for r in rs]):.3f} | "
            f"{np.mean([r['ari'] for r in rs]):.3f} | {np.mean([r['k_est'] for r in rs]):.1f} "
            f"({np.mean([r['k_true'] for r in rs]):.0f}) | {np.mean([r['k_error'] for r in rs]):.2f} | "
            f"{np.mean([r['seconds'] for r in rs]):.1f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/tiny-imagenet/novel-dev", help="folder of class folders")
    parser.add_argument("--model", default="photos", help="similarity model: shipped name or file")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--subsets", type=int, default=5, help="random class subsets (besides all classes)")
    parser.add_argument("--subset-size", type=int, default=10)
    parser.add_argument("--max-k", type=int, default=100)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="photos", help="results file stem (default photos)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_similarity_model(args.model)
    classes = class_folders(Path(args.data))
    rng = np.random.default_rng(0)  # the subsets are fixed: the same for every seed and every method
    subsets = [sorted(rng.choice(len(classes), args.subset_size, replace=False)) for _ in range(args.subsets)]
    results: dict[str, list[dict]] = {"all": [], "subsets": []}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        # every seed on all classes first (the targets' folder), then the subsets; the results are written
        # after every folder, so a run cut short still reports what it measured
        subset_folders = [subset_folder([classes[i] for i in s], Path(scratch), f"subset{j}")
                          for j, s in enumerate(subsets)]
        runs = [("all", Path(args.data), seed) for seed in range(args.seeds)] + [
            ("subsets", folder, seed) for seed in range(args.seeds) for folder in subset_folders]
        for group, folder, seed in runs:
            r = run_folder(folder, model, seed=seed, max_k=args.max_k, device=args.device)
            r["folder"], r["seed"], r["load_average"] = folder.name, seed, os.getloadavg()
            results[group].append(r)
            print(f"{folder.name:12s} seed {seed}: " + "  ".join(
                f"{m} {100 * r[m]['acc']:.1f}/K{r[m]['k_est']}" for m in METHODS), flush=True)
            report(args, model, classes, subsets, results, time.perf_counter() - started, len(runs))


def report(args, model, classes, subsets, results: dict, total: float, n_planned: int) -> None:
    card = model.card
    done = len(results["all"]) + len(results["subsets"])
    loads = [r["load_average"][0] for rs in results.values() for r in rs]
    lines = [
        f"Machine: {machine_description(args.threads)}; load average (1 min) after each folder "
        f"{min(loads):.1f}-{max(loads):.1f}"
        + (" (other jobs shared the cores, so the seconds are upper bounds)." if max(loads) > os.cpu_count() else "."),
        f"Similarity model: `{model.name}` (sha256 {model.digest[:12]}…), trained in "
        f"{card.get('training', {}).get('seconds', '?')} s on {card.get('training', {}).get('device', '?')}.",
        f"Data: `{args.data}` ({len(classes)} classes); {args.seeds} seed(s); {args.subsets} random "
        f"{args.subset_size}-class subsets; {done} of {n_planned} folder runs measured in {total / 60:.1f} min.",
        "",
    ]
    lines += summary_table(f"All {len(classes)} classes ({results['all'][0]['ours-known']['k_true']} categories, "
                           f"mean of {len(results['all'])} seeds)", results["all"]) + [""]
    if results["subsets"]:
        lines += summary_table(f"Random {args.subset_size}-class subsets (mean over {len(results['subsets'])} "
                               "subset runs)", results["subsets"]) + [""]
    stages: dict[str, list[float]] = {}
    for r in results["all"]:
        for stage, seconds in r["ours-unknown"]["timings"].items():
            stages.setdefault(stage, []).append(seconds)
    lines.append("Seconds per stage of ours, K unknown, all classes (mean): " + ", ".join(
        f"{stage.replace('_', '-')} {np.mean(v):.1f}" for stage, v in stages.items()) + ".")
    write_results(args.name, {"args": vars(args), "model_sha256": model.digest, "seconds": total,
                              "machine": machine_description(args.threads),
                              "subsets": [list(map(int, s)) for s in subsets],
                              "n_planned": n_planned, "results": results}, "\n".join(lines))


if __name__ == "__main__":
    main()
