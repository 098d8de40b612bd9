"""Discovery on a large folder: all 10 Omniglot evaluation alphabets at once (6,180 drawings, 309 characters).

Exercises the large-folder path (Lanczos eigenvectors per graph component, mini-batch clustering network,
self-training) and reports the time of each stage and the accuracy against the `alphabet/character` folders, with K known.
With ``--baseline COMMIT`` the package as it was at that commit (extracted with ``git archive``, as
``benchmarks/scale.py`` does) runs the same folder in its own process first, for the speed-up.

    python benchmarks/discover_large.py [--threads 2] [--repeats 3] [--baseline f1b477a]

Writes benchmarks/results/discover_large.{json,md} (discover_large_gpu.* when it ran on a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import BASELINE, add_common_flags, baseline_package, machine_description, write_results
from datasets import OMNIGLOT_EVALUATION, ROOT, shown


def measure(data: str, threads: int, seed: int, device: str) -> dict:
    """One fit of the folder with K known, nothing cached, by whichever l2c_explorer this process imports."""
    from l2c_explorer.clustering import L2CClusterer
    from l2c_explorer.metrics import clustering_scores

    torch.set_num_threads(threads)
    characters = sorted({p.parent.relative_to(data).as_posix() for p in Path(data).rglob("*.png")})
    load_before = os.getloadavg()
    params = {"n_clusters": len(characters), "random_state": seed}
    known = L2CClusterer().get_params()
    # nothing from the cache: every stage is measured (older versions had no cache and no device choice)
    params.update({k: v for k, v in (("cache", False), ("device", device)) if k in known})
    clusterer = L2CClusterer(**params).fit(data)
    truth = np.unique(["/".join(p.split("/")[:2]) for p in clusterer.paths_], return_inverse=True)[1]
    return {"scores": clustering_scores(truth, clusterer.labels_), "timings": clusterer.timings_,
            "seconds": clusterer.seconds_, "n_images": len(clusterer.paths_), "n_characters": len(characters),
            "cpu_timings": getattr(clusterer, "cpu_timings_", None),
            "device": str(getattr(clusterer, "device_", "cpu")),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
            "load_before": load_before, "load_after": os.getloadavg()}


def measure_in_child(args, commit: str | None = None) -> dict:
    """:func:`measure` in a fresh process (its imports counted, as a user's run pays them); with ``commit``, a
    process that imports the package as it was at that commit."""
    env, cwd = dict(os.environ), ROOT
    if commit:
        cwd = Path(tempfile.gettempdir()) / "l2c-discover-large"
        env.update(PYTHONPATH=str(baseline_package(cwd, commit)), L2C_MODELS_DIR=str(ROOT / "models"))
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        cmd = [sys.executable, __file__, "--data", str(Path(args.data).resolve()), "--threads", str(args.threads),
               "--seed", str(args.seed), "--device", "cpu" if commit else args.device, "--child-out", out.name]
        subprocess.run(cmd, env=env, cwd=cwd, check=True)
        return json.loads(Path(out.name).read_text())


def median_run(runs: list[dict]) -> dict:
    """The run of median total time, with every run's total kept."""
    chosen = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    return {**chosen, "all_seconds": [r["seconds"] for r in runs]}


def row(name: str, r: dict, speed_up: str) -> str:
    t = r["timings"]
    return (f"| {name} | {100 * r['scores']['acc']:.1f} | {r['scores']['nmi']:.3f} | {t['reading']:.1f} | "
            f"{t['features']:.1f} | {t['graph']:.1f} | {t['training']:.1f} | {t.get('self_training', 0.0):.1f} | "
            f"{r['seconds']:.1f} | {speed_up} | {r['peak_rss_gb']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, data=OMNIGLOT_EVALUATION, data_help="a folder of alphabets, discovered as one folder",
                     threads=2)
    parser.add_argument("--seed", type=int, default=0)
    add_common_flags(parser, device="auto", device_help="auto: a CUDA GPU when there is one (results named _gpu)")
    parser.add_argument("--baseline", nargs="?", const=BASELINE, default=None,
                        help=f"also run the package at this commit (default {BASELINE}: before the scale work)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each version (fresh processes); the median is shown")
    parser.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_out:
        Path(args.child_out).write_text(json.dumps(measure(args.data, args.threads, args.seed, args.device), default=float))
        return

    before = median_run([measure_in_child(args, args.baseline) for _ in range(args.repeats)]) if args.baseline else None
    now = median_run([measure_in_child(args) for _ in range(args.repeats)])
    machine = machine_description(args.threads)
    rows = [row("this version", now, f"{before['seconds'] / now['seconds']:.2f}x" if before else "")]
    if before:
        rows.append(row(f"before the scale work ({args.baseline})", before, "1.0x"))
    totals = "; ".join(f"{name} " + ", ".join(f"{t:.1f}" for t in r["all_seconds"]) + " s"
                       for name, r in (("this version", now), ("before", before)) if r)
    md = "\n".join([
        f"Machine: {machine}. Folder: `{shown(args.data)}`, {now['n_images']:,} images of {now['n_characters']} characters "
        "(10 alphabets mixed), K known. Features, graph and training: both passes (before and after "
        f"self-training); nothing cached. Each version ran {args.repeats} times, each in a fresh process (imports "
        f"counted); the row is the run of median total time (all totals: {totals}). Load average (1 min) before "
        f"it: {now['load_before'][0]:.1f} (above 2: the run shared the cores).",
        "",
        "| version | ACC % | NMI | reading s | features s | graph + K s | training s | self-training s | total s | "
        "speed-up | peak GB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ])
    name = "discover_large_gpu" if now["device"].startswith("cuda") else "discover_large"
    write_results(name, {**now, "machine": machine, "baseline": {"commit": args.baseline, **before} if before else None},
                  md)
    print(md)


if __name__ == "__main__":
    main()
