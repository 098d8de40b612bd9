"""A discovery run alone and beside a CPU hog, with the libraries' default threads ("before") and with
l2c_explorer.threads' rules ("after": physical cores of the process's affinity, one setting for torch, BLAS and
numba, OpenMP threads that sleep instead of spinning while they wait).

The run: 1,540 drawings of the first 3 Omniglot evaluation alphabets (K known, self-training on, nothing
cached), in a fresh process each time. The hog: one more process that keeps one core busy (a Python loop),
started just before the run. Reported: wall seconds and the slowdown the hog causes.

    python benchmarks/threads.py [--repeats 2]

Writes benchmarks/results/threads.{json,md}.
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

from common import machine_description, subfolders, write_results
from datasets import OMNIGLOT_EVALUATION

HOG = "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"
RUN = """
import json, sys, time
mode, folder, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "after":
    from l2c_explorer.threads import configure_environment, set_threads
    set_threads(configure_environment())
import torch
from l2c_explorer.clustering import L2CClusterer
started = time.perf_counter()
c = L2CClusterer(n_clusters=k, cache=False, random_state=0, follow_links=True).fit(folder)
print(json.dumps({"seconds": time.perf_counter() - started, "threads": torch.get_num_threads(),
                  "timings": c.timings_}))
"""


def subset(scratch: Path) -> tuple[Path, int]:
    dest = scratch / "threads-3-alphabets"
    k = 0
    for alphabet in subfolders(OMNIGLOT_EVALUATION)[:3]:
        for char in sorted(alphabet.iterdir()):
            k += 1
            target = dest / alphabet.name / char.name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(char.resolve())
    return dest, k


def one_run(mode: str, folder: Path, k: int, hog: bool) -> dict:
    env = {name: value for name, value in os.environ.items()
           if not name.endswith("_NUM_THREADS") and name not in ("OMP_WAIT_POLICY", "L2C_THREADS")}
    hog_proc = subprocess.Popen([sys.executable, "-c", HOG]) if hog else None
    try:
        time.sleep(0.5 if hog else 0)
        load = os.getloadavg()[0]
        out = subprocess.run([sys.executable, "-c", RUN, mode, str(folder), str(k)], env=env, capture_output=True,
                             text=True, check=True)
    finally:
        if hog_proc is not None:
            hog_proc.kill()
            hog_proc.wait()
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "load": load}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--scratch", default=None)
    args = ap.parse_args()
    folder, k = subset(Path(args.scratch) if args.scratch else Path(tempfile.gettempdir()))
    runs: dict[str, list[dict]] = {}
    for _ in range(args.repeats):
        for mode in ("before", "after"):
            for hog in (False, True):
                name = f"{mode}-{'hog' if hog else 'alone'}"
                r = one_run(mode, folder, k, hog)
                runs.setdefault(name, []).append(r)
                print(name, r, flush=True)
    best = {name: min(r["seconds"] for r in rs) for name, rs in runs.items()}
    loads = [r["load"] for rs in runs.values() for r in rs]
    machine = machine_description()
    md = [f"Machine: {machine}; load average {min(loads):.1f}-{max(loads):.1f} before the runs (the hog adds 1; "
          "anything else above 0 was other jobs). Best of "
          f"{args.repeats} runs each; 1,540 drawings, K known, self-training on.", "",
          "| threads | alone s | beside a CPU hog s | slowdown |", "|---|---|---|---|"]
    for mode, words in (("before", "libraries' defaults"), ("after", "l2c_explorer.threads")):
        alone, hog = best[f"{mode}-alone"], best[f"{mode}-hog"]
        md.append(f"| {words} ({runs[f'{mode}-alone'][0]['threads']} torch threads) | {alone:.1f} | {hog:.1f} | "
                  f"{hog / alone:.2f}x |")
    write_results("threads", {"runs": runs, "best": best, "machine": machine}, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
