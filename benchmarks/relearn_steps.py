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
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import RESULTS, machine_description, write_results
from datasets import OMNIGLOT_BACKGROUND, VALIDATION_FOLD, validation_setup

from l2c_explorer.options import RELEARN_STEPS

BUDGETS = (10, 25, 50)


def run(steps: str, valid: Path, model: str, threads: int) -> None:
    subprocess.run([sys.executable, str(Path(__file__).with_name("teach.py")), "--only", "omniglot", "--methods",
                    "relearn", "--omniglot", str(valid), "--omniglot-model", model, "--threads", str(threads),
                    "--budgets", *map(str, BUDGETS), "--no-speed", "--name", f"teach_relearn_{steps}",
                    "--relearn-steps", steps], check=True)


def summarise(steps: str) -> dict:
    data = json.loads((RESULTS / f"teach_relearn_{steps}.json").read_text())
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
    parser.add_argument("--skip-runs", action="store_true", help="only tabulate the teach_relearn_* results there are")
    parser.add_argument("--background", default=str(OMNIGLOT_BACKGROUND))
    parser.add_argument("--model", default=None, help="a model trained on the fold's 25 training alphabets "
                        "(trained by the shipped recipe when missing)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each teach run")
    args = parser.parse_args()
    if not args.skip_runs:
        with tempfile.TemporaryDirectory() as tmp:
            valid, model = validation_setup(Path(args.background), Path(tmp), args.model)
            for steps in args.steps:
                run(steps, valid, model, args.threads)
    summaries = [summarise(s) for s in args.steps if (RESULTS / f"teach_relearn_{s}.json").is_file()]
    write_results("relearn_steps", {"machine": machine_description(), "summaries": summaries}, render(summaries))
    print(render(summaries))


if __name__ == "__main__":
    main()
