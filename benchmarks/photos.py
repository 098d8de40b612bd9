"""Photo benchmark: discover unseen categories of colour photographs, and compare with the baselines.

Three development sets, each a folder of category folders (names used for scoring only):

* ``tiny-imagenet/novel-dev``: 25 Tiny ImageNet classes never in the `photos` model's training (50 photos
  each). They are ImageNet-1k classes: the pretrained encoder the model stands on saw their labels.
* ``photos-clean/birds-dev``: 40 bird species of CUB-200-2011 that are not ImageNet-1k classes (45-60 each).
* ``photos-clean/seedlings-dev``: 11 plant seedling species (60 each), not ImageNet-1k classes either.

For each set and seed, in the same run:

* **ours**, K known and K unknown (estimated, at most ``--max-k``), with the shipped `photos` model;
* **the paper's pipeline** (``method="paper"``: the CCN on dense P(same) > 0.5 targets with 100 outputs and
  the dominant-cluster count) on the same model, K unknown and K known;
* **k-means on the frozen encoder's features** (the pooled features of the pretrained encoder the model
  stands on, as its package ships it, L2-normalised; K known): what a user gets from the backbone alone;
* **other `photos` models**: the previous one (the same top on the smaller, frozen EfficientNet-Lite0,
  ``benchmarks/models/photos-lite0.safetensors``), the first (trained from scratch,
  ``benchmarks/models/photos-scratch.safetensors``) and `photos-tuned` (Lite0 with its last two stages trained
  too, ``benchmarks/models/photos-tuned.safetensors``, not shipped): ours with each, K known and K unknown.

On birds-dev also the **cross-task** setting: a top trained on the frozen encoder (the recipe
`train-similarity FOLDER --backbone efficientnet-lite0` uses) on 20 of the 40 species (a fixed seeded split, ``--cross-seed``), then discovery of the other 20, K known and unknown.

Scores: clustering accuracy (Hungarian on final predictions; images in extra clusters count as errors),
NMI, ARI, |K_est - K_true| and seconds (each fit timed from the files, without the folder cache).

    python benchmarks/photos.py --seeds 1

Writes benchmarks/results/photos.json (every run) and photos.md (the tables).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import add_common_flags, class_folders, kmeans_labels, machine_description, scores, write_results
from datasets import DATA, link_folders
from datasets import PHOTO_SETS as SETS

from l2c_explorer.clustering import L2CClusterer
from l2c_explorer.embedding import trunk_features
from l2c_explorer.nets import build_similarity_net
from l2c_explorer.recipes import PRETRAINED_TOP, similarity_recipe
from l2c_explorer.similarity_learner import SimilarityLearner
from l2c_explorer.similarity_model import SimilarityModel, load_similarity_model
from l2c_explorer.store import read_folder

HERE = Path(__file__).resolve().parent
LITE0 = HERE / "models" / "photos-lite0.safetensors"
PREVIOUS = HERE / "models" / "photos-scratch.safetensors"
TUNED = HERE / "models" / "photos-tuned.safetensors"
METHODS = ("ours-known", "ours-unknown", "ours-unknown-cached", "paper-known", "paper-unknown", "kmeans-backbone",
           "lite0-known", "lite0-unknown", "tuned-known", "tuned-unknown", "previous-known", "previous-unknown")
LABELS = {
    "ours-known": "ours, K known",
    "ours-unknown": "ours, K estimated (first run, from the files)",
    "ours-unknown-cached": "ours, K estimated, second run on the folder (its cache)",
    "paper-known": "paper's pipeline, K known",
    "paper-unknown": "paper's pipeline, K estimated (100 outputs)",
    "kmeans-backbone": "k-means on the frozen encoder's features, K known",
    "lite0-known": "previous `photos` model (the top on the frozen Lite0), ours, K known",
    "lite0-unknown": "previous `photos` model (the top on the frozen Lite0), ours, K estimated",
    "tuned-known": "`photos-tuned` model (the encoder's last two stages trained too; not shipped), ours, K known",
    "tuned-unknown": "`photos-tuned` model (the encoder's last two stages trained too; not shipped), ours, K estimated",
    "previous-known": "first `photos` model (from scratch), ours, K known",
    "previous-unknown": "first `photos` model (from scratch), ours, K estimated",
    "cross-known": "cross-task: top trained on the other 20 species, K known",
    "cross-unknown": "cross-task: top trained on the other 20 species, K estimated",
}


def scored(y_true, labels, k_true: int, seconds: float) -> dict:
    """The scores of one run (:func:`common.scores`), K against the number of class folders ``k_true``."""
    s = scores(y_true, labels)
    return {"acc": s["acc"], "nmi": s["nmi"], "ari": s["ari"], "k_true": k_true, "k_est": s["k_pred"],
            "k_error": abs(s["k_pred"] - k_true), "seconds": seconds}


def discover(folder: Path, model, *, k: int | None, method: str, seed: int, max_k: int, device: str,
             k_true: int, cache=False) -> dict:
    t0 = time.perf_counter()
    clusterer = L2CClusterer(similarity=model, n_clusters=k, max_clusters=max_k, method=method, device=device,
                             random_state=seed, cache=cache, follow_links=True).fit(folder, labelled=True)
    result = scored(clusterer.true_labels_, clusterer.labels_, k_true, time.perf_counter() - t0)
    result["timings"] = clusterer.timings_
    return result


def kmeans_on_backbone(folder: Path, model, *, seed: int, device: str, k_true: int, scratch: Path) -> dict:
    """k-means (K known) on the frozen encoder's pooled features, L2-normalised: the backbone alone, as its
    package ships it (without the blocks a model tuned)."""
    arch = {**model.card["architecture"], "tuned_blocks": 0}
    model = SimilarityModel(build_similarity_net(arch), model.preprocessing, {"architecture": arch})

    t0 = time.perf_counter()
    p = model.preprocessing
    store = read_folder(folder, scratch / f"pixels-{folder.name}-{seed}.u8", size=p.size, channels=p.channels,
                        labelled=True, follow_links=True)
    feats = torch.nn.functional.normalize(trunk_features(model, store, device=torch.device("cpu")), dim=1).numpy()
    labels = kmeans_labels(feats, k_true, seed=seed)
    store.file.unlink()
    return scored(store.labels, labels, k_true, time.perf_counter() - t0)


def run_set(folder: Path, model, earlier: dict, *, seed: int, max_k: int, device: str, scratch: Path) -> dict:
    """Every method on one folder. Ours with K estimated runs first and from the files (no cache): its seconds
    are a first run's; the others share a folder cache, which the next row times as a second run."""
    k_true = len(class_folders(folder))
    cache = str(scratch / f"cache-{folder.name}-{seed}")
    out = {"ours-unknown": discover(folder, model, k=None, method="graph", seed=seed, max_k=max_k, device=device,
                                    k_true=k_true)}
    out["ours-known"] = discover(folder, model, k=k_true, method="graph", seed=seed, max_k=max_k, device=device,
                                 k_true=k_true, cache=cache)  # fills the cache
    out["ours-unknown-cached"] = discover(folder, model, k=None, method="graph", seed=seed, max_k=max_k,
                                          device=device, k_true=k_true, cache=cache)  # a second run: from it
    for name, m, method in (("ours", model, "graph"), ("paper", model, "paper"),
                            *((name, m, "graph") for name, m in earlier.items())):
        if m is None:
            continue
        for kmode in ("known", "unknown"):
            if f"{name}-{kmode}" not in out:
                out[f"{name}-{kmode}"] = discover(folder, m, k=k_true if kmode == "known" else None, method=method,
                                                  seed=seed, max_k=max_k, device=device, k_true=k_true, cache=cache)
    out["kmeans-backbone"] = kmeans_on_backbone(folder, model, seed=seed, device=device, k_true=k_true,
                                                scratch=scratch)
    return out


def cross_task(birds: Path, *, seed: int, cross_seed: int, max_k: int, device: str, scratch: Path) -> dict:
    """Train a top with the photos recipe on half the species, discover the other half."""
    species = class_folders(birds)
    order = np.random.default_rng(cross_seed).permutation(len(species))
    train = link_folders([species[i] for i in sorted(order[: len(species) // 2])], scratch / f"cross-train-{seed}")
    test = link_folders([species[i] for i in sorted(order[len(species) // 2 :])], scratch / f"cross-test-{seed}")
    t0 = time.perf_counter()
    recipe = similarity_recipe(PRETRAINED_TOP) | {"holdout": 0, "random_state": seed, "follow_links": True}
    learner = SimilarityLearner(**recipe).fit(train)
    model_file = learner.model_.save(scratch / f"cross-{seed}.safetensors")
    train_seconds = time.perf_counter() - t0
    k_true = len(class_folders(test))
    cache = str(scratch / f"cache-cross-{seed}")  # the encoder's features of the 20 species, computed once
    out = {f"cross-{kmode}": discover(test, load_similarity_model(model_file), k=k_true if kmode == "known" else None,
                                      method="graph", seed=seed, max_k=max_k, device=device, k_true=k_true,
                                      cache=cache)
           for kmode in ("known", "unknown")}
    # the shipped model on the same 20 species, for comparison
    shipped = load_similarity_model("photos")
    out["shipped-on-test-known"] = discover(test, shipped, k=k_true, method="graph", seed=seed, max_k=max_k,
                                            device=device, k_true=k_true, cache=cache)
    out["train_seconds"] = train_seconds
    out["train_species"] = [species[i].name for i in sorted(order[: len(species) // 2])]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, data=DATA, data_help="the shared data folder")
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated: " + ", ".join(SETS))
    parser.add_argument("--model", default="photos", help="similarity model: shipped name or file")
    parser.add_argument("--previous", default=str(PREVIOUS), help="the first photos model ('' to skip)")
    parser.add_argument("--lite0", default=str(LITE0), help="the previous photos model, on Lite0 ('' to skip)")
    parser.add_argument("--tuned", default=str(TUNED), help="the photos-tuned model ('' to skip)")
    add_common_flags(parser, seeds=1)
    parser.add_argument("--cross-seed", type=int, default=0, help="seed of the 20/20 split of birds-dev")
    parser.add_argument("--no-cross", action="store_true", help="skip the cross-task run on birds-dev")
    add_common_flags(parser, max_k=100, device="auto", threads=2)
    parser.add_argument("--name", default="photos", help="results file stem (default photos)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_similarity_model(args.model)
    earlier = {name: load_similarity_model(path) for name, path in (("lite0", args.lite0), ("tuned", args.tuned),
                                                                     ("previous", args.previous))
               if path and Path(path).is_file()}
    results: dict[str, list[dict]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for seed in range(args.seeds):
            for name in args.sets.split(","):
                folder = Path(args.data) / SETS[name]
                r = run_set(folder, model, earlier, seed=seed, max_k=args.max_k, device=args.device,
                            scratch=Path(scratch))
                if name == "birds-dev" and not args.no_cross:
                    r |= cross_task(folder, seed=seed, cross_seed=args.cross_seed, max_k=args.max_k,
                                    device=args.device, scratch=Path(scratch))
                r["seed"], r["load_average"] = seed, os.getloadavg()
                results.setdefault(name, []).append(r)
                print(f"{name:14s} seed {seed}: " + "  ".join(
                    f"{m} {100 * r[m]['acc']:.1f}/K{r[m]['k_est']}" for m in (*METHODS, "cross-known", "cross-unknown")
                    if m in r), flush=True)
                report(args, model, results, time.perf_counter() - started)


def summary_table(title: str, runs: list[dict]) -> list[str]:
    lines = [f"#### {title}", "", "| method | ACC % | NMI | ARI | K est (true) | mean abs K error | seconds |",
             "|---|---|---|---|---|---|---|"]
    for method in (*METHODS, "cross-known", "cross-unknown", "shipped-on-test-known"):
        rs = [r[method] for r in runs if method in r]
        if not rs:
            continue
        acc = np.array([100 * r["acc"] for r in rs])
        label = LABELS.get(method, "shipped `photos` model on the same 20 species, K known")
        lines.append(
            f"| {label} | **{acc.mean():.1f}**" + (f" ± {acc.std():.1f}" if len(rs) > 1 else "")
            + f" | {np.mean([r['nmi'] for r in rs]):.3f} | {np.mean([r['ari'] for r in rs]):.3f} | "
            f"{np.mean([r['k_est'] for r in rs]):.1f} ({np.mean([r['k_true'] for r in rs]):.0f}) | "
            f"{np.mean([r['k_error'] for r in rs]):.2f} | {np.mean([r['seconds'] for r in rs]):.1f} |"
        )
    return lines


DESCRIPTIONS = {
    "novel-dev": "Tiny ImageNet `novel-dev`: 25 classes, 1,250 photos (64x64). ImageNet-1k classes: the frozen "
                 "encoder's pretraining saw their labels (never the `photos` model's own training).",
    "birds-dev": "`birds-dev`: 40 CUB-200-2011 bird species that are not ImageNet-1k classes, 2,364 photos: no part "
                 "of the model has seen these categories.",
    "seedlings-dev": "`seedlings-dev`: 11 plant seedling species on gravel, 660 photos; not ImageNet-1k classes.",
}


def report(args, model, results: dict, total: float) -> None:
    card = model.card
    loads = [r["load_average"][0] for rs in results.values() for r in rs]
    lines = [
        f"Machine: {machine_description(args.threads)}; load average (1 min) after each set "
        f"{min(loads):.1f}-{max(loads):.1f}"
        + (" (other jobs shared the cores, so the seconds are upper bounds)." if max(loads) > os.cpu_count() else "."),
        f"Similarity model: `{model.name}` (sha256 {model.digest[:12]}…) on the "
        f"`{card['architecture'].get('backbone', '?')}` encoder"
        + (f" (its last {card['architecture']['tuned_blocks']} blocks trained with the top)"
           if card["architecture"].get("tuned_blocks") else " (frozen)")
        + f"; {args.seeds} seed(s); measured in {total / 60:.1f} min.",
        "",
    ]
    for name, runs in results.items():
        lines += summary_table(DESCRIPTIONS[name], runs) + [""]
        stages: dict[str, list[float]] = {}
        for r in runs:
            for stage, seconds in r["ours-unknown"]["timings"].items():
                stages.setdefault(stage, []).append(seconds)
        lines.append("Seconds per stage of ours, K estimated (mean): " + ", ".join(
            f"{stage.replace('_', '-')} {np.mean(v):.1f}" for stage, v in stages.items()) + ".")
        lines.append("")
    write_results(args.name, {"args": vars(args), "model_sha256": model.digest, "seconds": total,
                              "machine": machine_description(args.threads), "results": results}, "\n".join(lines))


if __name__ == "__main__":
    main()
