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
from l2c_explorer.groups import representative
from l2c_explorer.questions import MERGE_NEIGHBOURS, group_link_shares, group_split, merge_candidates, pair_logit


def examples(folder: Path, model: str, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Rows of the first clustering of ``folder``: one per group of at least 4 images (split questions), one
    per pair of groups a merge question would be asked about."""
    c = L2CClusterer(similarity=model, random_state=seed).fit(folder, labelled=True)
    truth = label_ids(c.true_labels_)
    scale, bias = c.pair_head_
    groups = [np.flatnonzero(c.labels_ == g) for g in range(int(c.labels_.max()) + 1)]
    rows = []
    for members in groups:
        if len(members) < 4:
            continue
        first, second, ra, rb, ncut = group_split(c.graph_, c.embedding_, members)
        rows.append({"pair_logit": float(pair_logit(c.embedding_, ra, rb, scale=scale, bias=bias)), "ncut": float(ncut),
                     "smaller_half": int(min(len(first), len(second))), "different": bool(truth[ra] != truth[rb]),
                     "categories": int(len(np.unique(truth[members])))})
    links = group_link_shares(c.graph_, c.labels_)
    merges = []
    for g, h in merge_candidates(c.embedding_, c.labels_):
        ra, rb = representative(c.embedding_, groups[g]), representative(c.embedding_, groups[h])
        merges.append({"pair_logit": float(pair_logit(c.embedding_, ra, rb, scale=scale, bias=bias)),
                       "link_share": float(links[g, h]), "smaller_group": int(min(len(groups[g]), len(groups[h]))),
                       "same": bool(truth[ra] == truth[rb])})
    return rows, merges


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(positive, score)) if 0 < positive.sum() < len(positive) else float("nan")


def fit_weights(x: np.ndarray, y: np.ndarray) -> tuple[float, ...]:
    """Logistic regression of y on the columns of x, lightly regularised: (one weight per column..., intercept)."""
    from sklearn.linear_model import LogisticRegression

    m = LogisticRegression(C=10.0).fit(x, y)
    return (*(float(w) for w in m.coef_[0]), float(m.intercept_[0]))


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
    merges_by_fold: dict[int, list[dict]] = {}
    for fold in (int(f) for f in args.folds.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            valid, model = validation_setup(Path(args.background), Path(tmp), str(Path(args.models) / f"fold{fold}.safetensors"),
                                            fold)
            by_fold[fold], merges_by_fold[fold] = [], []
            for alphabet in sorted(valid.iterdir()):
                rows, merges = examples(alphabet, model)
                for r in rows + merges:
                    r["alphabet"] = alphabet.name
                by_fold[fold] += rows
                merges_by_fold[fold] += merges
                print(f"fold {fold} {alphabet.name}: {len(rows)} groups, {sum(r['different'] for r in rows)} "
                      f"hold two categories at their split; {len(merges)} merge questions, "
                      f"{sum(r['same'] for r in merges)} answered 'same'", flush=True)

    def arrays(rows, columns, answer):
        return np.array([[r[c] for c in columns] for r in rows]), np.array([r[answer] for r in rows])

    def cross_validated(everything, columns, answer, signs):
        """ROC-AUC of each column alone (its sign: which way predicts the answer) and of the logistic
        combination, each alphabet scored by weights fitted on the other alphabets; then the weights on all."""
        held_score, held_y, held_cols = [], [], []
        for name in sorted({r["alphabet"] for r in everything}):
            x, y = arrays([r for r in everything if r["alphabet"] == name], columns, answer)
            w = fit_weights(*arrays([r for r in everything if r["alphabet"] != name], columns, answer))
            held_score.append(x @ np.array(w[:-1]) + w[-1])
            held_y.append(y)
            held_cols.append(x * np.array(signs))
        y = np.concatenate(held_y)
        cols = np.concatenate(held_cols)
        scores = {c: auc(cols[:, j], y) for j, c in enumerate(columns)}
        scores["both"] = auc(np.concatenate(held_score), y)
        return scores, fit_weights(*arrays(everything, columns, answer)), y

    everything = [r for rs in by_fold.values() for r in rs]
    split_auc, weights, y = cross_validated(everything, ["pair_logit", "ncut"], "different", [-1, -1])
    scores = {"pair model alone": split_auc["pair_logit"], "normalised cut alone": split_auc["ncut"],
              "both (logistic, fitted on the other alphabets)": split_auc["both"]}
    all_merges = [r for rs in merges_by_fold.values() for r in rs]
    merge_auc, merge_weights, merge_y = cross_validated(all_merges, ["pair_logit", "link_share"], "same", [1, 1])
    merge_scores = {"pair model alone": merge_auc["pair_logit"], "link share alone": merge_auc["link_share"],
                    "both (logistic, fitted on the other alphabets)": merge_auc["both"]}
    # calibration of the pair model on merge questions: what it expects against what the folder names say
    merge_logits = np.array([r["pair_logit"] for r in all_merges])
    expected_same = float(np.mean(1.0 / (1.0 + np.exp(-merge_logits))))
    data = {"machine": machine_description(args.threads), "folds": list(by_fold), "examples": by_fold,
            "auc": scores, "weights": {"pair": weights[0], "cut": weights[1], "bias": weights[2]},
            "merge_examples": merges_by_fold, "merge_auc": merge_scores,
            "merge_weights": {"pair": merge_weights[0], "link": merge_weights[1], "bias": merge_weights[2]},
            "merge_expected_same": expected_same, "merge_answered_same": float(merge_y.mean()),
            "seconds": time.perf_counter() - started}
    lines = [f"Machine: {data['machine']}; {data['seconds'] / 60:.1f} min. Folds {', '.join(map(str, by_fold))} of "
             "`omniglot_k_rule.py` (each fold's similarity model trained on the other 25 background alphabets; "
             f"its 5 held out): {len(everything)} groups of at least 4 images in the first clusterings (K unknown) "
             f"of {len({r['alphabet'] for r in everything})} validation alphabets, {int(y.sum())} of them with two "
             "categories at their proposed split (the answer 'different').", "",
             "| predictor of the answer 'different' | ROC-AUC (each alphabet scored by weights fitted on the others) |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in scores.items()]
    lines += ["", (f"Weights fitted on all {len(everything)} groups (`l2c_explorer.questions.SPLIT_WEIGHTS`): pair "
                   f"logit {weights[0]:.3f}, normalised cut {weights[1]:.3f}, intercept {weights[2]:.3f}."), ""]
    lines += [(f"**Merge questions.** The same clusterings offer {len(all_merges)} merge questions (each group and "
               f"its {MERGE_NEIGHBOURS} nearest groups by mean direction); {int(merge_y.sum())} "
               f"({100 * merge_y.mean():.1f}%) would be answered 'same', where the pair model expects "
               f"{100 * expected_same:.1f}%."), "",
              "| predictor of the answer 'same' | ROC-AUC (each alphabet scored by weights fitted on the others) |",
              "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in merge_scores.items()]
    lines += ["", (f"Weights fitted on all {len(all_merges)} merge questions (`l2c_explorer.questions.MERGE_WEIGHTS`): "
                   f"pair logit {merge_weights[0]:.3f}, link share {merge_weights[1]:.3f}, "
                   f"intercept {merge_weights[2]:.3f}.")]
    write_results("questions_split", data, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
