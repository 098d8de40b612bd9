"""The memory layout of the shipped models' convolutions on the CPU: contiguous (NCHW) against channels-last,
and batch norm folded into the convolutions for the embedding pass.

Discovery runs each model forward over the folder in three ways: the batch-norm pass (train mode, no
gradients), the embedding pass (eval mode) and the self-training steps (forward and backward on 100
augmented images). This times each in both layouts on random pixels (the cost does not depend on them)
and checks that the embeddings agree; the embedding pass also with the copy discovery embeds with
(``l2c_explorer.similarity_model.inference_copy``: channels-last, batch norm folded). It is how
``l2c_explorer.device.place`` and that copy were chosen.

    python benchmarks/conv_layout.py [--threads 2] [--repeats 5]

Writes benchmarks/results/conv_layout.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from common import add_common_flags, machine_description, write_results

from l2c_explorer.similarity_model import inference_copy, load_similarity_model
from l2c_explorer.similarity_training import train_one_step

BATCH = 512  # images per forward pass, as embedding does
STEP_IMAGES = 100  # 20 pseudo-classes x 5 images, a self-training step's batch


def best_seconds(run, repeats: int) -> float:
    run()  # warm-up: kernels chosen, memory allocated
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(name: str, repeats: int) -> dict:
    model = load_similarity_model(name)
    prep = model.preprocessing
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (BATCH, prep.channels, prep.size, prep.size), dtype=torch.uint8, generator=g)
    x = model.inputs(pixels)
    y = torch.arange(STEP_IMAGES) % 20
    row = {"model": name, "input": f"{prep.channels}x{prep.size}x{prep.size}"}
    outputs = {}
    for layout, fmt in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
        net = copy.deepcopy(model.net).to(memory_format=fmt).eval()
        inputs = x.contiguous(memory_format=fmt)
        with torch.no_grad():
            outputs[layout] = net.embed(inputs)
            row[f"embed_{layout}"] = best_seconds(lambda: net.embed(inputs), repeats)
            net.train()
            row[f"norm_{layout}"] = best_seconds(lambda: net.embed(inputs), repeats)
        optimizer = torch.optim.Adam(net.encoder.parameters(), lr=1e-4)
        step = inputs[:STEP_IMAGES]
        row[f"step_{layout}"] = best_seconds(lambda: train_one_step(net, optimizer, step, y, proto_weight=1.0), repeats)
    fast = inference_copy(model.net, torch.device("cpu"))
    with torch.no_grad():
        outputs["folded"] = fast.embed(x)
        row["embed_folded"] = best_seconds(lambda: fast.embed(x), repeats)
    row["max_difference"] = max(float((outputs["contiguous"] - outputs[k]).abs().max()) for k in ("channels_last", "folded"))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, threads=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = [measure(name, args.repeats) for name in ("omniglot", "photos")]
    machine = machine_description(args.threads)
    lines = [
        f"Machine: {machine}. Seconds per batch (best of {args.repeats}): a forward pass over {BATCH} images in "
        f"eval mode (embedding) and in train mode (the batch-norm pass), and one self-training step on "
        f"{STEP_IMAGES} images (forward, backward, Adam). Speed-up: contiguous / channels-last; the embedding also "
        "channels-last with each batch norm folded into its convolution (what discovery uses).",
        "",
        "| model | input | embedding s | speed-up | embedding, batch norm folded s | speed-up | batch-norm pass s | "
        "speed-up | training step s | speed-up | largest embedding difference |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r["model"], r["input"]]
        for what in ("embed", "norm", "step"):
            before, after = r[f"{what}_contiguous"], r[f"{what}_channels_last"]
            cells += [f"{before:.3f} -> {after:.3f}", f"{before / after:.2f}x"]
            if what == "embed":
                cells += [f"{r['embed_folded']:.3f}", f"{before / r['embed_folded']:.2f}x"]
        cells.append(f"{r['max_difference']:.1e}")
        lines.append("| " + " | ".join(cells) + " |")
    write_results("conv_layout", {"machine": machine, "rows": rows, "repeats": args.repeats}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
