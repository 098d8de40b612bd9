"""Killing ``discover`` at random moments: every folder left behind is a finished run or refused, never misread.

Each trial copies a finished run (K given: 10 groups) into a fresh ``--out`` folder and starts ``discover`` over
it with other settings (K estimated) and a fresh feature cache, then kills it at a random moment (seeded) of
one of its stages, taken in turn: the start (process start, imports, reading), features, graph, training,
self-training, the second pass's features, graph and training, and the writing of the results. The stages'
times come from an uninterrupted run of the same command, each stage's moment is drawn uniformly within
it, so that the short ones (the writing) are hit as often as the long ones. Even trials are killed with
SIGKILL (no clean-up can run), odd ones with SIGTERM (stopped as on Ctrl+C). The folder is then judged:

* **finished**: ``load_run`` and ``read_run_state`` accept it and all its files tell one story (the clusters
  of ``assignments.csv`` are those of ``run.safetensors``, ``summary.json`` counts the same images and the
  same group sizes); the earlier run left untouched, or the new one complete;
* **refused**: ``load_run`` (``assign``, the app's "Add new images") and ``read_run_state`` (``questions``)
  both refuse it, and so do the ``assign`` and ``questions`` commands (exit status 2);
* **misread**: anything else (accepted, but its files disagree). The target is 0.

Temporary files left in the output folder and the cache right after the kill are counted too; a run in the
same cache folder removes those of a killed writer (``tests/test_cli.py``).

    python benchmarks/kill_test.py [--trials 20] [--seed 0] [--scratch DIR]

Writes benchmarks/results/kill_test.{json,md}.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine_description, write_results
from datasets import ROOT

FOLDER = ROOT / "demo_data" / "omniglot_keble"
SETTINGS = ["--model", "omniglot", "--self-training-steps", "30"]
EARLIER_K = 10  # the finished run each trial writes over: K given (the trials estimate it)


def discover(out: Path, cache: Path, *extra: str, stages: bool = False) -> subprocess.Popen:
    """The command; with ``stages`` its stderr is a pipe of one line per stage ended."""
    return subprocess.Popen([sys.executable, "-m", "l2c_explorer.cli", "discover", str(FOLDER), "--out", str(out),
                             "--cache", str(cache), *([] if stages else ["--quiet"]), *SETTINGS, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE if stages else subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, text=True)


def stage_windows(scratch: Path) -> list[tuple[str, float, float]]:
    """(stage, start, end) in seconds from the command's start, from an uninterrupted run (a line is printed
    as each stage ends; the writing is what follows the last one, until summary.json is written)."""
    started, wall = time.perf_counter(), time.time()
    proc = discover(scratch / "uninterrupted", scratch / "cache-uninterrupted", stages=True)
    windows, last = [], 0.0
    for line in proc.stderr:
        now = time.perf_counter() - started
        name = line.split(":", 1)[1].split(",")[0].strip() if line.startswith("l2c-explorer:") else None
        if name:
            windows.append((name if name == "reading images" else f"{name} ({sum(w[0].startswith(name) for w in windows) + 1})",
                            last, now))
            last = now
    assert proc.wait() == 0
    # until summary.json, the last file, was written (the interpreter's exit follows: no file is written then)
    windows.append(("writing the results", last, (scratch / "uninterrupted" / "summary.json").stat().st_mtime - wall))
    return windows


def judge(out: Path, new_images: Path) -> str:
    """'finished', 'refused' or 'misread' (see the module's docstring)."""
    import torch  # noqa: F401  (before the package, as the command does)

    from l2c_explorer.cli import main
    from l2c_explorer.errors import InputError
    from l2c_explorer.runs import load_run, read_run_state

    accepted = []
    for read in (load_run, read_run_state):
        try:
            accepted.append(read(out))
        except InputError:  # ModelFileError is one
            accepted.append(None)
    if all(a is None for a in accepted):
        scratch = Path(tempfile.mkdtemp())
        try:
            codes = (main(["assign", str(new_images), "--run", str(out), "--out", str(scratch / "a"), "--quiet"]),
                     main(["questions", str(out)]))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return "refused" if codes == (2, 2) else "misread"
    if any(a is None for a in accepted):
        return "misread"  # one reader accepts what the other refuses
    run, state = accepted
    with open(out / "assignments.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    csv_labels = np.array([int(r["cluster"]) for r in rows])
    consistent = (len(rows) == len(run.labels_) == summary["n_images"]
                  and np.array_equal(csv_labels, run.labels_) and np.array_equal(state["labels"], run.labels_)
                  and list(summary["cluster_sizes"]) == np.bincount(csv_labels, minlength=run.n_clusters_).tolist()
                  and [r["path"] for r in rows] == state["paths"])
    if not consistent:
        return "misread"
    return "finished: the earlier run" if summary.get("k_given") == EARLIER_K else "finished: the new run"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scratch", type=Path, default=None)
    args = parser.parse_args()
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="l2c-kill-"))
    scratch.mkdir(parents=True, exist_ok=True)
    new_images = scratch / "new"  # a few drawings for the assign command to read
    for char_dir in sorted(FOLDER.iterdir())[:2]:
        shutil.copytree(char_dir, new_images / char_dir.name, dirs_exist_ok=True)

    earlier = scratch / "earlier"  # the finished run each trial writes over
    assert discover(earlier, scratch / "cache-earlier", "--k", str(EARLIER_K)).wait() == 0
    windows = stage_windows(scratch)  # the trials' own stages, uninterrupted (same settings, fresh cache)
    full = windows[-1][2]
    assert judge(scratch / "uninterrupted", new_images) == "finished: the new run"

    rng = np.random.default_rng(args.seed)
    trials = []
    for i in range(args.trials):
        out, cache = scratch / f"out-{i:02d}", scratch / f"cache-{i:02d}"
        shutil.copytree(earlier, out)
        stage, start, end = windows[i % len(windows)]
        moment = float(rng.uniform(start, end))
        how = signal.SIGKILL if i % 2 == 0 else signal.SIGTERM
        proc = discover(out, cache)
        time.sleep(moment)
        proc.send_signal(how)
        code = proc.wait()
        left = sorted(str(p.relative_to(scratch)) for p in (*out.rglob("*"), *cache.rglob("*")) if ".partial" in p.name)
        verdict = judge(out, new_images)
        trials.append({"stage": stage, "moment_s": round(moment, 2), "signal": how.name, "exit": code,
                       "verdict": verdict, "temporary_files_left": left})
        print(f"{i:2d} {how.name:7s} at {moment:5.1f} s ({stage}): exit {code:4d}, {verdict}, {len(left)} temporary "
              "file(s) left", flush=True)
        shutil.rmtree(cache, ignore_errors=True)

    counts = {v: sum(t["verdict"] == v for t in trials)
              for v in ("finished: the earlier run", "finished: the new run", "refused", "misread")}
    term = [t for t in trials if t["signal"] == "SIGTERM"]
    data = {"machine": machine_description(), "folder": str(FOLDER.relative_to(ROOT)), "settings": SETTINGS,
            "uninterrupted_s": round(full, 1), "stages": [[n, round(a, 2), round(b, 2)] for n, a, b in windows], "seed": args.seed, "counts": counts, "trials": trials}
    md = [f"{machine_description()}; {len(trials)} trials on `{FOLDER.relative_to(ROOT)}` (520 drawings), each "
          f"`discover` written over a finished run and killed at a moment drawn uniformly within one of its "
          f"{len(windows)} stages in turn ({', '.join(w[0] for w in windows)}; {full:.1f} s uninterrupted; seed "
          f"{args.seed}); even trials SIGKILL, odd ones SIGTERM.",
          "",
          "| left behind | folders |",
          "|---|---|",
          f"| the earlier run, finished, every file of one story | {counts['finished: the earlier run']} |",
          f"| the new run, finished, every file of one story | {counts['finished: the new run']} |",
          f"| refused by `assign`, `questions` and the app, with a one-line reason | {counts['refused']} |",
          f"| **misread** (accepted, files of two runs) | **{counts['misread']}** (target 0) |",
          "",
          f"SIGTERM: {sum(t['exit'] == 143 for t in term)} of {len(term)} stopped with exit status 143 (the others "
          f"had finished: {sum(t['exit'] == 0 for t in term)}), "
          f"{sum(bool(t['temporary_files_left']) for t in term)} left a temporary file; SIGKILL: "
          f"{sum(bool(t['temporary_files_left']) for t in trials if t['signal'] == 'SIGKILL')} of "
          f"{len(trials) - len(term)} left one (removed by the next run in that cache folder)."]
    write_results("kill_test", data, "\n".join(md))
    print("\n".join(md))
    if args.scratch is None:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
