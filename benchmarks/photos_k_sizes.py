"""How the first K estimate depends on how many photos each category has: held-out source classes only.

People bring small categories too. The `photos` model's first K estimate reads the spectrum of a self-tuning
graph of each photo's 20 nearest neighbours (its card's settings, chosen on folders of 20 and 50 photos per
class); with 20 photos of a category, a photo's 20 neighbours cannot all be of its category, and the graph
links categories together. This script measures that on the model's 25 held-out Tiny ImageNet source classes
(never on novel-dev, birds-dev or seedlings-dev): 200 photos of each are embedded once, then folders are
drawn from them (all 25 classes or 10 random ones; 10 to 100 photos per class; ``--draws`` seeded draws of
each), and for each the first estimate is read:

* with fixed graphs of 5 to 30 neighbours (the scale neighbour about a third of them) and every significance;
* with a graph sized by the folder (``adaptive``): a first estimate K0 with the model's settings gives the
  photos per group, N / K0; when that is fewer than ``ratio`` x the graph's neighbours, the estimate is read
  again on a graph of round(N / K0 / ratio) neighbours (at least 5) at the same significance.

    python benchmarks/photos_k_sizes.py [--model models/photos.safetensors] [--draws 4]

Writes benchmarks/results/photos_k_sizes.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, add_common_flags, machine_description, write_results
from datasets import TINY_SOURCE, link_sample
from photos_settings import SIGNIFICANCES

from l2c_explorer.graph import eigengap_k, self_tuning_spectrum
from l2c_explorer.similarity_model import load_similarity_model

PER_CLASS = (10, 15, 20, 30, 50, 100)
POOL = 200  # photos embedded per class, from which the folders are drawn (twice the largest: draws differ)
N_CLASSES = (25, 10)
GRAPHS = [(5, 2), (7, 3), (10, 4), (15, 5), (20, 7), (30, 10)]  # (neighbours, scale neighbour)
RATIOS = [1.5, 2.0, 3.0]  # photos per group / graph neighbours below which the graph is made smaller


def first_k(emb: torch.Tensor, graph: tuple[int, int], significance: float, max_k: int) -> int:
    values = self_tuning_spectrum(emb, min(max_k + 1, len(emb) - 1), neighbours=graph[0], scale_neighbour=graph[1])
    return eigengap_k(values, max_k=max_k, significance=significance)


def adaptive_k(emb: torch.Tensor, settings: dict, ratio: float, max_k: int, k0: int | None = None) -> int:
    """The first estimate on a graph no larger than the photos per group (by the model's own first estimate)."""
    graph = (settings["k_graph_neighbours"], settings["k_graph_scale_neighbour"])
    significance = settings["k_significance"]
    k0 = first_k(emb, graph, significance, max_k) if k0 is None else k0
    per_group = len(emb) / k0
    if per_group >= ratio * graph[0]:
        return k0
    neighbours = max(5, round(per_group / ratio))
    scale = max(2, round(neighbours * graph[1] / graph[0]))
    return first_k(emb, (neighbours, scale), significance, max_k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/photos.safetensors")
    parser.add_argument("--source", default=str(TINY_SOURCE), help="the Tiny ImageNet source classes")
    parser.add_argument("--draws", type=int, default=4, help="seeded folders of each shape")
    add_common_flags(parser, max_k=100, threads=2)
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the recorded results")
    args = parser.parse_args()
    if args.report_only:
        record = json.loads((RESULTS / "photos_k_sizes.json").read_text())
        model = load_similarity_model(args.model)
        write_results("photos_k_sizes", record, report(record["rows"], record["settings"], model,
                                                       argparse.Namespace(**record["args"]), record["seconds"]))
        return
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model = load_similarity_model(args.model)
    settings = model.card["discovery"]
    held_out = sorted(model.card["trained_on"]["holdout_classes"])
    with tempfile.TemporaryDirectory() as scratch:
        folder = link_sample(Path(args.source), held_out, Path(scratch) / "held", POOL,
                             np.random.default_rng(0))
        data = model.prepare(folder, labelled=True, follow_links=True)
        emb = model.embed(data.pixels, device="cpu")
    labels = np.array(data.labels)
    embed_seconds = time.perf_counter() - started
    rows = []
    for n_classes in N_CLASSES:
        for per_class in PER_CLASS:
            for draw in range(args.draws):
                rng = np.random.default_rng(1000 * n_classes + 10 * per_class + draw)
                classes = held_out if n_classes == len(held_out) else rng.choice(held_out, n_classes, replace=False)
                idx = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                                      for c in classes])
                sub = emb[torch.from_numpy(idx)]
                row = {"classes": n_classes, "per_class": per_class, "draw": draw, "fixed": {}, "adaptive": {}}
                for graph in GRAPHS:
                    values = self_tuning_spectrum(sub, min(args.max_k + 1, len(sub) - 1), neighbours=graph[0],
                                                  scale_neighbour=graph[1])
                    for s in SIGNIFICANCES:
                        row["fixed"][f"{graph[0]},{graph[1]},{s}"] = eigengap_k(values, max_k=args.max_k,
                                                                                 significance=s)
                k0 = row["fixed"][f"{settings['k_graph_neighbours']},{settings['k_graph_scale_neighbour']},"
                                  f"{settings['k_significance']}"]
                for ratio in RATIOS:
                    row["adaptive"][str(ratio)] = adaptive_k(sub, settings, ratio, args.max_k, k0=k0)
                rows.append(row)
            print(n_classes, per_class, [r["adaptive"] for r in rows[-args.draws:]], flush=True)
    total = time.perf_counter() - started
    write_results("photos_k_sizes", {"args": vars(args), "model_sha256": model.digest, "settings": settings,
                                     "rows": rows, "embed_seconds": embed_seconds, "seconds": total,
                                     "machine": machine_description(args.threads)},
                  report(rows, settings, model, args, total))


def mean_error(rows: list[dict], pick) -> float:
    return float(np.mean([abs(pick(r) - r["classes"]) for r in rows]))


def report(rows: list[dict], settings: dict, model, args, total: float) -> str:
    shipped = f"{settings['k_graph_neighbours']},{settings['k_graph_scale_neighbour']},{settings['k_significance']}"
    cols = [(n, m) for n in N_CLASSES for m in PER_CLASS]
    header = "| rule | " + " | ".join(f"{n} x {m}" for n, m in cols) + " | all |"
    lines = [
        f"Machine: {machine_description(args.threads)}; {total / 60:.1f} min. Model `{model.card.get('name')}` "
        f"(sha256 {model.digest[:12]}…); its 25 held-out source classes, {args.draws} seeded folders of each shape "
        "(classes x photos per class). Mean |K error| of the first estimate.",
        "",
        header,
        "|---|" + "---|" * (len(cols) + 1),
    ]

    def line(name: str, pick) -> str:
        cells = [mean_error([r for r in rows if (r["classes"], r["per_class"]) == c], pick) for c in cols]
        return f"| {name} | " + " | ".join(f"{v:.1f}" for v in cells) + f" | **{mean_error(rows, pick):.2f}** |"

    lines.append(line(f"the model's settings ({shipped})", lambda r: r["fixed"][shipped]))
    best = sorted(rows[0]["fixed"], key=lambda key: mean_error(rows, lambda r: r["fixed"][key]))[:5]
    for key in best:
        if key != shipped:
            lines.append(line(f"fixed graph {key}", lambda r, key=key: r["fixed"][key]))
    for ratio in RATIOS:
        lines.append(line(f"adaptive, ratio {ratio}", lambda r, ratio=ratio: r["adaptive"][str(ratio)]))
    for s in SIGNIFICANCES:
        lines.append(line(f"median over the {len(GRAPHS)} graphs, significance {s}", lambda r, s=s: median_k(r, s)))
    return "\n".join(lines)


def median_k(row: dict, significance: float) -> float:
    """The median of the estimates of every graph at one significance (a consensus over graph sizes)."""
    return float(np.median([row["fixed"][f"{g[0]},{g[1]},{significance}"] for g in GRAPHS]))


if __name__ == "__main__":
    main()
