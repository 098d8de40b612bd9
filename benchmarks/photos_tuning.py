"""Which of the pretrained encoder's blocks the `photos` recipe trains: measured on held-out source classes.

Each variant trains the `photos` recipe (`l2c_explorer.recipes`) through `SimilarityLearner.fit` on a seeded
sample of `--per-class` photos of every Tiny ImageNet source class, with the recipe's 25 classes held out
(the same split as the shipped model), changing only how many of the encoder's last blocks train with the
top (`tuned_blocks`: 0 = the frozen encoder and a linear top; 1 = stage 7 and the head convolution; 5 = stages
6 and 7 and the head convolution) and the epochs. Each model then embeds 50 photos of each held-out class;
scores: k-means accuracy with K known (mean of 3 seeds) on those embeddings, our discovery with K known on
them (the recipe's discovery settings, as `benchmarks/photos_recipe.py`), and the pair ROC-AUC the training
measured on the held-out classes. Never measured on novel-dev, birds-dev or seedlings-dev.

    python benchmarks/photos_tuning.py [--per-class 60] [--threads 2]

Writes benchmarks/results/photos_tuning.{json,md}.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import add_common_flags, kmeans_accuracy, label_ids, machine_description, subfolders, write_results
from datasets import TINY_SOURCE, held_out_photo_folder

from l2c_explorer.clustering import L2CClusterer
from l2c_explorer.metrics import cluster_accuracy
from l2c_explorer.recipes import similarity_recipe
from l2c_explorer.similarity_learner import SimilarityLearner
from l2c_explorer.store import read_folder

# name -> (what it trains, changes to the `photos` recipe)
VARIANTS = {
    "frozen": ("the frozen encoder and a linear top (the recipe before tuning)", {"tuned_blocks": 0}),
    "stage 7": ("stage 7 (one block) and the head convolution, with the top", {"tuned_blocks": 1}),
    "stages 6-7": ("stages 6 and 7 (five blocks) and the head convolution, with the top", {"tuned_blocks": 5}),
}


def scores(model, folder: Path, scratch: Path) -> dict:
    """k-means (3 seeds) and our discovery, K known, on the model's unit embeddings of a labelled folder."""
    store = read_folder(folder, scratch / "held.u8", size=model.preprocessing.size, channels=3, labelled=True,
                        follow_links=True)
    labels = label_ids(store.labels)
    k = int(labels.max()) + 1
    emb = F.normalize(model.embed(store.rows(0, len(store))), dim=1).numpy()
    kmeans = kmeans_accuracy(emb, labels, k=k, seeds=3)
    path = model.save(scratch / "variant")
    ours = L2CClusterer(similarity=str(path), n_clusters=k).fit_embeddings(emb, labels=list(store.labels))
    store.file.unlink()
    return {"kmeans": kmeans, "ours": float(cluster_accuracy(labels, ours.labels_))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(TINY_SOURCE), help="the Tiny ImageNet source classes")
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--epochs", type=int, nargs="+", default=[2])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    add_common_flags(parser, threads=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    recipe = similarity_recipe("photos")
    source = Path(args.source)
    names = [p.name for p in subfolders(source)]
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        folder, held = held_out_photo_folder(source, scratch / "held")
        for name in args.variants:
            for epochs in args.epochs:
                t0 = time.perf_counter()
                learner = SimilarityLearner(**{**recipe, **VARIANTS[name][1], "max_images_per_class": args.per_class,
                                               "epochs": epochs}).fit(str(source))
                row = scores(learner.model_, folder, scratch) | {
                    "roc_auc": learner.holdout_metrics_.get("roc_auc"), "minutes": (time.perf_counter() - t0) / 60}
                results[f"{name}, {epochs} epochs"] = row | {"variant": name, "epochs": epochs}
                print(name, epochs, row, flush=True)
    total = time.perf_counter() - started
    lines = [
        f"Machine: {machine_description(args.threads)}. {args.per_class} photos of each of the {len(names)} source "
        f"classes (seeded sample) train each variant; scored on 50 photos of each of the recipe's {len(held)} "
        f"held-out classes; {total / 60:.1f} min.",
        "",
        "| variant | what trains | epochs | k-means ACC % (K known) | ours ACC % (K known) | pair ROC-AUC | minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        lines.append(f"| {r['variant']} | {VARIANTS[r['variant']][0]} | {r['epochs']} | {100 * r['kmeans']:.1f} | "
                     f"{100 * r['ours']:.1f} | {r['roc_auc']:.4f} | {r['minutes']:.1f} |")
    write_results("photos_tuning", {"args": vars(args), "results": results, "seconds": total,
                                    "machine": machine_description(args.threads)}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
