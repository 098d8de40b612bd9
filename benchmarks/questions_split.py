"""How likely is a group to hold two categories? Calibrating the split question on validation alphabets.

A split question shows the most typical image of each half of a group's best two-way cut
(`l2c_explorer.questions.group_split`) and asks whether they show the same category. Its worth is the
probability of the answer "different" (the group then splits) times the images that would move. Two
estimates of that probability are at hand: the similarity model's P(same) of the two images shown, and the
normalised cut of the split (a small cut: two loosely linked parts). This script measures, on Omniglot
*background* alphabets held out from their fold's similarity model (`omniglot_k_rule.py`'s folds; never the
evaluation alphabets), how well each predicts the answer, and fits the logistic combination
``P(different) = sigmoid(w_pair * pair_logit + w_cut * ncut + b)`` whose weights
`l2c_explorer.questions.SPLIT_WEIGHTS` are. Every group of at least 4 images of the first clustering (K
unknown, the defaults) of each validation alphabet is one example; the answer comes from the folder names.
The ranking scores are cross-validated by alphabet (fitted on the others, scored on the held-out one).

    python benchmarks/questions_split.py --models DIR --folds 3,4,5   # DIR/fold<f>.safetensors (omniglot_k_rule.py)

Writes benchmarks/results/questions_split.{json,md}.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import add_common_flags, label_ids, machine_description, write_results
from datasets import OMNIGLOT_BACKGROUND, validation_setup

from l2c_explorer.clustering import L2CClusterer
from l2c_explorer.questions import group_split, pair_logit


def examples(folder: Path, model: str, seed: int = 0) -> list[dict]:
    """One row per group of at least 4 images of the first clustering of ``folder``."""
    c = L2CClusterer(similarity=model, random_state=seed).fit(folder, labelled=True)
    truth = label_ids(c.true_labels_)
    scale, bias = c.pair_head_
    rows = []
    for g in range(int(c.labels_.max()) + 1):
        members = np.flatnonzero(c.labels_ == g)
        if len(members) < 4:
            continue
        first, second, ra, rb, ncut = group_split(c.graph_, c.embedding_, members)
        rows.append({"pair_logit": float(pair_logit(c.embedding_, ra, rb, scale=scale, bias=bias)), "ncut": float(ncut),
                     "smaller_half": int(min(len(first), len(second))), "different": bool(truth[ra] != truth[rb]),
                     "categories": int(len(np.unique(truth[members])))})
    return rows


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(positive, score)) if 0 < positive.sum() < len(positive) else float("nan")


def fit_weights(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Logistic regression of y on the columns of x (pair logit, ncut), lightly regularised: (w_pair, w_cut, b)."""
    from sklearn.linear_model import LogisticRegression

    m = LogisticRegression(C=10.0).fit(x, y)
    return float(m.coef_[0, 0]), float(m.coef_[0, 1]), float(m.intercept_[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--background", default=str(OMNIGLOT_BACKGROUND))
    parser.add_argument("--models", required=True, help="folder of fold models (fold<f>.safetensors)")
    parser.add_argument("--folds", default="3,4,5")
    add_common_flags(parser, threads=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    by_fold: dict[int, list[dict]] = {}
    for fold in (int(f) for f in args.folds.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            valid, model = validation_setup(Path(args.background), Path(tmp), str(Path(args.models) / f"fold{fold}.safetensors"),
                                            fold)
            by_fold[fold] = []
            for alphabet in sorted(valid.iterdir()):
                rows = examples(alphabet, model)
                for r in rows:
                    r["alphabet"] = alphabet.name
                by_fold[fold] += rows
                print(f"fold {fold} {alphabet.name}: {len(rows)} groups, {sum(r['different'] for r in rows)} "
                      "hold two categories at their split", flush=True)

    def arrays(rows):
        x = np.array([[r["pair_logit"], r["ncut"]] for r in rows])
        return x, np.array([r["different"] for r in rows])

    # cross-validated by alphabet: weights fitted on the other alphabets score the held-out one's groups
    everything = [r for rs in by_fold.values() for r in rs]
    held_score, held_y, held_pair, held_cut = [], [], [], []
    for name in sorted({r["alphabet"] for r in everything}):
        rows = [r for r in everything if r["alphabet"] == name]
        train = [r for r in everything if r["alphabet"] != name]
        x, y = arrays(rows)
        w_pair, w_cut, b = fit_weights(*arrays(train))
        held_score.append(w_pair * x[:, 0] + w_cut * x[:, 1] + b)
        held_y.append(y)
        held_pair.append(-x[:, 0])  # P(different) grows as the pair logit falls
        held_cut.append(-x[:, 1])  # and as the cut gets smaller
    y = np.concatenate(held_y)
    scores = {"pair model alone": auc(np.concatenate(held_pair), y), "normalised cut alone": auc(np.concatenate(held_cut), y),
              "both (logistic, fitted on the other alphabets)": auc(np.concatenate(held_score), y)}
    weights = fit_weights(*arrays(everything))
    data = {"machine": machine_description(args.threads), "folds": list(by_fold), "examples": by_fold,
            "auc": scores, "weights": {"pair": weights[0], "cut": weights[1], "bias": weights[2]},
            "seconds": time.perf_counter() - started}
    lines = [f"Machine: {data['machine']}; {data['seconds'] / 60:.1f} min. Folds {', '.join(map(str, by_fold))} of "
             "`omniglot_k_rule.py` (each fold's similarity model trained on the other 25 background alphabets; "
             f"its 5 held out): {len(everything)} groups of at least 4 images in the first clusterings (K unknown) "
             f"of {len({r['alphabet'] for r in everything})} validation alphabets, {int(y.sum())} of them with two "
             "categories at their proposed split (the answer 'different').", "",
             "| predictor of the answer 'different' | ROC-AUC (each alphabet scored by weights fitted on the others) |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in scores.items()]
    lines += ["", f"Weights fitted on all {len(everything)} groups (`l2c_explorer.questions.SPLIT_WEIGHTS`): pair "
              f"logit {weights[0]:.3f}, normalised cut {weights[1]:.3f}, intercept {weights[2]:.3f}."]
    write_results("questions_split", data, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
