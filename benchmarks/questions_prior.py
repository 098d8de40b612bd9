"""How strongly should the answers to a kind of question recalibrate that kind's P(same)?

`l2c_explorer.questions.kind_bias_shifts` shifts the bias of the similarity model's P(same) for each kind of
question (split, merge, member) by what the answers to that kind said, under a prior worth `PRIOR_ANSWERS`
answers. This script runs `benchmarks/teach.py` (our questions, one answer at a time, refit after each) on the 5
validation alphabets of background fold 5 with that fold's similarity model (`omniglot_k_rule.py`'s folds;
never the evaluation alphabets) once per prior weight, 1e9 standing for "no learning from the answers"
(the questions as they were before), and tabulates accuracy, |K error| and the share of answers that changed the
groups (the rest only confirmed what the clustering said), in total and per kind of question.

    python benchmarks/questions_prior.py --model FOLD5_MODEL [--priors 1e9 2 4 8] [--skip-runs] [--threads N]

Writes benchmarks/results/questions_prior.{json,md} (and teach_prior_<P>.{json,md}, one per prior).
"""

from __future__ import annotations

import argparse
import collections
import json

import numpy as np
from common import RESULTS, add_validation_teach_flags, choose_on_validation, machine_description
from datasets import VALIDATION_FOLD

BUDGETS = (10, 25, 50)


def summarise(name: str) -> dict:
    prior = name.removeprefix("teach_prior_")
    data = json.loads((RESULTS / f"{name}.json").read_text())
    rows = data["results"]["omniglot"]
    asked, changed = collections.Counter(), collections.Counter()
    for r in rows.values():
        for kind, did in zip(r["ours"]["kinds"], r["ours"]["changed"], strict=True):
            asked[kind] += 1
            changed[kind] += bool(did)
    scores = {b: [r["ours"]["scores"][str(b)] for r in rows.values()] for b in BUDGETS}
    return {"prior": prior, "n_folders": len(rows), "seconds": data["seconds"],
            "accuracy": {b: float(np.mean([s[0] for s in v])) for b, v in scores.items()},
            "lowest": {b: float(np.min([s[0] for s in v])) for b, v in scores.items()},
            "k_error": {b: float(np.mean([abs(s[1]) for s in v])) for b, v in scores.items()},
            "asked": dict(asked), "changed": dict(changed)}


def render(summaries: list[dict]) -> str:
    lines = [f"Machine: {machine_description()}. Our questions, one answer at a time (refit after each), on the "
             f"{summaries[0]['n_folders']} validation alphabets of Omniglot background fold {VALIDATION_FOLD} "
             "(the fold's "
             "similarity model, trained by the shipped recipe on the other 25; K unknown); cells: mean "
             "accuracy % (lowest), mean |K error|. \"Changed\": answers after which the groups differed (the others "
             "confirmed what the clustering already said), by the kind of question asked.", "",
             "| prior (answers) | " + " | ".join(f"{b} answers" for b in BUDGETS) + " | changed | split | merge | member |",
             "|---|" + "---|" * (len(BUDGETS) + 4)]
    for s in summaries:
        name = "none (no learning)" if float(s["prior"]) >= 1e6 else s["prior"]
        cells = [f"{100 * s['accuracy'][b]:.1f} (min {100 * s['lowest'][b]:.1f}), K err {s['k_error'][b]:.2f}"
                 for b in BUDGETS]
        total = sum(s["asked"].values())
        kinds = [f"{s['changed'].get(k, 0)} of {s['asked'].get(k, 0)}" for k in ("split", "merge", "member")]
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {sum(s['changed'].values())} of {total} ({100 * sum(s['changed'].values()) / total:.0f}%) | "
                     + " | ".join(kinds) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--priors", nargs="+", default=["1e9", "2", "4", "8"])
    add_validation_teach_flags(parser)
    args = parser.parse_args()
    runs = {f"teach_prior_{p}": ["--methods", "ours", "--budgets", *map(str, BUDGETS), "--prior-answers", p]
            for p in args.priors}
    choose_on_validation(args, "questions_prior", runs, summarise, render)


if __name__ == "__main__":
    main()
