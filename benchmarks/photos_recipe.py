"""How the `photos` recipe was chosen: short training runs compared on held-out source classes.

Each variant trains for ``--steps`` steps on 127 of Tiny ImageNet's 152 source classes (the split of the
shipped model: the same 25 classes held out, seed 0), then embeds 50 photos of each of the 25 held-out
classes (batch norm re-estimated on them, as discovery does) and scores the embeddings: k-means accuracy
with K = 25 (mean of 3 k-means seeds), leave-one-out nearest-neighbour accuracy and pair ROC-AUC. The
novel-dev classes are never looked at. Steps, not seconds, are compared; the seconds column says what each
variant costs.

    python benchmarks/photos_recipe.py --steps 1500 --jobs 2

Writes benchmarks/results/photos_recipe.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_description, write_results  # noqa: E402

# name -> (what it tests, changes to the base: small ResNet, 32x32, classifier + pair losses)
VARIANTS = {
    "base": ("classifier + pair losses, small ResNet (32-64-128-256, one block per stage), 32x32", {}),
    "pair only": ("pair losses only (the `omniglot` recipe's kind of training)", {"class_weight": 0.0}),
    "classifier only": ("classifier loss only (the pair head learns nothing)", {"pair_weight": 0.0}),
    "64x64, strided stem": ("64x64 input, first convolution with stride 2", {"image_size": 64, "stem_stride": 2}),
    "deeper": ("two blocks per stage (ResNet-18-like)", {"blocks": (2, 2, 2, 2)}),
    "wider": ("1.5x the widths (48-96-192-384)", {"widths": (48, 96, 192, 384)}),
}
PER_CLASS_EVAL = 50


def run_variant(name: str, steps: int, source: str, holdout: list[str]) -> dict:
    """Train one variant in this process (one thread) and score it; everything seeded."""
    import torch
    import torch.nn.functional as F
    from scipy.optimize import linear_sum_assignment
    from sklearn.cluster import KMeans
    from sklearn.metrics import roc_auc_score

    from l2c_explorer.augment import as_augmentation, augment_batch
    from l2c_explorer.data import channel_stats, load_image_folder, normalise, Preprocessing, to_unit
    from l2c_explorer.losses import pair_bce_loss
    from l2c_explorer.nets import CosinePairHead, ResNetEncoder, SimilarityNet
    from l2c_explorer.recipes import similarity_recipe
    from l2c_explorer.similarity import ClassBalancedSampler, ClassCentres, SimilarityModel

    torch.set_num_threads(1)
    torch.manual_seed(0)
    recipe = similarity_recipe("photos")
    opts = {"image_size": recipe["image_size"], "widths": recipe["widths"], "blocks": recipe["blocks"], "stem_stride": 1,
            "class_weight": recipe["class_weight"], "pair_weight": 1.0}
    opts.update(VARIANTS[name][1])
    data = load_image_folder(source, size=opts["image_size"], channels=3, labelled=True)
    labels = np.array(data.labels)
    train_mask = ~np.isin(labels, holdout)
    train_classes = sorted(set(labels[train_mask]))
    y_all = np.searchsorted(train_classes, labels[train_mask])
    pixels = data.pixels[torch.from_numpy(train_mask)]
    mean, std = channel_stats(pixels, False)
    prep = Preprocessing(size=opts["image_size"], channels=3, invert=False, mean=mean, std=std)
    encoder = ResNetEncoder(in_channels=3, widths=tuple(opts["widths"]), blocks=tuple(opts["blocks"]),
                            embedding_dim=128, stem_stride=opts["stem_stride"])
    net = SimilarityNet(encoder=encoder, head=CosinePairHead()).to(memory_format=torch.channels_last)
    centres = ClassCentres(n_classes=len(train_classes), dim=128)
    lr, wd = recipe["lr"], recipe["weight_decay"]
    optimizer = torch.optim.AdamW([{"params": net.encoder.parameters()},
                                   {"params": net.head.parameters(), "lr": lr * 20, "weight_decay": 0.0},
                                   {"params": centres.parameters(), "weight_decay": 0.0}], lr=lr, weight_decay=wd)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    g = torch.Generator().manual_seed(0)
    sampler = ClassBalancedSampler(y_all, classes_per_batch=recipe["classes_per_batch"],
                                   images_per_class=recipe["images_per_class"], generator=g)
    augmentation = as_augmentation(recipe["augmentation"])
    warmup = max(1, int(recipe["warmup"] * steps))
    started = time.perf_counter()
    for step in range(steps):
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))
        idx, y = sampler.sample()
        x = normalise(augment_batch(to_unit(pixels[idx], False), augmentation, generator=g), prep)
        net.train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            features = net.encoder(x.contiguous(memory_format=torch.channels_last))
        emb = F.normalize(features.float(), dim=1)
        loss = opts["pair_weight"] * pair_bce_loss(net.head(emb), y[:, None] == y[None, :])
        if opts["class_weight"]:
            classes = torch.from_numpy(y_all[idx.numpy()])
            loss = loss + opts["class_weight"] * F.cross_entropy(centres(emb), classes,
                                                                 label_smoothing=recipe["label_smoothing"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - started

    rng = np.random.default_rng(0)
    picks = np.concatenate([rng.choice(np.flatnonzero(labels == c), PER_CLASS_EVAL, replace=False) for c in holdout])
    y_eval = np.searchsorted(sorted(holdout), labels[picks])
    model = SimilarityModel(net.to(memory_format=torch.contiguous_format).eval(), prep, {})
    emb = model.embed(data.pixels[torch.from_numpy(picks)], device="cpu").numpy()

    def accuracy(pred):
        confusion = np.zeros((25, pred.max() + 1))
        np.add.at(confusion, (y_eval, pred), 1)
        rows, cols = linear_sum_assignment(-confusion)
        return confusion[rows, cols].sum() / len(pred)

    kmeans = float(np.mean([accuracy(KMeans(25, n_init=5, random_state=s).fit_predict(emb)) for s in range(3)]))
    cos = emb @ emb.T
    upper = np.triu_indices(len(emb), 1)
    auc = float(roc_auc_score((y_eval[:, None] == y_eval[None])[upper], cos[upper]))
    np.fill_diagonal(cos, -2)
    nearest = float((y_eval[cos.argmax(1)] == y_eval).mean())
    return {"variant": name, "steps": steps, "seconds": round(seconds, 1), "kmeans_acc": round(kmeans, 4),
            "nn_acc": round(nearest, 4), "roc_auc": round(auc, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="../shared/data/tiny-imagenet/source")
    parser.add_argument("--model", default="models/photos.safetensors",
                        help="the shipped model, whose card names the held-out classes")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--jobs", type=int, default=2, help="variants trained at once (one thread each)")
    args = parser.parse_args()

    from l2c_explorer.similarity import load_similarity_model

    holdout = load_similarity_model(args.model).card["trained_on"]["holdout_classes"]
    started = time.perf_counter()
    runs = []
    with ProcessPoolExecutor(args.jobs) as pool:
        pending = {pool.submit(run_variant, v, args.steps, args.source, holdout): v for v in args.variants}
        for done in as_completed(pending):  # the report is rewritten after each variant: nothing measured is lost
            runs.append(done.result())
            runs.sort(key=lambda r: args.variants.index(r["variant"]))
            report(args, runs, time.perf_counter() - started)
    print(json.dumps(runs, indent=1))


def report(args, runs: list[dict], total: float) -> None:
    measured = "" if len(runs) == len(args.variants) else f" ({len(runs)} of the {len(args.variants)} variants measured)"
    lines = [
        f"Machine: {machine_description(1)} ({args.jobs} variants at a time). {args.steps} training steps of 32 "
        f"classes x 4 photos each; scored on 25 held-out source classes x {PER_CLASS_EVAL} photos; "
        f"{total / 60:.1f} min in all{measured}.",
        "",
        "| variant | what it tests | k-means ACC % | nearest-neighbour ACC % | pair ROC-AUC | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(f"| {r['variant']} | {VARIANTS[r['variant']][0]} | {100 * r['kmeans_acc']:.1f} | "
                     f"{100 * r['nn_acc']:.1f} | {r['roc_auc']:.3f} | {r['seconds']:.0f} |")
    write_results("photos_recipe", {"args": vars(args), "runs": runs, "machine": machine_description(1),
                                    "seconds": total}, "\n".join(lines))
    print("\n".join(lines), flush=True)

if __name__ == "__main__":
    main()
