"""How the `photos` recipe was chosen: tops on the frozen pretrained encoder, compared on held-out source classes.

The shipped `photos` model is a top trained on the pooled features of a frozen ImageNet-pretrained encoder
(EfficientNet-Lite0, 224x224). This script compares the choices the recipe makes, on a seeded sample of
``--per-class`` photos of each of Tiny ImageNet's 152 source classes: the tops train on the 127 classes the
recipe trains on, and are scored on the 25 it holds out (the same split: seed 0). The novel-dev, birds-dev
and seedlings-dev classes are never looked at.

Each variant's embeddings of the held-out photos are scored by k-means accuracy with K = 25 (mean of 3
k-means seeds), by our discovery with K = 25 on them (``L2CClusterer.fit_embeddings``, the shipped model's
discovery settings) and by the pair ROC-AUC its training measured on the held-out classes. The encoder's
features alone (no top) are the reference; a larger encoder (EfficientNet-Lite2 at 260x260) is compared on
its features alone, with its cost.

    python benchmarks/photos_recipe.py --per-class 40

Writes benchmarks/results/photos_recipe.{json,md}.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import add_common_flags, kmeans_accuracy, machine_description, write_results
from datasets import TINY_SOURCE, photo_sample

from l2c_explorer.class_sampling import split_classes
from l2c_explorer.clustering import L2CClusterer
from l2c_explorer.data import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from l2c_explorer.metrics import cluster_accuracy
from l2c_explorer.nets import build_similarity_net
from l2c_explorer.pretrained import PRETRAINED, compute_trunk_features
from l2c_explorer.recipes import similarity_recipe
from l2c_explorer.similarity_learner import SimilarityLearner
from l2c_explorer.similarity_model import SimilarityModel
from l2c_explorer.similarity_training import embedding_pair_metrics
from l2c_explorer.store import read_folder

# name -> (what it tests, changes to the shipped recipe, views of the features it trains on)
VARIANTS = {
    "shipped": ("linear top starting as the identity on the 1280 features, lr 1e-4, 10 epochs", {}, 1),
    "higher lr": ("the same top, lr 1e-3", {"lr": 1e-3}, 1),
    "longer": ("the same top, 30 epochs", {"epochs": 30}, 1),
    "mirror view": ("the shipped top, trained on the features of each photo and of its mirror image", {}, 2),
    "to 256": ("a linear top to 256 dimensions, lr 1e-3 (weight decay 5e-4)",
               {"embedding_dim": 256, "lr": 1e-3, "weight_decay": 5e-4}, 1),
    "hidden 1024 to 128": ("a hidden ReLU layer of 1,024, then 128 dimensions, lr 1e-3 (weight decay 5e-4)",
                           {"hidden": 1024, "embedding_dim": 128, "lr": 1e-3, "weight_decay": 5e-4}, 1),
}


def encoder_features(folder: Path, name: str, size: int, scratch: Path, *, mirror: bool) -> tuple[torch.Tensor, list]:
    """(views, n, 1280) pooled features of a frozen encoder, and the images' classes; seconds per image too."""
    store = read_folder(folder, scratch / f"pixels-{name}-{size}.u8", size=size, channels=3, labelled=True,
                        follow_links=True)
    arch = {"type": "pretrained-cosine", "backbone": name, "backbone_sha256": PRETRAINED[name].sha256, "hidden": 0,
            "embedding_dim": 1280, "input_size": size}
    prep = Preprocessing(size=size, channels=3, invert=False, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    probe = SimilarityModel(build_similarity_net(arch), prep, {"name": f"{name} features", "architecture": arch})
    t0 = time.perf_counter()
    views = [compute_trunk_features(probe, store.rows, len(store), device=torch.device("cpu"))]
    seconds = (time.perf_counter() - t0) / len(store)
    if mirror:
        views.append(compute_trunk_features(probe, lambda a, b: store.rows(a, b).flip(-1), len(store),
                                            device=torch.device("cpu")))
    store.file.unlink()
    return torch.stack(views), list(store.labels), seconds, probe


def scores(emb: np.ndarray, labels: np.ndarray, k: int, model: SimilarityModel, scratch: Path) -> dict:
    """k-means and our discovery (K known; the package's discovery settings) on unit embeddings (n, d)."""
    kmeans = kmeans_accuracy(emb, labels, k=k, seeds=3)
    path = model.save(scratch / "variant")
    ours = L2CClusterer(similarity=str(path), n_clusters=k).fit_embeddings(emb, labels=[str(v) for v in labels])
    return {"kmeans": kmeans, "ours": float(cluster_accuracy(labels, ours.labels_))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(TINY_SOURCE), help="the Tiny ImageNet source classes")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--no-lite2", action="store_true", help="skip the larger encoder")
    add_common_flags(parser, threads=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    recipe = similarity_recipe("photos")
    with tempfile.TemporaryDirectory() as scratch:
        folder = photo_sample(Path(args.source), args.per_class, Path(scratch))
        features, classes, lite0_seconds, lite0 = encoder_features(folder, recipe["backbone"], recipe["image_size"],
                                                            Path(scratch), mirror=True)
        names = sorted(set(classes))
        ids = np.array([names.index(c) for c in classes])
        g = torch.Generator().manual_seed(0)
        train, held = split_classes(np.arange(len(names)), recipe["holdout"], g)  # the recipe's split, seed 0
        held_mask = np.isin(ids, held)
        held_labels = ids[held_mask]
        results = {"features alone": scores(F.normalize(features[0, held_mask], dim=1).numpy(), held_labels, len(held),
                                            lite0, Path(scratch))}
        results["features alone"]["seconds_per_image"] = lite0_seconds
        print("features alone", results["features alone"], flush=True)
        train_mask = np.isin(ids, train)
        for name in args.variants:
            _, changes, views = VARIANTS[name]
            t0 = time.perf_counter()
            learner = SimilarityLearner(**(recipe | changes | {"holdout": 0})).fit_features(
                features[:views, train_mask], [classes[i] for i in np.flatnonzero(train_mask)])
            seconds = time.perf_counter() - t0
            model = learner.model_
            with torch.no_grad():
                emb = F.normalize(model.net.encoder.from_features(features[0, held_mask]), dim=1).numpy()
            pairs = embedding_pair_metrics(model, torch.from_numpy(emb), held_labels)
            results[name] = scores(emb, held_labels, len(held), model, Path(scratch)) | {
                "roc_auc": pairs["roc_auc"], "seconds": seconds}
            print(name, results[name], flush=True)
        if not args.no_lite2:
            held_folder = Path(scratch) / "held"
            for c in np.array(names)[held]:
                (held_folder / c).parent.mkdir(parents=True, exist_ok=True)
                (held_folder / c).symlink_to((folder / c).resolve(), target_is_directory=True)
            lite2, lite2_classes, lite2_seconds, lite2_model = encoder_features(
                held_folder, "efficientnet-lite2", PRETRAINED["efficientnet-lite2"].native_size, Path(scratch),
                mirror=False)
            lite2_ids = np.array([names.index(c) for c in lite2_classes])
            results["lite2 features alone"] = scores(F.normalize(lite2[0], dim=1).numpy(), lite2_ids, len(held),
                                                     lite2_model, Path(scratch))
            results["lite2 features alone"]["seconds_per_image"] = lite2_seconds
            print("lite2 features alone", results["lite2 features alone"], flush=True)
    total = time.perf_counter() - started
    lines = [
        f"Machine: {machine_description(args.threads)}. {args.per_class} photos of each of the 152 source classes "
        f"(seeded sample); tops trained on the recipe's 127 training classes, scored on its {len(held)} held-out "
        f"classes ({int(held_mask.sum())} photos); {total / 60:.1f} min.",
        "",
        "| variant | what | k-means ACC % (K known) | ours ACC % (K known) | pair ROC-AUC |",
        "|---|---|---|---|---|",
        f"| features alone | EfficientNet-Lite0's pooled features, no top "
        f"({1 / results['features alone']['seconds_per_image']:.0f} photos/s) | "
        f"{100 * results['features alone']['kmeans']:.1f} | {100 * results['features alone']['ours']:.1f} | – |",
    ]
    for name in args.variants:
        r = results[name]
        lines.append(f"| {name} | {VARIANTS[name][0]} | {100 * r['kmeans']:.1f} | {100 * r['ours']:.1f} | "
                     f"{r['roc_auc']:.4f} |")
    if "lite2 features alone" in results:
        r = results["lite2 features alone"]
        lines.append(f"| Lite2 features alone | EfficientNet-Lite2 at 260x260, no top "
                     f"({1 / r['seconds_per_image']:.0f} photos/s) | {100 * r['kmeans']:.1f} | {100 * r['ours']:.1f} | – |")
    write_results("photos_recipe", {"args": vars(args), "results": results, "seconds": total,
                                    "machine": machine_description(args.threads)}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
