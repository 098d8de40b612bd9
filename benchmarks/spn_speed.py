"""Similarity-model training speed: the authors' dense-pair formulation against ours, in one run.

The authors' SPN (L2C, ICLR 2018) runs a VGGS backbone (64-128-256-256 channels, 1024-d features) and
feeds the concatenated features of all N^2 ordered pairs of a batch to an MLP (2048 -> 4096, BN, ReLU,
4096 -> 2), trained with 2-class cross-entropy. Ours embeds each image once with a smaller encoder and
scores all pairs with one matrix product (sigmoid(scale * cos + bias)), trained with pair binary
cross-entropy.

Both are trained here on the same sequence of class-balanced batches (20 Omniglot background characters
x 5 drawings = 100 images, 10,000 ordered pairs) with the same augmentation, for the same number of
steps, then scored on held-out characters (the 10 evaluation alphabets) with the same protocol: 50
batches of 20 characters x 5 drawings, every unordered pair of distinct images, threshold 0.5, batch
norm on the evaluation images' own statistics. A third row gives our model trained for as long (in
seconds) as the authors' model took.

    python benchmarks/spn_speed.py --steps 150

Writes benchmarks/results/spn_speed.json and .md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from common import add_common_flags, machine_description, write_results
from datasets import OMNIGLOT

from l2c_explorer.augment import AffineJitter, augment_batch
from l2c_explorer.class_sampling import ClassBalancedSampler
from l2c_explorer.data import Preprocessing, channel_stats, load_image_folder, normalise, to_unit
from l2c_explorer.metrics import pair_scores
from l2c_explorer.nets import ConcatPairMLP, build_similarity_net, vggs_encoder
from l2c_explorer.options import TRAIN_SIMILARITY
from l2c_explorer.similarity_model import adapted_copy
from l2c_explorer.similarity_training import train_one_step

OUR_ARCH = {"type": "conv-cosine", "in_channels": 1, "widths": [32, 64, 128, 128], "embedding_dim": 128, "input_size": 32}


class AuthorsSPN(nn.Module):
    """VGGS backbone + concatenation pair MLP, as in the authors' code."""

    def __init__(self):
        super().__init__()
        self.backbone = vggs_encoder(in_channels=1)
        self.pairs = ConcatPairMLP(feature_dim=1024, hidden=4096)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, 1, 32, 32) -> (b*b, 2)
        return self.pairs(self.backbone(x))

    def prob_same(self, x: torch.Tensor) -> torch.Tensor:  # (b, 1, 32, 32) -> (b, b)
        b = x.shape[0]
        return torch.softmax(self(x), dim=1)[:, 1].view(b, b)  # row i*b+j -> pair (j, i); symmetric use


def authors_step(model: AuthorsSPN, optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    logits = model(x)
    target = (y[:, None] == y[None, :]).flatten().long()  # row i*b + j: same(y_i, y_j)
    loss = F.cross_entropy(logits, target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def batches(labels: np.ndarray, n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    sampler = ClassBalancedSampler(labels, classes_per_batch=20, images_per_class=5, generator=g)
    return [sampler.sample() for _ in range(n)]


def evaluate(prob_fn, inputs: torch.Tensor, labels: np.ndarray, seed: int = 0) -> dict:
    probs, same = [], []
    for idx, y in batches(labels, 50, seed):
        p = prob_fn(inputs[idx]).numpy()
        p = (p + p.T) / 2  # both orders of each pair
        iu = np.triu_indices(len(idx), k=1)
        probs.append(p[iu])
        same.append((y[:, None] == y[None, :]).numpy()[iu])
    return pair_scores(np.concatenate(probs), np.concatenate(same))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, data=OMNIGLOT, data_help="folder with images_background/ and images_evaluation/")
    parser.add_argument("--steps", type=int, default=150, help="training steps for both formulations (default 150)")
    parser.add_argument("--seed", type=int, default=0)
    add_common_flags(parser, threads=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = Path(args.data)

    train = load_image_folder(data / "images_background", size=32, channels=1, labelled=True, class_depth=2)
    held = load_image_folder(data / "images_evaluation", size=32, channels=1, labelled=True, class_depth=2)
    train_unit = to_unit(train.pixels, invert=True)
    mean, std = channel_stats(train_unit)
    prep = Preprocessing(size=32, channels=1, invert=True, mean=mean, std=std)
    held_inputs = normalise(to_unit(held.pixels, invert=True), prep)
    labels, held_labels = train.label_ids(), held.label_ids()
    jitter = AffineJitter(**TRAIN_SIMILARITY.defaults.jitter)
    schedule = batches(labels, args.steps, args.seed)

    def batch_input(i: int, g: torch.Generator):
        idx, y = schedule[i % len(schedule)]
        return normalise(augment_batch(train_unit[idx], jitter, generator=g), prep), y

    results = {}

    # --- the authors' formulation
    torch.manual_seed(args.seed)
    authors = AuthorsSPN()
    opt = torch.optim.Adam(authors.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(args.seed)
    authors.train()
    times = []
    for i in range(args.steps):
        x, y = batch_input(i, g)
        t = time.perf_counter()
        authors_step(authors, opt, x, y)
        times.append(time.perf_counter() - t)
        if i % 25 == 0:
            print(f"authors step {i}/{args.steps}: {times[-1]:.2f} s", flush=True)
    authors_seconds = float(np.sum(times))

    def authors_probs(x):
        authors.train()  # the authors' SPN normalises with the batch's own statistics
        with torch.no_grad():
            return authors.prob_same(x)

    results["authors"] = {
        "seconds_per_step": float(np.median(times)),
        "train_seconds": authors_seconds,
        "steps": args.steps,
        "pairs": evaluate(authors_probs, held_inputs, held_labels),
    }

    # --- ours, same steps, then same wall-clock
    def train_ours(n_steps: int | None, seconds: float | None):
        torch.manual_seed(args.seed)
        net = build_similarity_net(OUR_ARCH)
        head = list(net.head.parameters())
        body = [p for p in net.parameters() if all(p is not h for h in head)]
        opt = torch.optim.Adam([{"params": body}, {"params": head, "lr": 2e-2}], lr=1e-3)
        g = torch.Generator().manual_seed(args.seed)
        times, i = [], 0
        sampler_g = torch.Generator().manual_seed(args.seed + 1)
        sampler = ClassBalancedSampler(labels, classes_per_batch=20, images_per_class=5, generator=sampler_g)
        while (n_steps is not None and i < n_steps) or (seconds is not None and sum(times) < seconds):
            if i < len(schedule):
                x, y = batch_input(i, g)
            else:
                idx, y = sampler.sample()
                x = normalise(augment_batch(train_unit[idx], jitter, generator=g), prep)
            net.train()
            t = time.perf_counter()
            train_one_step(net, opt, x, y)
            times.append(time.perf_counter() - t)
            i += 1
        adapted = adapted_copy(net, held_inputs, torch.device("cpu"))

        def probs(x, adapted=adapted):
            with torch.no_grad():
                return torch.sigmoid(adapted.pair_logits(x))

        return {"seconds_per_step": float(np.median(times)), "train_seconds": float(np.sum(times)), "steps": i,
                "pairs": evaluate(probs, held_inputs, held_labels)}

    results["ours_same_steps"] = train_ours(args.steps, None)
    results["ours_same_time"] = train_ours(None, authors_seconds)
    ratio = results["authors"]["seconds_per_step"] / results["ours_same_steps"]["seconds_per_step"]
    results["speedup_per_step"] = ratio
    results["machine"] = machine_description(args.threads)
    results["protocol"] = __doc__.split("\n\n")[2].replace("\n", " ")

    rows = [
        ("authors: VGGS + concat MLP", results["authors"]),
        ("ours, same steps", results["ours_same_steps"]),
        ("ours, same training time", results["ours_same_time"]),
    ]
    lines = [
        f"Machine: {results['machine']}.",
        "",
        "| formulation | s / step (100 images, 10,000 pairs) | steps | train s | pair precision | recall | F1 | ROC-AUC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        p = r["pairs"]
        lines.append(
            f"| {name} | {r['seconds_per_step']:.3f} | {r['steps']} | {r['train_seconds']:.0f} | {p['precision']:.3f} | "
            f"{p['recall']:.3f} | {p['f1']:.3f} | {p['roc_auc']:.4f} |"
        )
    lines += ["", f"Speed-up per training step: **{ratio:.1f}x**."]
    write_results("spn_speed", results, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
