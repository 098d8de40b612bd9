"""What limits the photo results: how well the similarity model tells unseen categories apart, photos
against Omniglot, measured on the model's embeddings before any clustering.

For each folder, from the model's unit embeddings (batch-norm adapted to the folder, as discovery does):

* **pair ROC-AUC**: P(same category) from the model's pair head, over every pair of images;
* **mean P(same)** of the pairs that do share a category and of those that do not (the K estimate and
  the clustering targets read these probabilities and the graph built from them);
* **same-category neighbours**: the share of each image's 10 nearest neighbours (cosine) that show its
  category: the graph every later stage is built on cannot be purer than this;
* **k-means on the embeddings** (K known, 10 starts): clustering accuracy with no learning at all;
* **ours, K known**: the accuracy the discovery benchmarks measured on the same folders (benchmarks/
  results/photos.json, omniglot.json), copied here for the comparison, not rerun.

Folders: the 25 `novel-dev` photo classes (the photo benchmark's folder: 50 photos each), the photo
model's 25 held-out source classes (50 photos each, as benchmarks/photos_settings.py builds them) and the
10 Omniglot evaluation alphabets with the `omniglot` model. Nothing here is tuned: it only describes.

    python benchmarks/photos_limits.py [--threads 2]

Writes benchmarks/results/photos_limits.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, add_common_flags, kmeans_accuracy, machine_description, subfolders, write_results
from datasets import DATA, OMNIGLOT_EVALUATION, PHOTO_SETS, TINY_NOVEL, TINY_SOURCE, photo_validation_folders

from l2c_explorer.metrics import dense_pair_scores
from l2c_explorer.similarity_model import load_similarity_model

NEIGHBOURS = 10


def same_category_neighbours(emb: torch.Tensor, labels: np.ndarray, k: int = NEIGHBOURS) -> float:
    """Mean share of each image's ``k`` nearest neighbours (cosine, itself excluded) in its own category."""
    sims = emb @ emb.T
    sims.fill_diagonal_(-float("inf"))
    nearest = sims.topk(k, dim=1).indices.numpy()
    return float((labels[nearest] == labels[:, None]).mean())


def describe(model, folder: Path) -> dict:
    data = model.prepare(folder, labelled=True, follow_links=True)  # validation folders are links
    labels = np.asarray(data.labels)
    emb = model.embed(data.pixels, device="cpu")
    probs = model.pair_probabilities(emb).numpy()
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    k = len(np.unique(labels))
    return {
        "images": len(labels), "k": k,
        "pair_roc_auc": dense_pair_scores(probs, labels)["roc_auc"],
        "p_same_same": float(probs[same & off_diagonal].mean()),
        "p_same_different": float(probs[~same].mean()),
        "neighbours_same": same_category_neighbours(emb, labels),
        "kmeans_acc": kmeans_accuracy(emb.numpy(), labels),
    }


def recorded_ours(name: str, folder: str) -> float | None:
    """Mean accuracy of ours with K known on this folder in a committed discovery benchmark, if any."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    results = json.loads(path.read_text())
    if name == "omniglot":
        runs = results["results"].get("mcl-known", {}).get(folder, [])
        return float(np.mean([r["acc"] for r in runs])) if runs else None
    runs = [r["ours-known"]["acc"] for r in results["results"].get(folder, []) if "ours-known" in r]  # photos.py
    return float(np.mean(runs)) if runs else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, threads=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows = []
    photos = load_similarity_model("photos")
    omniglot = load_similarity_model("omniglot")
    rows.append({"data": "photos: 25 novel-dev classes", "model": "photos",
                 **describe(photos, TINY_NOVEL),
                 "ours_known": recorded_ours("photos", "novel-dev")})
    for name in ("birds-dev", "seedlings-dev"):
        rows.append({"data": f"photos: {name}", "model": "photos", **describe(photos, DATA / PHOTO_SETS[name]),
                     "ours_known": recorded_ours("photos", name)})
        print(rows[-1], flush=True)
    print(rows[-1], flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        held_out = photos.card["trained_on"]["holdout_classes"]
        folder = photo_validation_folders(TINY_SOURCE, held_out, Path(scratch), full=1, subsets=0)[0]
        rows.append({"data": "photos: the model's 25 held-out source classes", "model": "photos",
                     **describe(photos, folder), "ours_known": None})
        print(rows[-1], flush=True)
    for alphabet in subfolders(OMNIGLOT_EVALUATION):
        rows.append({"data": f"Omniglot: {alphabet.name}", "model": "omniglot", **describe(omniglot, alphabet),
                     "ours_known": recorded_ours("omniglot", alphabet.name)})
        print(rows[-1], flush=True)
    total = time.perf_counter() - started

    def pct(x):
        return "–" if x is None else f"{100 * x:.1f}"

    load = [round(x, 2) for x in os.getloadavg()]
    lines = [
        f"Machine: {machine_description(args.threads)}; {total:.0f} s. Models: `photos` "
        f"(sha256 {photos.digest[:12]}…), `omniglot` (sha256 {omniglot.digest[:12]}…). Load average at the end "
        f"{load[0]}, {load[1]}, {load[2]}.",
        "",
        f"| folder | images | K | pair ROC-AUC | mean P(same): same / different category | same-category share of "
        f"the {NEIGHBOURS} nearest neighbours | k-means on the embeddings, ACC % | ours, K known, ACC % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['data']} | {r['images']} | {r['k']} | {r['pair_roc_auc']:.3f} | {r['p_same_same']:.2f} / "
                     f"{r['p_same_different']:.3f} | {pct(r['neighbours_same'])}% | {pct(r['kmeans_acc'])} | "
                     f"{pct(r['ours_known'])} |")
    omni = [r for r in rows if r["model"] == "omniglot"]
    lines += ["", f"Omniglot mean: pair ROC-AUC {np.mean([r['pair_roc_auc'] for r in omni]):.3f}, same-category "
                  f"neighbours {100 * np.mean([r['neighbours_same'] for r in omni]):.1f}%, k-means "
                  f"{100 * np.mean([r['kmeans_acc'] for r in omni]):.1f}%."]
    write_results("photos_limits", {"machine": machine_description(args.threads), "seconds": total,
                                    "load_average_at_end": load, "neighbours": NEIGHBOURS, "rows": rows},
                  "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
