"""Train the shipped `omniglot` similarity model with its one documented command, time it, write its card.

    python benchmarks/train_omniglot_model.py                 # retrain models/omniglot.safetensors (~10 min)
    python benchmarks/train_omniglot_model.py --card-only     # only rewrite models/omniglot.md from the file

The training command is exactly the one in the model card:

    l2c-explorer train-similarity ../shared/data/omniglot/images_background --recipe omniglot \
        --out models/omniglot --name omniglot

Writes ``<out>.safetensors``, its model card ``<out>.md`` and benchmarks/results/train_omniglot_model.{json,md}.
The card's time is the one the trainer records (training steps, excluding reading the images); the
wall-clock time of the whole command is reported next to it when the model was trained by this script.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_description, write_results  # noqa: E402

from l2c_explorer.similarity import load_similarity_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = "../shared/data/omniglot/images_background"


def command(out: str, data: str) -> list[str]:
    return ["l2c-explorer", "train-similarity", data, "--recipe", "omniglot", "--out", out, "--name", "omniglot"]


def card_markdown(model, cmd: list[str], wall_seconds: float | None, machine: str, threads: int | None) -> str:
    card = model.card
    t, m, d, a = card["training"], card.get("holdout_pair_metrics", {}), card["trained_on"], card["architecture"]
    wall = f"; the whole command took {wall_seconds / 60:.1f} min including reading the images" if wall_seconds else ""
    env = f"OMP_NUM_THREADS={threads} " if threads else ""
    return f"""# Model card: `omniglot` similarity model

**What it does.** Given two images of handwritten symbols, it predicts the probability that they show the
same character. It never saw the characters it is used on: it transfers what "same character" means.
`l2c-explorer discover --model omniglot` and the app use it by default.

**Training data.** Omniglot `images_background` (Lake et al., 2015; CC BY 4.0): {d['n_images']:,} images
of {d['n_classes']} characters from 30 alphabets used for training; {d['n_holdout_classes']} further
characters held out for the scores below. Class = `alphabet/character` folder (`--class-depth 2`).

**Architecture.** `{a['type']}`: {len(a['widths'])} conv blocks (widths {a['widths']}, 3x3 conv, batch
norm, ReLU, 2x2 max pool) -> linear -> {a['embedding_dim']}-d unit embedding; P(same) =
sigmoid(scale x cosine + bias). Input {a['input_size']}x{a['input_size']} grayscale, ink bright on dark.

**Training.** {t['epochs']} epochs = {t['steps']} steps of {t['classes_per_batch']} characters x
{t['images_per_class']} images, all pairs of each batch (binary cross-entropy) plus a prototype loss
(weight {t['proto_weight']}), Adam lr {t['lr']} with cosine decay, affine jitter
{t['jitter']}, random quarter turns, half of each batch's characters from one alphabet; seed {t['seed']}.
It took **{t['seconds'] / 60:.1f} min** of training on {t['device']} ({machine}){wall}.

**Held-out pair scores** ({m.get('protocol', '')}):

| precision | recall | F1 | ROC-AUC | PR-AUC |
|---|---|---|---|---|
| {m.get('precision', float('nan')):.3f} | {m.get('recall', float('nan')):.3f} | {m.get('f1', float('nan')):.3f} | {m.get('roc_auc', float('nan')):.4f} | {m.get('pr_auc', float('nan')):.3f} |

How it does on the 10 evaluation alphabets (characters it never saw): see `BENCHMARKS.md`.

**Reproduce** (from the repository root, about 10 minutes on 2 CPU cores):

```
{env}{shlex.join(cmd)}
```

**File.** `omniglot.safetensors`: weights plus this card, the preprocessing and the architecture as
metadata; loading never executes code from the file. sha256 of the weights: `{model.digest}`.
Created {card['created']} with l2c-explorer {card['package_version']}.

**Limits.** Made for dark-on-light or light-on-dark line drawings, centred, one symbol per image.
Photographs or colour images need a model trained on similar images (`l2c-explorer train-similarity`).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="models/omniglot", help="model path without suffix (default models/omniglot)")
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for the training (use 1 when another job shares a 2-core machine)")
    parser.add_argument("--card-only", action="store_true", help="do not train; rewrite the card of the existing file")
    parser.add_argument("--wall-seconds", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    cmd = command(args.out, args.data)
    wall = args.wall_seconds
    if not args.card_only:
        env = dict(os.environ)
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        started = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)
        wall = time.perf_counter() - started
    model = load_similarity_model(ROOT / (args.out + ".safetensors"))
    machine = machine_description(args.threads)
    card_path = ROOT / (args.out + ".md")
    card_path.write_text(card_markdown(model, cmd, wall, machine, args.threads))
    t, m = model.card["training"], model.card.get("holdout_pair_metrics", {})
    summary = (
        f"Shipped similarity model `omniglot` (`{shlex.join(cmd)}`), {machine}: "
        f"{t['steps']} steps in **{t['seconds'] / 60:.1f} min** of training"
        + (f" ({wall / 60:.1f} min for the whole command)" if wall else "")
        + f". Held-out characters: pair precision {m['precision']:.3f}, recall {m['recall']:.3f}, "
        f"F1 **{m['f1']:.3f}**, ROC-AUC {m['roc_auc']:.4f}. Target: at most 10 min."
    )
    write_results("train_omniglot_model", {"command": cmd, "wall_seconds": wall, "card": model.card,
                                           "machine": machine, "sha256": model.digest}, summary)
    print(summary)
    print(f"Model card written to {card_path}")


if __name__ == "__main__":
    main()
