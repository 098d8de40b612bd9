"""Choose the self-training settings on validation alphabets, never on the evaluation alphabets.

Fold 5 of `omniglot_k_rule.py`'s cross-validation: every 6th Omniglot background alphabet (5 of 30) is held
out and a similarity model is trained with the shipped recipe on the other 25. Discovery is run on the 5 held-out
alphabets with K known and unknown, for several numbers of self-training steps (0 = off) and shares of
each cluster kept as pseudo-labelled examples. The eigengap rule's significance is also re-scored on the
graph of the self-trained features. The chosen values are L2CClusterer's defaults and
`l2c_explorer.graph.SHARPENED_SIGNIFICANT_GAP`.

    python benchmarks/omniglot_self_training.py                   # trains the 25-alphabet model (~10 min)
    python benchmarks/omniglot_self_training.py --model FILE      # reuse a model trained on the 25

Writes benchmarks/results/omniglot_self_training.{json,md}.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import SIGNIFICANCE_CANDIDATES, add_common_flags, machine_description, write_results
from datasets import OMNIGLOT_BACKGROUND, VALIDATION_FOLD, validation_setup

from l2c_explorer.clustering import L2CClusterer
from l2c_explorer.graph import SHARPENED_SIGNIFICANT_GAP, eigengap_k
from l2c_explorer.options import DISCOVER, MODEL_SETTINGS
from l2c_explorer.similarity_model import load_similarity_model

# (steps, keep): steps 0 is discovery without self-training
SETTINGS = ((0, 0.5), (50, 0.5), (100, 0.3), (100, 0.5), (100, 0.7), (100, 1.0), (200, 0.5))


def defaults() -> tuple[int, float]:
    """The self-training steps and share kept a discovery uses when neither the options nor the model say."""
    return MODEL_SETTINGS["self_training_steps"], MODEL_SETTINGS["self_training_keep"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--background", default=str(OMNIGLOT_BACKGROUND), help="the Omniglot background alphabets")
    parser.add_argument("--model", default=None, help="a model already trained on the 25 training alphabets")
    parser.add_argument("--fold", type=int, default=VALIDATION_FOLD,
                        help="which background fold (omniglot_k_rule.py's)")
    parser.add_argument("--settings", nargs="+", default=None, metavar="STEPS/KEEP",
                        help="only these settings (default: all of SETTINGS); the used one is always needed")
    parser.add_argument("--name", default="omniglot_self_training", help="results file name")
    parser.add_argument("--k-sharpened-significance", type=float, default=None,
                        help="the sharpened graph's K rule for these runs (default: the package's)")
    add_common_flags(parser, threads=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    settings = SETTINGS if args.settings is None else \
        tuple((int(x.split("/")[0]), float(x.split("/")[1])) for x in args.settings)
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        valid, model_path = validation_setup(Path(args.background), Path(tmp), args.model, args.fold)
        model = load_similarity_model(model_path)
        sets = {a.name: model.prepare(str(a), labelled=True) for a in sorted(valid.iterdir())}
        for steps, keep in settings:
            key = f"{steps}/{keep}"
            runs[key] = {}
            for name, data in sets.items():
                k_true = len(data.class_names)
                row = {}
                for kmode in ("known", "unknown"):
                    c = L2CClusterer(similarity=model, n_clusters=k_true if kmode == "known" else None,
                                     self_training_steps=steps, self_training_keep=keep, random_state=0,
                                     k_sharpened_significance=args.k_sharpened_significance)
                    t0 = time.perf_counter()
                    c.fit(data)
                    row[f"acc_{kmode}"] = c.score(data.label_ids())
                    row[f"seconds_{kmode}"] = time.perf_counter() - t0
                    if kmode == "unknown":
                        row["k_error"] = int(c.n_clusters_) - k_true
                        row["k_error_by_significance"] = {
                            str(s): eigengap_k(c.eigenvalues_, max_k=DISCOVER.defaults.max_clusters, significance=s)
                            - k_true for s in SIGNIFICANCE_CANDIDATES
                        }
                runs[key][name] = row
                print(f"{key:8s} {name:40s} known {100 * row['acc_known']:.1f}  unknown {100 * row['acc_unknown']:.1f} "
                      f"K error {row['k_error']:+d}", flush=True)

    used = defaults()
    significance = SHARPENED_SIGNIFICANT_GAP if args.k_sharpened_significance is None else args.k_sharpened_significance
    names = list(next(iter(runs.values())))
    lines = [
        f"Machine: {machine_description(args.threads)}. Background fold {args.fold}'s validation alphabets (held out from the similarity "
        f"model's training, never used for evaluation): {', '.join(names)}. MCL, seed 0; the sharpened graph's K rule "
        f"at significance {significance}; whole run {(time.perf_counter() - started) / 60:.1f} min.",
        "",
        "| self-training steps | share kept | ACC % K known | ACC % K unknown | mean abs K error | s per alphabet (K unknown) |",
        "|---|---|---|---|---|---|",
    ]
    for (steps, keep), (key, rows) in zip(settings, runs.items(), strict=True):
        r = list(rows.values())
        chosen = " (used)" if (steps, keep) == used else ""
        lines.append(
            f"| {steps}{chosen} | {keep if steps else '–'} | {100 * np.mean([x['acc_known'] for x in r]):.1f} | "
            f"{100 * np.mean([x['acc_unknown'] for x in r]):.1f} | {np.mean([abs(x['k_error']) for x in r]):.2f} | "
            f"{np.mean([x['seconds_unknown'] for x in r]):.1f} |"
        )
    used_rows = list(runs[f"{used[0]}/{used[1]}"].values())
    lines += [
        "",
        "Eigengap significance on the graph of the self-trained features (with the used self-training setting; "
        "mean abs K error; the first pass keeps the significance chosen by omniglot_k_rule.py): "
        + ", ".join(
            f"{s}{' (these runs)' if s == significance else ''}: "
            f"{np.mean([abs(x['k_error_by_significance'][str(s)]) for x in used_rows]):.2f}"
            for s in SIGNIFICANCE_CANDIDATES
        ) + ".",
    ]
    write_results(args.name, {"runs": runs, "used": list(used), "fold": args.fold, "k_sharpened_significance": significance,
                              "machine": machine_description(args.threads)},
                  "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
