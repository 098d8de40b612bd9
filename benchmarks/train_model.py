"""Train a shipped similarity model with its one documented command, time it, write its card.

    python benchmarks/train_model.py omniglot              # retrain models/omniglot.safetensors (~10 min)
    python benchmarks/train_model.py photos                # retrain models/photos.safetensors (~60 min)
    python benchmarks/train_model.py photos --card-only    # only rewrite models/photos.md from the file

The training command is exactly the one in the model card, e.g.

    l2c-explorer train-similarity ../shared/data/tiny-imagenet/source --recipe photos --out models/photos \
        --name photos

Writes ``<out>.safetensors``, its model card ``<out>.md`` and benchmarks/results/train_<model>_model.{json,md}.
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
DATA = {"omniglot": "../shared/data/omniglot/images_background", "photos": "../shared/data/tiny-imagenet/source"}
TARGET_MINUTES = {"omniglot": 10, "photos": 60}


def command(name: str, out: str, data: str) -> list[str]:
    return ["l2c-explorer", "train-similarity", data, "--recipe", name, "--out", out, "--name", name]


def pair_score_table(m: dict) -> str:
    return f"""| precision | recall | F1 | ROC-AUC | PR-AUC |
|---|---|---|---|---|
| {m.get('precision', float('nan')):.3f} | {m.get('recall', float('nan')):.3f} | {m.get('f1', float('nan')):.3f} | {m.get('roc_auc', float('nan')):.4f} | {m.get('pr_auc', float('nan')):.3f} |"""


def reproduce_and_file(model, cmd: list[str], env: str, how_long: str) -> str:
    """The card's command to retrain the model and its description of the file."""
    card = model.card
    return f"""**Reproduce** (from the repository root, {how_long}):

```
{env}{shlex.join(cmd)}
```

**File.** `{card['name']}.safetensors`: weights plus this card, the preprocessing and the architecture as
metadata; loading never executes code from the file. sha256 of its contents (weights and metadata):
`{model.digest}`.
Created {card['created']} with l2c-explorer {card['package_version']}.
"""


def photos_card(model, cmd: list[str], wall_seconds: float | None, machine: str, threads: int | None) -> str:
    card = model.card
    t, m, d, a = card["training"], card.get("holdout_pair_metrics", {}), card["trained_on"], card["architecture"]
    wall = f"; the whole command took {wall_seconds / 60:.1f} min including reading the images" if wall_seconds else ""
    env = f"OMP_NUM_THREADS={threads} " if threads else ""
    aug = t["augmentation"]
    discovery = card.get("discovery")
    settings = (
        "\n**Discovery settings it carries** (chosen on its held-out classes, see `BENCHMARKS.md`): "
        + ", ".join(f"`{k}` = {v}" for k, v in sorted(discovery.items()) if k != "chosen_by")
        + f". {discovery.get('chosen_by', '')}\n" if discovery else ""
    )
    return f"""# Model card: `photos` similarity model

**What it does.** Given two colour photographs, it predicts the probability that they show the same kind
of thing (the same animal, object, food or place). It learnt that from 127 everyday categories and
transfers it to categories it never saw: point `l2c-explorer discover --model photos` (or the app, which
proposes it for colour photos) at a folder of photos. Best on photos of one object or scene each, similar
to the small web photos it learnt from.

**Training data.** {d['n_images']:,} photos of {d['n_classes']} categories of Tiny ImageNet's `source`
classes (Stanford CS231n's 64x64 subset of ImageNet; the copy in `../shared/data/tiny-imagenet/source`):
animals, clothes, vehicles, buildings, food, household objects. {d['n_holdout_classes']} further categories
were held out: the scores below and the discovery settings are measured on them. None of the 25
`novel-dev` categories the benchmark uses, nor those of the photo demo, is among either. The photos carry
**ImageNet's terms of use: non-commercial research and education only**; so does this model, which was
derived from them.

**Architecture.** `{a['type']}`: a small ResNet (a 3x3 stem, {len(a['widths'])} stages of residual blocks
{a['blocks']} with widths {a['widths']}, global average pooling) -> linear -> {a['embedding_dim']}-d unit
embedding; P(same) = sigmoid(scale x cosine + bias). Input {a['input_size']}x{a['input_size']} colour
(the photos are reduced to that size), normalised by the training photos' channel statistics.

**Training.** {t['epochs']} epochs = {t['steps']:,} steps of {t['classes_per_batch']} categories x
{t['images_per_class']} photos: every pair of each batch (binary cross-entropy) plus a cosine classifier
over all {d['n_classes']} categories (weight {t['class_weight']}, label smoothing {t['label_smoothing']}),
AdamW lr {t['lr']} (weight decay {t['weight_decay']}) with warm-up and cosine decay; random resized crops
(at least {aug['min_area']:.0%} of the photo), mirror images and colour jitter (brightness, contrast,
saturation +-{aug['brightness']:.0%}), never rotations; bfloat16 on the CPU {"(used)" if t.get('mixed_precision') else "(not available here)"},
channels-last memory; seed {t['seed']}. It took **{t['seconds'] / 60:.1f} min** of training on {t['device']}
({machine}){wall}.

**How well it tells unseen categories apart** (pairs of photos from the {d['n_holdout_classes']} held-out
categories; {m.get('protocol', '')}):

{pair_score_table(m)}

ROC-AUC is the chance that a random pair of photos of the same category scores higher than a random pair
of different categories. How discovery does with it on 25 unseen categories: see `BENCHMARKS.md`.
{settings}
{reproduce_and_file(model, cmd, env, "about an hour on 2 CPU cores; minutes on a GPU")}
**Limits.** Learnt from small (64x64) web photos, trained from scratch on a CPU: it separates
categories that look different (a school bus from a barn) far better than fine-grained ones (two dog
breeds). Drawings, scans of text or symbols need the `omniglot` model or one trained on such images. With
ImageNet-pretrained weights for a torchvision backbone (`train-similarity --backbone resnet50
--backbone-weights FILE`) a much stronger photo model trains in minutes.
"""


def omniglot_card(model, cmd: list[str], wall_seconds: float | None, machine: str, threads: int | None) -> str:
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
{t.get('augmentation', t.get('jitter'))}, random quarter turns, half of each batch's characters from one alphabet; seed {t['seed']}.
It took **{t['seconds'] / 60:.1f} min** of training on {t['device']} ({machine}){wall}.

**Held-out pair scores** ({m.get('protocol', '')}):

{pair_score_table(m)}

How it does on the 10 evaluation alphabets (characters it never saw): see `BENCHMARKS.md`.

{reproduce_and_file(model, cmd, env, "about 10 minutes on 2 CPU cores")}
**Limits.** Made for dark-on-light or light-on-dark line drawings, centred, one symbol per image.
Photographs or colour images need a model trained on similar images (`l2c-explorer train-similarity`).
"""


CARDS = {"omniglot": omniglot_card, "photos": photos_card}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=sorted(CARDS), help="which shipped model")
    parser.add_argument("--out", default=None, help="model path without suffix (default models/<model>)")
    parser.add_argument("--data", default=None, help="training folder (default: the one the card names)")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for the training (use 1 when another job shares a 2-core machine)")
    parser.add_argument("--card-only", action="store_true", help="do not train; rewrite the card of the existing file")
    parser.add_argument("--wall-seconds", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    name = args.model
    out = args.out or f"models/{name}"
    cmd = command(name, out, args.data or DATA[name])
    wall = args.wall_seconds
    if not args.card_only:
        env = dict(os.environ)
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        started = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)
        wall = time.perf_counter() - started
    model = load_similarity_model(ROOT / (out + ".safetensors"))
    machine = machine_description(args.threads)
    card_path = ROOT / (out + ".md")
    card_path.write_text(CARDS[name](model, cmd, wall, machine, args.threads))
    t, m = model.card["training"], model.card.get("holdout_pair_metrics", {})
    summary = (
        f"Shipped similarity model `{name}` (`{shlex.join(cmd)}`), {machine}: "
        f"{t['steps']} steps in **{t['seconds'] / 60:.1f} min** of training"
        + (f" ({wall / 60:.1f} min for the whole command)" if wall else "")
        + f". Held-out classes: pair precision {m['precision']:.3f}, recall {m['recall']:.3f}, "
        f"F1 **{m['f1']:.3f}**, ROC-AUC {m['roc_auc']:.4f}. Target: at most {TARGET_MINUTES[name]} min."
    )
    write_results(f"train_{name}_model", {"command": cmd, "wall_seconds": wall, "card": model.card,
                                          "machine": machine, "sha256": model.digest}, summary)
    print(summary)
    print(f"Model card written to {card_path}")


if __name__ == "__main__":
    main()
