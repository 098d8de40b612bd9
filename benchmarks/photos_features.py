"""What the frozen encoder's features can and cannot tell apart: k-means on variants of them, set by set.

Nothing trains here. For each folder, the package encoder's pooled features of every photo are computed
in several ways, L2-normalised, and clustered by k-means with K known (mean of 2 seeds):

* **which layer**: the pooled output of stage 5, 6 or 7, or of the head convolution (the features every
  model uses), and the four L2-normalised and concatenated;
* **input size**: photos read at 160, 224 (the encoder's own) or 320 pixels;
* **mirror**: each photo's features averaged with its mirror image's;
* **centred**: the folder's mean feature subtracted before normalising;
* **larger encoder**: EfficientNet-Lite2 at 192, 224 and its own 260 pixels (Tiny ImageNet's photos are
  64x64: every size enlarges them).

Folders: the `photos` model's 25 held-out source classes (50 photos each, as benchmarks/photos_tuning.py
builds them; the only folder a choice could be made on), and the three development sets, to show what
limits them (seedlings above all); nothing here is chosen on them.

    python benchmarks/photos_features.py [--threads 2]

Writes benchmarks/results/photos_features.{json,md}.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import add_common_flags, kmeans_accuracy, label_ids, machine_description, write_results
from datasets import DATA, held_out_photo_folder
from datasets import PHOTO_SETS as SETS

from l2c_explorer.data import IMAGENET_MEAN, IMAGENET_STD
from l2c_explorer.device import bf16_supported
from l2c_explorer.pretrained import PRETRAINED, pretrained_trunk
from l2c_explorer.store import read_folder


@torch.no_grad()
def stage_features(name: str, store, *, mirror: bool = False) -> list[torch.Tensor]:
    """Pooled outputs (n, c) of the encoder's last three stages and of its head convolution."""
    trunk = pretrained_trunk(name)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out: list[list[torch.Tensor]] = []
    for start in range(0, len(store), 64):
        x = store.rows(start, min(start + 64, len(store))).float() / 255
        x = ((x.flip(-1) if mirror else x) - mean) / std
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_supported(torch.device("cpu"))):
            h, pooled, done = trunk.forward_until(x.contiguous(memory_format=torch.channels_last), 0), [], 0
            for end in trunk.stage_ends[-3:]:  # stages 5, 6 and 7
                h, done = trunk.forward_blocks(h, done, end), end
                pooled.append(h.float().mean(dim=(2, 3)))
            pooled.append(trunk.forward_from(h, done).float())  # the head convolution, pooled
        out.append(pooled)
    return [torch.cat([batch[j] for batch in out]) for j in range(len(out[0]))]


# EfficientNet-Lite2 below and at its own input size (260): the `photos` recipe's input size is chosen on the
# held-out source classes' column
LITE2_SIZES = (192, 224, PRETRAINED["efficientnet-lite2"].native_size)


def kmeans(features: torch.Tensor, labels: np.ndarray, seeds: int = 2) -> float:
    """k-means accuracy % (K known, mean of ``seeds`` seeds) on the L2-normalised features."""
    return 100 * kmeans_accuracy(F.normalize(features.float(), dim=1).numpy(), labels, seeds=seeds, n_init=5)


def study(folder: Path, scratch: Path) -> dict:
    rows: dict[str, float] = {}
    for size in (160, 224, 320):
        store = read_folder(folder, scratch / "px.u8", size=size, channels=3, labelled=True, follow_links=True)
        labels = label_ids(store.labels)
        plain = stage_features("efficientnet-lite0", store)
        head = plain[-1]
        rows[f"head, {size} px"] = kmeans(head, labels)
        if size == 224:
            for j, stage in enumerate(("stage 5", "stage 6", "stage 7")):
                rows[f"{stage}, 224 px"] = kmeans(plain[j], labels)
            rows["stages 5-7 and head, concatenated, 224 px"] = kmeans(
                torch.cat([F.normalize(p, dim=1) for p in plain], dim=1), labels)
            mirrored = stage_features("efficientnet-lite0", store, mirror=True)[-1]
            rows["head, mirror averaged, 224 px"] = kmeans(head + mirrored, labels)
            rows["head, centred, 224 px"] = kmeans(head - head.mean(0), labels)
            rows["head, mirror averaged and centred, 224 px"] = kmeans((head + mirrored) - (head + mirrored).mean(0),
                                                                       labels)
        store.file.unlink()
    for size in LITE2_SIZES:
        store = read_folder(folder, scratch / "px.u8", size=size, channels=3, labelled=True, follow_links=True)
        rows[f"Lite2 head, {size} px"] = kmeans(stage_features("efficientnet-lite2", store)[-1],
                                                label_ids(store.labels))
        store.file.unlink()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, data=DATA, data_help="the shared data folder", threads=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    source = Path(args.data) / "tiny-imagenet/source"
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        folders = {"held-out source classes": held_out_photo_folder(source, scratch / "held")[0]}
        folders |= {name: Path(args.data) / path for name, path in SETS.items()}
        for name, folder in folders.items():
            results[name] = study(folder, scratch)
            print(name, results[name], flush=True)
    total = time.perf_counter() - started
    variants = list(next(iter(results.values())))
    lines = [
        f"Machine: {machine_description(args.threads)}; {total / 60:.1f} min. k-means ACC % with K known (mean of 2 "
        "seeds) on the frozen encoder's L2-normalised features; nothing trained.",
        "",
        "| features | " + " | ".join(results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for v in variants:
        lines.append(f"| {v} | " + " | ".join(f"{results[s][v]:.1f}" for s in results) + " |")
    write_results("photos_features", {"args": vars(args), "results": results, "seconds": total,
                                      "machine": machine_description(args.threads)}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
