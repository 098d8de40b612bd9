"""Choose the `photos` model's discovery settings on its held-out source classes (never on novel-dev).

The K rule and the graph settings were chosen for Omniglot; photos may need others. The `photos` model was
trained with 25 of Tiny ImageNet's 152 source classes held out (listed in its card). From those classes'
400 photos each, this script builds validation folders shaped like the benchmark's: 3 folders of all 25
classes x 50 random photos, and 6 random 10-class subsets x 50 photos; and, because people bring small
categories too, 2 folders of all 25 classes x 20 photos (``--small``: on those, graphs of 20 neighbours read
a handful of groups where there are 25). Each folder's encoder features are computed once (a folder cache
in the scratch folder: the runs' results are those of runs from the files). Then:

1. **First K estimate** (cheap: spectra only): for each graph (self-tuning, ``k`` neighbours, local scale
   at neighbour ``s``) and each eigengap significance, the mean |K_est - K_true| over the folders.
2. **Whole discovery, K unknown**: with the best first rule, self-training on or off and the second pass's
   significance; ACC and |K error| over the folders. Also K known, for the chosen settings.
3. **Graph smoothing** (links per image of the graph the clustering learns from, and the diffusion time of
   its features): with the settings of step 2 and K known, ACC over the folders for each pair of
   ``SMOOTHING``; the best is kept (ties: the first listed). ``--smoothing-only`` runs this step alone on
   top of the recorded steps 1-2 (for the model that carries their choice).

The settings with the best mean ACC with K unknown (ties: lower K error) are written into the model file's
card (``--write``), so `discover`, the app and the API use them for this model.

    python benchmarks/photos_settings.py --model models/photos.safetensors --write
    python benchmarks/photos_settings.py --store-only    # store the recorded choice (same weights) without rerunning

Writes benchmarks/results/photos_settings.{json,md} (``--name``: another stem).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, add_common_flags, machine_description, subfolders, write_results
from datasets import TINY_SOURCE
from datasets import photo_validation_folders as validation_folders

from l2c_explorer.clustering import L2CClusterer
from l2c_explorer.graph import eigengap_k, self_tuning_spectrum
from l2c_explorer.similarity_model import load_similarity_model

GRAPHS = [(10, 5), (20, 7), (30, 10)]  # (neighbours, scale neighbour) of the self-tuning graph
SIGNIFICANCES = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0]
SHARPENED = [0.5, 0.7, 1.0]
SELF_TRAINING = [0, 100]
SMOOTHING = [(10, 1.0), (30, 1.0), (10, 3.0), (30, 3.0)]  # (n_neighbors, diffusion_time)


def first_rule_errors(model, folders: list[Path], max_k: int) -> dict:
    """Mean |K error| of the first estimate for every (graph, significance)."""
    errors = {(g, s): [] for g in GRAPHS for s in SIGNIFICANCES}
    for folder in folders:
        data = model.prepare(folder, labelled=True, follow_links=True)
        k_true = len(set(data.labels))
        emb = model.embed(data.pixels, device="cpu")
        for g in GRAPHS:
            values = self_tuning_spectrum(emb, max_k + 1, neighbours=g[0], scale_neighbour=g[1])
            for s in SIGNIFICANCES:
                errors[(g, s)].append(abs(eigengap_k(values, max_k=max_k, significance=s) - k_true))
    return {key: float(np.mean(v)) for key, v in errors.items()}


def settings_folders(args, held_out: list[str], scratch: Path) -> list[Path]:
    """The validation folders: ``args.full`` of all held-out classes and ``args.subsets`` 10-class subsets at 50
    photos per class, then ``args.small`` of all held-out classes at ``args.small_per_class``."""
    source = Path(args.source)
    folders = validation_folders(source, held_out, scratch, full=args.full, subsets=args.subsets)
    small = getattr(args, "small", 0)
    if small:
        (scratch / "small").mkdir()
        folders += validation_folders(source, held_out, scratch / "small", per_class=args.small_per_class,
                                      full=small, subsets=0, seed=1)
    return folders


def discover(model, folder: Path, *, k: int | None, seed: int, settings: dict) -> dict:
    t0 = time.perf_counter()
    c = L2CClusterer(similarity=model, n_clusters=k, random_state=seed, device="cpu", follow_links=True,
                     cache=str(folder.parent / "cache"), **settings).fit(folder, labelled=True)
    s = c.scores()
    return {"acc": s["acc"], "nmi": s["nmi"], "k_error": abs(c.n_clusters_ - s["k_true"]), "k_est": c.n_clusters_,
            "k_true": s["k_true"], "seconds": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/photos.safetensors")
    parser.add_argument("--source", default=str(TINY_SOURCE), help="the Tiny ImageNet source classes")
    add_common_flags(parser, max_k=100, threads=2)
    parser.add_argument("--full", type=int, default=3, help="validation folders of all held-out classes")
    parser.add_argument("--subsets", type=int, default=6, help="validation folders of 10 random held-out classes")
    parser.add_argument("--small", type=int, default=2,
                        help="validation folders of all held-out classes with --small-per-class photos each")
    parser.add_argument("--small-per-class", type=int, default=20, help="photos per class of the small folders")
    parser.add_argument("--name", default="photos_settings",
                        help="results file stem (default photos_settings; e.g. photos_lite0_settings for another model)")
    parser.add_argument("--write", action="store_true", help="store the chosen settings in the model file's card")
    parser.add_argument("--smoothing-only", action="store_true",
                        help="run step 3 alone, on top of the steps 1-2 recorded for this model's weights")
    parser.add_argument("--store-only", action="store_true",
                        help="do not rerun: store the choice recorded in benchmarks/results/photos_settings.json, "
                             "if it was made for this model's weights")
    args = parser.parse_args()
    if args.store_only:
        recorded = json.loads((RESULTS / f"{args.name}.json").read_text())
        digest = load_similarity_model(args.model).digest
        if recorded["model_sha256"] != digest:
            sys.exit(f"The recorded settings were chosen for weights {recorded['model_sha256'][:12]}…, not for "
                     f"{args.model} ({digest[:12]}…): rerun without --store-only.")
        store(args.model, recorded["chosen"])
        return
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    if args.smoothing_only:
        smoothing_only(args, started)
        return

    model = load_similarity_model(args.model)
    held_out = model.card["trained_on"]["holdout_classes"]
    with tempfile.TemporaryDirectory() as scratch:
        folders = settings_folders(args, held_out, Path(scratch))
        first = first_rule_errors(model, folders, args.max_k)
        (graph, significance), first_error = min(first.items(), key=lambda kv: (kv[1], kv[0][1]))
        print(f"first estimate: graph {graph}, significance {significance}: K error {first_error:.2f}", flush=True)
        base = {"k_graph_neighbours": graph[0], "k_graph_scale_neighbour": graph[1], "k_significance": significance}
        candidates = [dict(base, self_training_steps=0)] + [
            dict(base, self_training_steps=st, k_sharpened_significance=s2)
            for st, s2 in itertools.product([t for t in SELF_TRAINING if t], SHARPENED)
        ]
        runs = []
        for settings in candidates:
            rs = [discover(model, f, k=None, seed=0, settings=settings) for f in folders]
            runs.append({"settings": settings, "acc": float(np.mean([r["acc"] for r in rs])),
                         "k_error": float(np.mean([r["k_error"] for r in rs])), "runs": rs})
            print(f"{settings}: ACC {100 * runs[-1]['acc']:.1f} K error {runs[-1]['k_error']:.2f}", flush=True)
        best = best_run(runs)
        known = [discover(model, f, k=len(subfolders(f)), seed=0, settings=best["settings"]) for f in folders]
        smoothing = smoothing_runs(model, folders, best["settings"])
    total = time.perf_counter() - started
    chosen = dict(best["settings"], **best_smoothing(smoothing))
    record = {"args": vars(args), "model_sha256": model.digest, "first": {
        f"{g[0]},{g[1]},{s}": e for (g, s), e in first.items()}, "runs": runs, "known": known,
        "smoothing": smoothing, "chosen": chosen, "machine": machine_description(args.threads), "seconds": total}
    write_report(record, model, held_out, args.name)
    if args.write:
        store(args.model, chosen)


def best_run(runs: list[dict]) -> dict:
    """The whole-discovery run with the best mean ACC with K unknown (ties: the lower K error)."""
    return max(runs, key=lambda r: (round(r["acc"], 3), -r["k_error"]))


def smoothing_runs(model, folders: list[Path], settings: dict) -> list[dict]:
    """Step 3: mean ACC with K known over the folders for each (graph neighbours, diffusion time)."""
    out = []
    for n, t in SMOOTHING:
        rs = [discover(model, f, k=len(subfolders(f)), seed=0,
                       settings=dict(settings, n_neighbors=n, diffusion_time=t)) for f in folders]
        out.append({"n_neighbors": n, "diffusion_time": t, "acc": float(np.mean([r["acc"] for r in rs])), "runs": rs})
        print(f"n_neighbors {n}, diffusion time {t}: ACC {100 * out[-1]['acc']:.1f} with K known", flush=True)
    return out


def best_smoothing(smoothing: list[dict]) -> dict:
    best = max(smoothing, key=lambda r: (round(r["acc"], 3), -smoothing.index(r)))
    return {"n_neighbors": best["n_neighbors"], "diffusion_time": best["diffusion_time"]}


def smoothing_only(args, started: float) -> None:
    record = json.loads((RESULTS / f"{args.name}.json").read_text())
    model = load_similarity_model(args.model)
    step3 = ("n_neighbors", "diffusion_time")
    settings = {k: v for k, v in record["chosen"].items() if k not in step3}
    carried = {k: v for k, v in (model.card.get("discovery") or {}).items() if k not in ("chosen_by", *step3)}
    if record["model_sha256"] != model.digest and carried != settings:
        sys.exit("Steps 1-2 were recorded for another model (its file neither has that sha256 nor carries the "
                 "settings they chose): rerun without --smoothing-only.")
    held_out = model.card["trained_on"]["holdout_classes"]
    with tempfile.TemporaryDirectory() as scratch:
        folders = settings_folders(argparse.Namespace(**{**record["args"], "source": args.source}), held_out,
                                   Path(scratch))
        record["smoothing"] = smoothing_runs(model, folders, settings)
    record["chosen"] = dict(settings, **best_smoothing(record["smoothing"]))
    record["seconds"] = record["seconds"] + time.perf_counter() - started
    record["smoothing_machine"] = machine_description(args.threads)
    record["smoothing_model_sha256"] = model.digest
    write_report(record, model, held_out, args.name)
    if args.write:
        store(args.model, record["chosen"])


def write_report(record: dict, model, held_out: list[str], name: str) -> None:
    first = {tuple(int(x) for x in key.split(",")[:2]): None for key in record["first"]}  # graphs, in order
    runs, known, chosen, total = record["runs"], record["known"], record["chosen"], record["seconds"]
    a = record["args"]
    n = a.get("full", 3) + a.get("subsets", 6) + a.get("small", 0)
    small = (f", and {a['small']} folder(s) of all of them at {a['small_per_class']} photos per class"
             if a.get("small") else "")
    best = best_run(runs)
    lines = [
        f"Machine: {record['machine']}. Model `{model.name}` (sha256 {record['model_sha256'][:12]}…); "
        f"validation: its {len(held_out)} held-out source classes, {a.get('full', 3)} folder(s) of all of them and "
        f"{a.get('subsets', 6)} random 10-class subsets, 50 photos per class{small}; {total / 60:.1f} min.",
        "",
        f"**First K estimate** (self-tuning graph: neighbours, scale neighbour; mean |K error| over the {n} folders):",
        "",
        "| graph | " + " | ".join(f"s = {s}" for s in SIGNIFICANCES) + " |",
        "|---|" + "---|" * len(SIGNIFICANCES),
    ]
    for g in first:
        lines.append(f"| {g[0]}, {g[1]} | " + " | ".join(f"{record['first'][f'{g[0]},{g[1]},{s}']:.2f}"
                                                         for s in SIGNIFICANCES) + " |")
    lines += ["", f"**Whole discovery, K unknown** (mean over the {n} folders):", "",
              "| self-training steps | second-pass significance | ACC % | mean abs K error |", "|---|---|---|---|"]
    for r in runs:
        s = r["settings"]
        lines.append(f"| {s['self_training_steps']} | {s.get('k_sharpened_significance', '–')} | "
                     f"{100 * r['acc']:.1f} | {r['k_error']:.2f} |")
    lines += ["", f"Best: ACC {100 * best['acc']:.1f}%, K error {best['k_error']:.2f} with K unknown; with these "
                  f"settings {100 * np.mean([r['acc'] for r in known]):.1f}% with K known."]
    if record.get("smoothing"):
        lines += ["", "**Graph smoothing** (links per image of the graph the clustering learns from, diffusion time "
                      f"of its features; the settings above, K known, mean over the {n} folders"
                      + (f"; {record['smoothing_machine']}" if record.get("smoothing_machine") else "") + "):", "",
                  "| neighbours | diffusion time | ACC % |", "|---|---|---|"]
        lines += [f"| {r['n_neighbors']} | {r['diffusion_time']:g} | {100 * r['acc']:.1f} |" for r in record["smoothing"]]
    lines += ["", f"Chosen: {', '.join(f'`{k}` = {v}' for k, v in chosen.items())}; {total / 60:.1f} min in all."]
    write_results(name, record, "\n".join(lines))
    print("\n".join(lines))


def store(model_path: str, chosen: dict) -> None:
    from l2c_explorer.similarity_model import store_discovery_settings

    chosen = dict(chosen, chosen_by="Chosen by benchmarks/photos_settings.py on the model's 25 held-out source "
                                    "classes (never on the evaluation classes).")
    print(f"Settings stored in {store_discovery_settings(model_path, chosen)}")


if __name__ == "__main__":
    main()
