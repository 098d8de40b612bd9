"""Seconds per self-training step against the images in its batch (the time-left prior of that stage).

A self-training step sees 5 images of each of up to 20 clusters, so a folder whose first clustering found
6 groups takes 30-image steps and one with 20 or more groups 100-image steps. This times
:func:`l2c_explorer.selftrain.self_train` with pseudo-labels of 2 to 30 groups on Omniglot drawings of the
evaluation set (times only, the labels are not used) and fits seconds per step = overhead + per image x
images, the split behind ``STAGE_COSTS["self-training"]`` and ``["self-training_image"]`` in
l2c_explorer/planning.py.

    python benchmarks/self_training_cost.py [--data ../shared/data/omniglot/images_evaluation/Kannada]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from common import add_common_flags, machine_description, write_results
from datasets import OMNIGLOT_EVALUATION

from l2c_explorer.selftrain import batch_images, self_train
from l2c_explorer.similarity_model import load_similarity_model

GROUPS = [2, 4, 6, 10, 15, 20, 30]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, data=OMNIGLOT_EVALUATION / "Kannada", data_help="a folder of drawings")
    parser.add_argument("--model", default="omniglot")
    parser.add_argument("--steps", type=int, default=40)
    add_common_flags(parser, threads=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_similarity_model(args.model)
    pixels = model.prepare(args.data).pixels
    n = len(pixels)
    self_train(model, pixels, np.arange(n) % 4, np.ones(n), steps=5)  # warm-up: first-call set-up
    rows = []
    for groups in GROUPS:
        t0 = time.perf_counter()
        self_train(model, pixels, np.arange(n) % groups, np.ones(n), steps=args.steps)
        rows.append({"groups": groups, "batch": batch_images(groups),
                     "seconds_per_step": (time.perf_counter() - t0) / args.steps})
        print(rows[-1], flush=True)
    batch = np.array([r["batch"] for r in rows], dtype=float)
    per_step = np.array([r["seconds_per_step"] for r in rows])
    per_image, overhead = np.polyfit(batch, per_step, 1)
    at_full = overhead + per_image * batch.max()
    load = [round(x, 2) for x in os.getloadavg()]
    lines = [
        f"Seconds per self-training step ({args.model} model, {n} drawings, {args.steps} steps each, "
        f"{machine_description(args.threads)}; load average at the end {load[0]}, {load[1]}, {load[2]}).",
        "",
        "| groups | images per step | ms per step |",
        "|---|---|---|",
        *[f"| {r['groups']} | {r['batch']} | {1000 * r['seconds_per_step']:.1f} |" for r in rows],
        "",
        f"Least-squares line: {1000 * overhead:.1f} ms + {1000 * per_image:.2f} ms per image; the overhead is "
        f"{overhead / at_full:.0%} of a {int(batch.max())}-image step.",
    ]
    write_results("self_training_cost", {"machine": machine_description(args.threads), "model": args.model,
                                         "images": n, "steps": args.steps, "load_average_at_end": load,
                                         "rows": rows, "overhead": overhead, "per_image": per_image,
                                         "overhead_share_at_full_batch": overhead / at_full},
                  "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
