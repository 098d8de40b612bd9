"""The sharpened graph's K rule: the whole pipeline at two significances, alphabet by alphabet.

Reads the results of `omniglot_self_training.py` (no new runs): for each of background folds 3-5, the run with
the used self-training setting at the significance used before (1.0) and the run at the candidate (0.6), both on
the fold's 5 validation alphabets with the fold's model (never the evaluation alphabets). The re-reading of the
final spectrum at other significances (the line under each `omniglot_self_training` table) skips what follows
the estimate; this table is what a discovery gives end to end.

    python benchmarks/sharpened_significance.py

Writes benchmarks/results/sharpened_significance.{json,md}.
"""

from __future__ import annotations

import json

import numpy as np
from common import RESULTS, write_results

SETTING = "100/0.5"  # the used self-training setting (steps/keep), the one every run below has
# fold -> (results at the earlier significance, results at the candidate)
RUNS = {
    3: ("omniglot_self_training_fold3", "sig06_fold3"),
    4: ("omniglot_self_training_fold4", "sig06_fold4"),
    5: ("omniglot_self_training", "sig06_fold5"),
}
BEFORE, AFTER = 1.0, 0.6


def load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())["runs"][SETTING]


def main() -> None:
    rows, compared = [], {}
    for fold, (before_name, after_name) in RUNS.items():
        before, after = load(before_name), load(after_name)
        for alphabet, b in before.items():
            a = after[alphabet]
            compared[alphabet] = {"fold": fold, "before": b, "after": a}
            rows.append(
                f"| {fold} | {alphabet} | {100 * b['acc_unknown']:.1f} | {100 * a['acc_unknown']:.1f} | "
                f"{b['k_error']:+d} | {a['k_error']:+d} |"
            )
    acc = {w: 100 * np.mean([c[w]["acc_unknown"] for c in compared.values()]) for w in ("before", "after")}
    err = {w: np.mean([abs(c[w]["k_error"]) for c in compared.values()]) for w in ("before", "after")}
    worse = sum(abs(c["after"]["k_error"]) > abs(c["before"]["k_error"]) for c in compared.values())
    better = sum(abs(c["after"]["k_error"]) < abs(c["before"]["k_error"]) for c in compared.values())
    lines = [
        (f"{len(compared)} validation alphabets of background folds 3-5 (each fold's model trained on the other 25 "
         f"background alphabets), MCL, K unknown, seed 0, self-training {SETTING}: the whole pipeline with the "
         f"sharpened graph's K rule at significance {BEFORE} and at {AFTER}. Runs: "
         + ", ".join(f"`{b}` / `{a}`" for b, a in RUNS.values()) + "."),
        "",
        f"| fold | alphabet | ACC % at {BEFORE} | ACC % at {AFTER} | K error at {BEFORE} | K error at {AFTER} |",
        "|---|---|---|---|---|---|",
        *rows,
        f"| | **mean** | **{acc['before']:.1f}** | **{acc['after']:.1f}** | **{err['before']:.2f}** (abs) | "
        f"**{err['after']:.2f}** (abs) |",
        "",
        f"|K error| lower at {AFTER} on {better} alphabets, higher on {worse}.",
    ]
    write_results("sharpened_significance", {"setting": SETTING, "significances": [BEFORE, AFTER],
                                             "alphabets": compared}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
