"""Omniglot cross-task benchmark: discover the characters of each evaluation alphabet, without labels.

Protocol (the L2C paper's cross-task experiment): a similarity model learnt on the background alphabets
(default: the shipped `omniglot` model) is transferred to each alphabet folder of ``--data`` separately;
the alphabet's characters are discovered with K known (``--k known``: the true number of characters)
and/or unknown (``--k unknown``: at most ``--max-k`` clusters, K estimated). Each alphabet is scored with
clustering accuracy (Hungarian matching on the final predictions; images in unmatched extra clusters count
as errors), NMI and |K_est - K_true|. Folder names are used for scoring only.

    python benchmarks/omniglot.py --data ../shared/data/omniglot/images_evaluation --seeds 3 --k both --loss mcl

``--data`` is any folder of alphabets, each a folder of character folders. Writes
benchmarks/results/omniglot.json (every run) and omniglot.md (the tables).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from common import (
    COLUMN,
    RESULTS,
    PUBLISHED_BY_KEY,
    PUBLISHED_MEANS,
    add_common_flags,
    alphabet_folders,
    machine_description,
    normalise_name,
    subfolders,
    write_results,
)
from datasets import OMNIGLOT_EVALUATION, shown

from l2c_explorer.clustering import L2CClusterer
from l2c_explorer.options import DISCOVER
from l2c_explorer.similarity_model import load_similarity_model


def run_one(folder: Path, model, *, k: int | None, loss: str, seed: int, max_k: int, device: str,
            self_training_steps: int) -> dict:
    started = time.perf_counter()
    clusterer = L2CClusterer(
        similarity=model, n_clusters=k, max_clusters=max_k, loss=loss, device=device, random_state=seed,
        self_training_steps=self_training_steps, cache=False,  # every fit reads and embeds: its stages are timed
    ).fit(folder, labelled=True)
    seconds = time.perf_counter() - started
    scores = clusterer.scores()
    return {
        "acc": scores["acc"],
        "nmi": scores["nmi"],
        "ari": scores["ari"],
        "k_true": scores["k_true"],
        "k_est": int(clusterer.n_clusters_),
        "k_error": abs(int(clusterer.n_clusters_) - scores["k_true"]),
        "seconds": seconds,
        "n_images": len(clusterer.paths_),
        "timings": clusterer.timings_,
    }


def mean_std(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.1f} ± {values.std():.1f}" if len(values) > 1 else f"{values.mean():.1f}"


def table(setting: str, runs: dict[str, list[dict]]) -> list[str]:
    loss, kmode = setting.split("-")
    lines = [
        f"#### {loss.upper()}, K {kmode}" + (" (at most 100 clusters, estimated)" if kmode == "unknown" else ""),
        "",
        "| alphabet | images | ACC % | NMI | K est | K true | seconds | published ACC % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    accs, nmis, kerrs, secs, pubs = [], [], [], [], []
    for name, rs in runs.items():
        acc = [100 * r["acc"] for r in rs]
        pub = PUBLISHED_BY_KEY.get(normalise_name(name), (None,) * 4)[COLUMN[setting]]
        lines.append(
            f"| {name} | {rs[0]['n_images']} | {mean_std(acc)} | {np.mean([r['nmi'] for r in rs]):.3f} | "
            f"{mean_std([r['k_est'] for r in rs])} | {rs[0]['k_true']} | {np.mean([r['seconds'] for r in rs]):.1f} | "
            f"{pub if pub is not None else '–'} |"
        )
        accs.append(np.mean(acc))
        nmis.append(np.mean([r["nmi"] for r in rs]))
        kerrs.append(np.mean([r["k_error"] for r in rs]))
        secs.append(np.mean([r["seconds"] for r in rs]))
        if pub is not None:
            pubs.append(pub)
    per_seed = [np.mean([100 * rs[s]["acc"] for rs in runs.values()]) for s in range(len(next(iter(runs.values()))))]
    lines.append(
        f"| **mean** | | **{np.mean(accs):.1f}** (seeds: {mean_std(per_seed)}) | {np.mean(nmis):.3f} | "
        f"mean abs K error **{np.mean(kerrs):.2f}** | | {np.mean(secs):.1f} | "
        f"{np.mean(pubs):.1f} on these alphabets; {PUBLISHED_MEANS[setting]} on the authors' 20 |"
    )
    stages: dict[str, list[float]] = {}
    for rs in runs.values():
        for r in rs:
            for stage, seconds in r["timings"].items():
                stages.setdefault(stage, []).append(seconds)
    lines += ["", "Seconds per alphabet and stage (mean): " + ", ".join(
        f"{stage.replace('_', '-')} {np.mean(v):.1f}" for stage, v in stages.items()) + "."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, data=OMNIGLOT_EVALUATION,
                     data_help="folder of alphabets, each a folder of character folders")
    parser.add_argument("--model", default="omniglot", help="similarity model: shipped name or file")
    add_common_flags(parser, seeds=3)
    parser.add_argument("--k", choices=("known", "unknown", "both"), default="both")
    parser.add_argument("--loss", choices=("mcl", "kcl", "both"), default="mcl")
    add_common_flags(parser, max_k=DISCOVER.defaults.max_clusters, device="auto", threads=2)
    parser.add_argument("--self-training-steps", type=int, default=DISCOVER.defaults.self_training_steps,
                        help="self-training steps of the similarity model on each alphabet (0: off)")
    parser.add_argument("--name", default="omniglot", help="results file stem (default omniglot)")
    parser.add_argument("--add", action="store_true",
                        help="keep the other settings (loss, K) already in benchmarks/results/NAME.json when they were "
                             "measured with the same model, seeds and data, and add these (the parts can run at "
                             "different times)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_similarity_model(args.model)
    folders = alphabet_folders(args.data)
    losses = ["mcl", "kcl"] if args.loss == "both" else [args.loss]
    kmodes = ["known", "unknown"] if args.k == "both" else [args.k]
    results: dict[str, dict[str, list[dict]]] = {}
    earlier_seconds = 0.0
    stored = RESULTS / f"{args.name}.json"
    if args.add and stored.is_file():
        old = json.loads(stored.read_text())
        same = (old.get("model_sha256") == model.digest and old["args"]["seeds"] == args.seeds
                and old["args"]["data"] == args.data)
        if same:
            results = old["results"]
            earlier_seconds = old["seconds"]
        else:
            print(f"{stored} was measured with another model, seeds or data: not kept", flush=True)
    started = time.perf_counter()
    for loss in losses:
        for kmode in kmodes:
            setting = f"{loss}-{kmode}"
            results[setting] = {}
            for folder in folders:
                k_true = len(subfolders(folder))
                runs = []
                for seed in range(args.seeds):
                    r = run_one(folder, model, k=k_true if kmode == "known" else None, loss=loss, seed=seed,
                                max_k=args.max_k, device=args.device,
                                self_training_steps=args.self_training_steps)
                    runs.append(r)
                    print(f"{setting:12s} {folder.name:32s} seed {seed}: ACC {100 * r['acc']:.1f} NMI {r['nmi']:.3f} "
                          f"K {r['k_est']}/{r['k_true']} {r['seconds']:.1f}s", flush=True)
                results[setting][folder.name] = runs
    total = time.perf_counter() - started + earlier_seconds

    card = model.card.get("training", {})
    lines = [
        f"Machine: {machine_description(args.threads)}.",
        f"Similarity model: `{model.name}` (sha256 {model.digest[:12]}…), trained in {card.get('seconds', '?')} s "
        f"on {card.get('device', '?')}.",
        f"Data: `{shown(args.data)}` ({len(folders)} alphabets); {args.seeds} seed(s) per alphabet; whole benchmark "
        f"{total / 60:.1f} min.",
        "",
    ]
    for setting, runs in results.items():
        lines += table(setting, runs) + [""]
    write_results(args.name, {"args": vars(args), "model_sha256": model.digest, "seconds": total,
                              "machine": machine_description(args.threads), "results": results}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
