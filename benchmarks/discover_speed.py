"""Wall-clock time of `l2c-explorer discover` on a 1,000-image folder with the shipped model.

The folder is 50 Omniglot evaluation characters x 20 drawings (Kannada's 41 characters and the first 9 of
Keble), copied to a temporary folder. The command is timed as a user runs it (a fresh process, imports
included), with K unknown (at most 100 clusters) and with K known.

    python benchmarks/discover_speed.py --data ../shared/data/omniglot/images_evaluation --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import add_common_flags, machine_description, write_results
from datasets import OMNIGLOT_EVALUATION, thousand_drawings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, data=OMNIGLOT_EVALUATION, data_help="Omniglot alphabets, Kannada and Keble among them")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="omniglot")
    args = parser.parse_args()
    threads = int(os.environ["OMP_NUM_THREADS"]) if os.environ.get("OMP_NUM_THREADS") else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "folder"
        n_images = sum(1 for _ in thousand_drawings(Path(args.data), folder).rglob("*.png"))
        for setting, extra in (("K unknown (max 100)", []), ("K known (50)", ["--k", "50"])):
            for r in range(args.repeats):
                out = Path(tmp) / f"out_{len(rows)}"
                started = time.perf_counter()
                result = subprocess.run(
                    [sys.executable, "-m", "l2c_explorer.cli", "discover", str(folder), "--model", args.model,
                     "--out", str(out), "--score", "--quiet", "--seed", str(r), "--device", "cpu", *extra],
                    capture_output=True, text=True,
                )
                seconds = time.perf_counter() - started
                if result.returncode != 0:
                    raise SystemExit(result.stderr)
                summary = json.loads((out / "summary.json").read_text())
                rows.append({"setting": setting, "seed": r, "wall_seconds": seconds, "fit_seconds": summary["seconds"],
                             "k_estimated": summary["k_estimated"], "acc": summary["metrics"]["acc"]})
                print(rows[-1], flush=True)
    lines = [
        f"Machine: {machine_description(threads)}.",
        f"Folder: {n_images} Omniglot drawings of 50 characters the model never saw. Time of the whole command "
        "(process start, imports, reading, training, writing results).",
        "",
        "| setting | runs | wall-clock s (mean, max) | of which clustering s | K found | ACC % |",
        "|---|---|---|---|---|---|",
    ]
    for setting in dict.fromkeys(r["setting"] for r in rows):
        rs = [r for r in rows if r["setting"] == setting]
        walls = [r["wall_seconds"] for r in rs]
        lines.append(
            f"| {setting} | {len(rs)} | {sum(walls) / len(walls):.1f}, {max(walls):.1f} | "
            f"{sum(r['fit_seconds'] for r in rs) / len(rs):.1f} | {', '.join(str(r['k_estimated']) for r in rs)} | "
            f"{100 * sum(r['acc'] for r in rs) / len(rs):.1f} |"
        )
    write_results("discover_speed", {"rows": rows, "n_images": n_images, "machine": machine_description(threads)},
                  "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
