"""Discovery at scale: 10k to 100k images, K unknown (at most --max-k) and K known.

Each run is a fresh process (``--child``) on a set of benchmarks/datasets.py (labels kept in the folder
names, used for scoring only), with nothing cached (every run reads, embeds and searches from scratch).
Pipelines:

``new``
    the default pipeline: streaming reader, IVF neighbour search above 20,000 images, estimated spectrum and
    filtered features when exact eigenpairs would cost much;
``exact``
    the same code with the exact search and exact eigenpairs (``neighbours="exact", spectrum="exact"``);
``today``
    the package as it was before this work (``--baseline`` commit, extracted with ``git archive`` into the
    scratch folder): everything in memory, exact search, exact eigenpairs.

Reported per run: seconds per stage (wall clock, and the process's CPU seconds, steadier when other jobs
share the machine), peak resident memory, K and accuracy / NMI against the folder names. A run longer than
``--timeout`` minutes is stopped and reported as not finished. Results accumulate in
benchmarks/results/scale.json (one entry per set, K mode and pipeline; a rerun replaces its entry), and
scale.md is rewritten from all of them.

    python benchmarks/scale.py --sets 10k 25k --k unknown known --pipelines new exact today --max-k 1000
    python benchmarks/scale.py --sets 50k 100k --pipelines new
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

from common import BASELINE, RESULTS, add_common_flags, baseline_package, machine_description
from datasets import ROOT, SETS, build_set, default_scratch, set_images, true_label

from l2c_explorer.similarity_model import load_similarity_model

TARGETS = {"100k_minutes": 15, "100k_gb": 6, "10k_unknown_s": 120}


# ---------------------------------------------------------------------------------------------------
# one run, in its own process


def child(spec: dict) -> dict:
    import resource

    import numpy as np
    import torch

    torch.set_num_threads(spec["threads"])
    from l2c_explorer.clustering import L2CClusterer
    from l2c_explorer.metrics import clustering_scores

    folder = Path(spec["folder"])
    k_true = spec["k_true"]
    options = dict(similarity=spec["model"], n_clusters=k_true if spec["k"] == "known" else None,
                   max_clusters=spec["max_k"], random_state=spec["seed"])
    if spec["pipeline"] != "today":
        options.update(cache=False, follow_links=True)  # the sets are folders of links to the data
        if spec["pipeline"] == "exact":
            options.update(neighbours="exact", spectrum="exact")
    load_before = os.getloadavg()
    wall, cpu = time.perf_counter(), time.process_time()
    c = L2CClusterer(**options).fit(folder)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    truth = np.unique([true_label(p) for p in c.paths_], return_inverse=True)[1]
    scores = clustering_scores(truth, c.labels_)
    # each source's images scored on their own (its classes against the clusters its images fell in): how
    # the run did on drawings, digits and photos apart, whatever the others did
    sources = np.array([p.split("/", 1)[0] for p in c.paths_])
    by_source = {}
    for source in np.unique(sources):
        mask = sources == source
        part = clustering_scores(truth[mask], c.labels_[mask])
        by_source[str(source)] = {"n_images": int(mask.sum()), "acc": part["acc"], "nmi": part["nmi"],
                                  "k_true": part["k_true"], "clusters_used": int(len(np.unique(c.labels_[mask])))}
    return {
        "n_images": len(c.paths_),
        "k_true": k_true,
        "k_found": int(c.n_clusters_),
        "acc": scores["acc"],
        "nmi": scores["nmi"],
        "by_source": by_source,
        "seconds": wall,
        "cpu_seconds": cpu,
        "timings": dict(c.timings_),
        "cpu_timings": dict(getattr(c, "cpu_timings_", {})),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }


def run(spec: dict, timeout_min: float, scratch: Path) -> dict:
    env = dict(os.environ)
    if spec["pipeline"] == "today":
        env["PYTHONPATH"] = str(baseline_package(scratch, spec["baseline"]))
        env["L2C_MODELS_DIR"] = str(ROOT / "models")
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        cmd = [sys.executable, __file__, "--child", json.dumps(spec), "--child-out", out.name]
        started = time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=env, cwd=ROOT if spec["pipeline"] != "today" else scratch,
                                  timeout=timeout_min * 60, capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            return {"finished": False, "why": f"stopped after {timeout_min:.0f} min", "load_after": os.getloadavg()}
        if proc.returncode != 0:
            return {"finished": False, "why": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else
                    f"exit {proc.returncode}", "seconds": time.perf_counter() - started}
        result = json.loads(Path(out.name).read_text())
    result["finished"] = True
    return result


# ---------------------------------------------------------------------------------------------------
# report


def key(r: dict) -> str:
    return f"{r['set']}/{r['k']}/{r['pipeline']}"


def stage(r: dict, name: str, cpu: bool = False) -> str:
    t = r.get("cpu_timings" if cpu else "timings", {})
    return f"{t[name]:.0f}" if name in t else "–"


def markdown(entries: list[dict], machine: str) -> str:
    order = {name: i for i, name in enumerate(SETS)}
    entries = sorted(entries, key=lambda r: (order.get(r["set"], 99), r["k"] != "unknown",
                                             ["new", "exact", "today"].index(r["pipeline"])))
    lines = [
        f"Machine: {machine}. Each run a fresh process, nothing cached; `--max-k {entries[0]['max_k']}` when K is "
        "unknown. Seconds are wall clock; in brackets the process's CPU seconds (all threads), the steadier "
        "measure when other jobs share the cores: the load average (1 min) before each run is in the last column, "
        "and on this 2-core machine anything above 2 means the run did not have the cores to itself.",
        "",
        "| set | images | K | pipeline | K found / true | ACC % | NMI | reading | features | graph + K | training "
        "| self-training | total s | peak GB | load | model, measured |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in entries:
        head = f"| {r['set']} | {r.get('n_images', '–'):,} | {r['k']} | {r['pipeline']} |" if r.get("n_images") else \
            f"| {r['set']} | – | {r['k']} | {r['pipeline']} |"
        if not r.get("finished"):
            lines.append(head + f" not finished ({r.get('why', '?')}) | | | | | | | | | | | |")
            continue
        cells = [f"{r['k_found']} / {r['k_true']}", f"{100 * r['acc']:.1f}", f"{r['nmi']:.3f}"]
        for name in ("reading", "features", "graph", "training", "self_training"):
            cells.append(f"{stage(r, name)} ({stage(r, name, True)})")
        cells += [f"**{r['seconds']:.0f}** ({r['cpu_seconds']:.0f})", f"{r['peak_rss_gb']:.2f}",
                  f"{r['load_before'][0]:.1f}",
                  f"`{r['model']}` {r['model_sha256'][:8]}, {r.get('date', '?')}" if r.get("model_sha256") else
                  f"`{r['model']}` as shipped on {r.get('date', '?')}"]
        lines.append(head + " " + " | ".join(cells) + " |")
    lines += ["", "Targets (2-core CPU): 100k images, K unknown up to 1,000, at most 15 min and 6 GB; 10k, K unknown, "
              "at most 2 min; accuracy within 1 point of the exact pipeline at 10k-25k."]
    done = {key(r): r for r in entries if r.get("finished")}
    notes = []
    for s in ("10k", "25k"):
        for k in ("unknown", "known"):
            new, exact = done.get(f"{s}/{k}/new"), done.get(f"{s}/{k}/exact")
            if new and exact and new.get("model_sha256") == exact.get("model_sha256"):  # the same model only
                diff = 100 * (new["acc"] - exact["acc"])
                notes.append(f"{s}, K {k}: new - exact = {diff:+.1f} points "
                             f"({'at most 1 point below: met' if diff >= -1 else 'MORE than 1 point below: not met'})")
    big = done.get("100k/unknown/new")
    if big:
        met = big["seconds"] <= 60 * TARGETS["100k_minutes"] and big["peak_rss_gb"] <= TARGETS["100k_gb"]
        notes.append(f"100k, K unknown: {big['seconds'] / 60:.1f} min ({big['cpu_seconds'] / 60:.1f} CPU-min), "
                     f"{big['peak_rss_gb']:.1f} GB peak ({'met' if met else 'not met'})")
    small = done.get("10k/unknown/new")
    if small:
        met = small["seconds"] <= TARGETS["10k_unknown_s"]
        notes.append(f"10k, K unknown: {small['seconds']:.0f} s ({small['cpu_seconds']:.0f} CPU-s; "
                     f"{'met' if met else 'not met'})")
    if notes:
        lines += ["", "Checks: " + "; ".join(notes) + "."]
    parts = [r for r in entries if r.get("finished") and r.get("by_source") and len(r["by_source"]) > 1]
    if parts:
        lines += ["", "Each source's images scored on their own (its classes against the clusters its images fell "
                  "in; the `omniglot` model sees digits and photos as grey images it was never meant for):",
                  "", "| set | K | pipeline | " + " | ".join(["source: images, ACC %, classes / clusters used"]) + " |",
                  "|---|---|---|---|"]
        for r in parts:
            cells = "; ".join(f"{name}: {v['n_images']:,}, {100 * v['acc']:.1f}, {v['k_true']} / {v['clusters_used']}"
                              for name, v in r["by_source"].items())
            lines.append(f"| {r['set']} | {r['k']} | {r['pipeline']} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=["10k", "25k", "50k", "100k"], choices=sorted(SETS))
    ap.add_argument("--k", nargs="+", default=["unknown", "known"], choices=("unknown", "known"))
    ap.add_argument("--pipelines", nargs="+", default=["new", "exact"], choices=("new", "exact", "today"))
    add_common_flags(ap, max_k=1000, threads=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=60.0, help="minutes before a run is stopped")
    ap.add_argument("--baseline", default=BASELINE, help="commit of 'today's' pipeline")
    ap.add_argument("--scratch", default=None, help="where the sets are built (default: a temporary folder)")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        Path(args.child_out).write_text(json.dumps(child(json.loads(args.child))))
        return

    results_file = RESULTS / "scale.json"
    stored = json.loads(results_file.read_text()) if results_file.exists() else {"runs": {}}
    machine = machine_description(args.threads)
    scratch = Path(args.scratch) if args.scratch else default_scratch()
    if not args.report_only:
        for name in args.sets:
            folder = build_set(name, scratch)
            k_true = len({true_label(p.relative_to(folder).as_posix()) for p in set_images(folder)})
            digest = load_similarity_model(SETS[name].model).digest
            for k in args.k:
                for pipeline in args.pipelines:
                    spec = {"set": name, "folder": str(folder), "model": SETS[name].model, "model_sha256": digest,
                            "k": k, "k_true": k_true,
                            "max_k": args.max_k, "pipeline": pipeline, "threads": args.threads, "seed": args.seed,
                            "baseline": args.baseline}
                    print(f"{name} K {k} {pipeline} ...", flush=True)
                    result = {**spec, **run(spec, args.timeout, scratch), "machine": machine,
                              "date": time.strftime("%Y-%m-%d %H:%M")}
                    stored["runs"][key(result)] = result
                    print({k2: v for k2, v in result.items() if k2 not in ("folder",)}, flush=True)
                    results_file.parent.mkdir(parents=True, exist_ok=True)
                    results_file.write_text(json.dumps(stored, indent=2, default=float) + "\n")
    entries = list(stored["runs"].values())
    if entries:
        md = markdown(entries, entries[-1].get("machine", machine))
        (RESULTS / "scale.md").write_text(md + "\n")
        print(md)


if __name__ == "__main__":
    main()
