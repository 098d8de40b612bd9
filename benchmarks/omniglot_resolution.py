"""Would a sharper `omniglot` model move the teach targets? 32x32 against 48x48 inputs, on validation alphabets.

The shipped `omniglot` recipe reads 32x32 images. This trains the recipe at 32x32 and at 48x48 on fold 5 of
`omniglot_k_rule.py`'s folds (made by `benchmarks/datasets.py`: 25 background alphabets; never the evaluation
alphabets), then on each of the 5 held-out alphabets runs discovery with K unknown (the defaults) and
`benchmarks/teach.py`'s simulated person (`benchmarks/common.py`): our questions, relearnt at each budget.
Both models train in bfloat16 (`--mixed-precision`, where the CPU has it) so that the pair costs minutes, not
half an hour; everything else is the shipped recipe.

    python benchmarks/omniglot_resolution.py                  # trains both fold models (~6 min on 2 cores)
    python benchmarks/omniglot_resolution.py --models DIR     # keeps / reuses DIR/size32.safetensors, size48...

Writes benchmarks/results/omniglot_resolution.{json,md}.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import add_common_flags, label_ids, machine_description, run_ours, subfolders, write_results
from datasets import OMNIGLOT_BACKGROUND, VALIDATION_FOLD, background_split, train_fold_model

from l2c_explorer.clustering import L2CClusterer
from l2c_explorer.similarity_model import load_similarity_model

SIZES = (32, 48)
BUDGETS = (0, 10, 25)


def train(train_dir: Path, size: int, out: Path) -> float:
    """Train the `omniglot` recipe at ``size`` x ``size`` on ``train_dir`` into ``out``; seconds taken."""
    started = time.perf_counter()
    train_fold_model(train_dir, out, out.stem, "--image-size", str(size), "--mixed-precision", "--quiet")
    return time.perf_counter() - started


def render(data: dict) -> str:
    lines = [(f"Machine: {data['machine']}; {data['seconds'] / 60:.1f} min in all. Fold {data['fold']} of "
             "`omniglot_k_rule.py`: trained on 25 background alphabets, measured on the other 5 (never on "
             "evaluation alphabets). Discovery K unknown with the defaults; then our questions, answered from "
             "the folder names and relearnt at each budget (as `benchmarks/teach.py`). Cells: mean accuracy % "
             "(lowest), mean |K error|."), "",
             "| model input | pair F1 / ROC-AUC (held-out characters) | "
             + " | ".join(f"{b} answers" for b in data["budgets"]) + " |",
             "|---|---|" + "---|" * len(data["budgets"])]
    for size, part in data["models"].items():
        cells = []
        for b in data["budgets"]:
            accs = [r[str(b)][0] for r in part["alphabets"].values()]
            kerr = [abs(r[str(b)][1]) for r in part["alphabets"].values()]
            cells.append(f"{np.mean(accs):.1f} ({np.min(accs):.1f}), K err {np.mean(kerr):.1f}")
        lines.append(f"| {size}x{size} | {part['f1']:.3f} / {part['roc_auc']:.4f} | " + " | ".join(cells) + " |")
    last = str(data["budgets"][-1])
    reach = [size for size, part in data["models"].items()
             if np.mean([r[last][0] for r in part["alphabets"].values()]) >= 97
             and np.min([r[last][0] for r in part["alphabets"].values()]) >= 93]
    lines += ["", f"The teach targets (after {last} answers: a mean of 97%, every alphabet at least 93%): "
              + (f"reached with {', '.join(f'{s}x{s}' for s in reach)}." if reach else "reached with neither input "
                 "size; the sharper model starts higher and keeps a lead, but answers do not close the gap.")]
    lines += ["", "Per alphabet: accuracy % (K found minus true K).", "",
              "| alphabet | model input | " + " | ".join(str(b) for b in data["budgets"]) + " |",
              "|---|---|" + "---|" * len(data["budgets"])]
    for name in next(iter(data["models"].values()))["alphabets"]:
        for size, part in data["models"].items():
            r = part["alphabets"][name]
            lines.append(f"| {name} | {size}x{size} | "
                         + " | ".join(f"{r[str(b)][0]:.1f} ({r[str(b)][1]:+d})" for b in data["budgets"]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--background", default=str(OMNIGLOT_BACKGROUND), help="the Omniglot background alphabets")
    parser.add_argument("--models", default=None, help="folder for the fold models (kept; reused when there)")
    add_common_flags(parser, threads=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data = {"machine": machine_description(), "fold": VALIDATION_FOLD, "budgets": list(BUDGETS), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        train_dir, valid_dir = background_split(Path(args.background), Path(tmp))
        models = Path(args.models) if args.models else Path(tmp) / "models"
        models.mkdir(parents=True, exist_ok=True)
        for size in SIZES:
            path = models / f"size{size}.safetensors"
            seconds = train(train_dir, size, path) if not path.exists() else None
            model = load_similarity_model(str(path))
            scores = model.card.get("holdout_pair_metrics", {})
            part = data["models"][str(size)] = {"train_seconds": seconds, "f1": float(scores.get("f1", np.nan)),
                                                "roc_auc": float(scores.get("roc_auc", np.nan)), "alphabets": {}}
            for folder in subfolders(valid_dir):
                clusterer = L2CClusterer(similarity=model, random_state=0).fit(folder, labelled=True)
                truth = label_ids(clusterer.true_labels_)
                out = run_ours(clusterer, truth, BUDGETS, relearn=True)["scores"]
                part["alphabets"][folder.name] = {str(b): (round(100 * a, 2), e) for b, (a, e) in out.items()}
                print(size, folder.name, part["alphabets"][folder.name], flush=True)
    data["seconds"] = time.perf_counter() - started
    markdown = render(data)
    write_results("omniglot_resolution", data, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
