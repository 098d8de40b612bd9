"""Training speed of the `photos-scratch` recipe's network (the previous photo model) on this machine: float32 against bfloat16 autocast, and
contiguous against channels-last memory, and what that makes the recipe's training time.

Each variant runs the recipe's real training step (the same network, batch of 32 classes x 4 photos,
augmentation, pair and classifier losses, AdamW) on Tiny ImageNet photos for ``--steps`` steps after a
warm-up, and reports photos per second; the recipe's training time is its steps at that speed.

    python benchmarks/photos_speed.py --steps 40 --threads 2

Writes benchmarks/results/photos_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import add_common_flags, machine_description, subfolders, write_results
from datasets import TINY_SOURCE

from l2c_explorer.augment import as_augmentation, augment_batch
from l2c_explorer.class_sampling import ClassBalancedSampler
from l2c_explorer.data import Preprocessing, channel_stats, load_image_folder, normalise, to_unit
from l2c_explorer.device import bf16_supported
from l2c_explorer.nets import build_similarity_net
from l2c_explorer.recipes import similarity_recipe
from l2c_explorer.similarity_learner import SimilarityLearner
from l2c_explorer.similarity_training import ClassCentres, train_one_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, data=TINY_SOURCE, data_help="a folder of photo classes")
    parser.add_argument("--classes", type=int, default=40, help="classes read (speed does not depend on them)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    add_common_flags(parser, threads=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    recipe = similarity_recipe("photos-scratch")  # the from-scratch network (the shipped model is a top on a frozen encoder)
    folders = subfolders(args.data)[: args.classes]
    with tempfile.TemporaryDirectory() as scratch:
        for f in folders:  # copies: the folder reader does not follow links to folders
            shutil.copytree(f, Path(scratch) / f.name)
        data = load_image_folder(scratch, size=recipe["image_size"], channels=3, labelled=True)
    labels = data.label_ids()
    mean, std = channel_stats(data.pixels)
    prep = Preprocessing(size=recipe["image_size"], channels=3, invert=False, mean=mean, std=std)
    augmentation = as_augmentation(recipe["augmentation"])
    # the recipe's network, freshly initialised from the architecture record its model file would store
    params = SimilarityLearner(**{k: v for k, v in recipe.items() if k != "holdout"}).get_params()
    assert params["backbone"] == "resnet", "the photos-scratch recipe trains a ResNet"
    arch = {"type": "resnet-cosine", "in_channels": params["channels"], "widths": list(params["widths"]),
            "blocks": list(params["blocks"]), "stem_stride": params["stem_stride"],
            "embedding_dim": params["embedding_dim"], "input_size": params["image_size"]}
    batch = recipe["classes_per_batch"] * recipe["images_per_class"]
    rows = []
    for mixed in (False, True):
        for channels_last in (False, True):
            if mixed and not bf16_supported(torch.device("cpu")):
                continue
            torch.manual_seed(0)
            g = torch.Generator().manual_seed(0)
            net = build_similarity_net(arch)
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            net = net.to(memory_format=fmt)
            centres = ClassCentres(n_classes=len(folders), dim=recipe.get("embedding_dim", 128))
            optimizer = torch.optim.AdamW([*net.parameters(), *centres.parameters()], lr=recipe["lr"],
                                          weight_decay=recipe["weight_decay"])
            sampler = ClassBalancedSampler(labels, classes_per_batch=recipe["classes_per_batch"],
                                           images_per_class=recipe["images_per_class"], generator=g)
            times = []
            for step in range(args.warmup + args.steps):
                started = time.perf_counter()
                idx, y = sampler.sample()
                x = normalise(augment_batch(to_unit(data.pixels[idx], False), augmentation, generator=g), prep)
                net.train()
                train_one_step(net, optimizer, x.contiguous(memory_format=fmt), y, classes=torch.from_numpy(labels[idx]),
                               centres=centres, class_weight=recipe["class_weight"], mixed_precision=mixed)
                if step >= args.warmup:
                    times.append(time.perf_counter() - started)
            rate = batch / float(np.median(times))
            rows.append({"bfloat16": mixed, "channels_last": channels_last, "photos_per_second": round(rate, 1)})
            print(rows[-1], flush=True)

    steps = int(recipe["epochs"] * (127 * 400 // batch))  # the recipe's epochs of its 127 training classes
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    lines = [f"Machine: {machine_description(args.threads)}; load average during the run: {load}. Median of "
             f"{args.steps} training steps of {batch} photos each (the `photos` recipe's network and step).", "",
             "| bfloat16 autocast | channels-last | photos per second | the recipe's training time |",
             "|---|---|---|---|"]
    for r in rows:
        minutes = steps * batch / r["photos_per_second"] / 60
        lines.append(f"| {'yes' if r['bfloat16'] else 'no'} | {'yes' if r['channels_last'] else 'no'} | "
                     f"{r['photos_per_second']:.0f} | {minutes:.0f} min |")
    write_results("photos_speed", {"args": vars(args), "rows": rows, "recipe_steps": steps, "batch": batch,
                                   "machine": machine_description(args.threads), "load": load}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
