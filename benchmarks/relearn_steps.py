"""How many self-training steps should a relearning from answers take?

A relearning (`L2CClusterer.relearn`, the app's Relearn button, `discover --constraints FILE --relearn`)
self-trains the run's features, already sharpened on the folder, on the groups the answers left. This script
runs `benchmarks/teach.py` (our questions one answer at a time, relearnt at each budget) on the 5 validation
alphabets of Omniglot background fold 5 with that fold's similarity model (`omniglot_k_rule.py`'s folds; never
the evaluation alphabets), once per number of steps, and tabulates accuracy, |K error| and the seconds.

    python benchmarks/relearn_steps.py --model FOLD5_MODEL [--steps 50 100] [--skip-runs] [--threads N]

Writes benchmarks/results/relearn_steps.{json,md} (and teach_relearn_<S>.{json,md}, one per number of steps).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from common import RESULTS, add_validation_teach_flags, choose_on_validation, machine_description
from datasets import VALIDATION_FOLD

from l2c_explorer.options import RELEARN_STEPS

BUDGETS = (10, 25, 50)


def summarise(name: str) -> dict:
    steps = name.removeprefix("teach_relearn_")
    data = json.loads((RESULTS / f"{name}.json").read_text())
    rows = data["results"]["omniglot"]
    scores = {b: [r["relearn"]["scores"][str(b)] for r in rows.values()] for b in BUDGETS}
    return {"steps": int(steps), "n_folders": len(rows),
            "seconds": float(sum(r["relearn"]["seconds"] for r in rows.values())),
            "accuracy": {b: float(np.mean([s[0] for s in v])) for b, v in scores.items()},
            "lowest": {b: float(np.min([s[0] for s in v])) for b, v in scores.items()},
            "k_error": {b: float(np.mean([abs(s[1]) for s in v])) for b, v in scores.items()}}


def render(summaries: list[dict]) -> str:
    lines = [f"Machine: {machine_description()}. Our questions, one answer at a time, relearnt at each budget, on "
             f"the {summaries[0]['n_folders']} validation alphabets of Omniglot background fold {VALIDATION_FOLD} (the "
             "fold's similarity model, trained by the shipped recipe on the other 25; K unknown, the run's own "
             "self-training 100 steps); cells: mean accuracy % (lowest), mean |K error|; seconds: the questions, "
             "refits and relearnings of every alphabet (the first clustering not counted).", "",
             "| relearning steps | " + " | ".join(f"{b} answers" for b in BUDGETS) + " | seconds |",
             "|---|" + "---|" * (len(BUDGETS) + 1)]
    for s in summaries:
        cells = [f"{100 * s['accuracy'][b]:.1f} (min {100 * s['lowest'][b]:.1f}), K err {s['k_error'][b]:.2f}"
                 for b in BUDGETS]
        used = " (used)" if s["steps"] == RELEARN_STEPS else ""
        lines.append(f"| {s['steps']}{used} | " + " | ".join(cells) + f" | {s['seconds']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", nargs="+", default=["50", "100"])
    add_validation_teach_flags(parser)
    args = parser.parse_args()
    runs = {f"teach_relearn_{s}": ["--methods", "relearn", "--budgets", *map(str, BUDGETS), "--relearn-steps", s]
            for s in args.steps}
    choose_on_validation(args, "relearn_steps", runs, summarise, render)


if __name__ == "__main__":
    main()
