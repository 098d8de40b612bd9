"""Assemble BENCHMARKS.md (and the results block of README.md) from the benchmark scripts' outputs.

Every table comes verbatim from ``benchmarks/results/<name>.md``, written by the script that measured it;
nothing here computes or edits a number.

    python benchmarks/make_report.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

SECTIONS = [
    (
        "omniglot",
        "Omniglot cross-task transfer (issue: discover unseen alphabets)",
        "`python benchmarks/omniglot.py --data ../shared/data/omniglot/images_evaluation --seeds 3 --k both "
        "--loss both`",
    ),
    ("omniglot_k_rule", "Choosing the K-estimation rule on validation alphabets",
     "`python benchmarks/omniglot_k_rule.py`"),
    ("train_omniglot_model", "Training the shipped `omniglot` similarity model",
     "`python benchmarks/train_omniglot_model.py`"),
    ("spn_speed", "Similarity training speed: the authors' formulation against ours", "`python benchmarks/spn_speed.py`"),
    ("discover_speed", "Discovery speed on a 1,000-image folder", "`python benchmarks/discover_speed.py`"),
    ("digits_da", "Cross-domain digits: USPS <-> MNIST", "`python benchmarks/digits_da.py`"),
    ("app_explore_20k", "The app's explorer with 20,000 images", "`python benchmarks/app_explore_20k.py`"),
]

README_START = "<!-- results:start (written by benchmarks/make_report.py) -->"
README_END = "<!-- results:end -->"


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def omniglot_summary(res: dict) -> list[str]:
    """Means over alphabets and seeds per setting, next to the authors' numbers and our targets."""
    published = {"mcl-unknown": 82.5, "kcl-unknown": 75.0, "mcl-known": 85.7, "kcl-known": 82.4}
    targets = {"unknown": "ACC >= 90%, mean K error <= 1.5", "known": "ACC >= 92%"}
    lines = [
        f"**Omniglot, 10 unseen alphabets** ({res['machine']}; {res['args']['seeds']} seeds):",
        "",
        "| setting | ACC % | NMI | mean abs K error | s per alphabet | authors' code (20 alphabets) | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for setting, runs in res["results"].items():
        loss, kmode = setting.split("-")
        rows = [r for rs in runs.values() for r in rs]
        acc = np.mean([np.mean([r["acc"] for r in rs]) for rs in runs.values()])
        lines.append(
            f"| {loss.upper()}, K {kmode} | **{100 * acc:.1f}** | {np.mean([r['nmi'] for r in rows]):.3f} | "
            f"{np.mean([r['k_error'] for r in rows]):.2f} | {np.mean([r['seconds'] for r in rows]):.1f} | "
            f"{published[setting]} | {targets[kmode]} |"
        )
    return lines


def other_summaries() -> list[str]:
    lines = []
    model = load("train_omniglot_model")
    if model:
        t, m = model["card"]["training"], model["card"]["holdout_pair_metrics"]
        lines.append(f"- Shipped `omniglot` similarity model: trained in {t['seconds'] / 60:.1f} min "
                     f"({model['machine']}); held-out pair F1 {m['f1']:.3f}, ROC-AUC {m['roc_auc']:.4f}.")
    spn = load("spn_speed")
    if spn:
        lines.append(f"- Similarity training step: **{spn['speedup_per_step']:.0f}x** faster than the authors' "
                     f"pair-concatenation network (held-out pair F1 {spn['ours_same_time']['pairs']['f1']:.3f} vs "
                     f"{spn['authors']['pairs']['f1']:.3f} in the same training time).")
    speed = load("discover_speed")
    if speed:
        walls = [r["wall_seconds"] for r in speed["rows"]]
        lines.append(f"- Discovering the categories of {speed['n_images']:,} images: at most {max(walls):.0f} s "
                     f"for the whole command on 2 CPU cores (target: under a minute).")
    for name in ("digits_da", "app_explore_20k"):
        md = RESULTS / f"{name}.headline.md"
        if md.exists():
            lines.append("- " + md.read_text().strip())
    return lines


def summary_block() -> str:
    parts = []
    omni = load("omniglot")
    if omni:
        parts += omniglot_summary(omni) + [""]
    parts += other_summaries()
    return "\n".join(parts).rstrip()


def main() -> None:
    parts = [
        "# Benchmarks",
        "",
        "Every number below is written by a script in `benchmarks/` (command under each heading; raw results in "
        "`benchmarks/results/*.json`) and copied here by `python benchmarks/make_report.py`. Rerun a script, then "
        "the report, to check or refresh them.",
        "",
    ]
    for name, title, command in SECTIONS:
        md = RESULTS / f"{name}.md"
        parts += [f"## {title}", "", f"Command: {command}", ""]
        parts += [md.read_text().rstrip() if md.exists() else "_Not run yet._", ""]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(parts).rstrip() + "\n")

    readme = ROOT / "README.md"
    if readme.exists():
        text = readme.read_text()
        block = f"{README_START}\n{summary_block()}\n{README_END}"
        pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
        if pattern.search(text):
            readme.write_text(pattern.sub(lambda _: block, text))


if __name__ == "__main__":
    main()
