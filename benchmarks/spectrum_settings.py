"""How the spectrum estimate's settings were chosen: Chebyshev degree and random probes against exact eigenvalues.

On a large folder K is read from eigenvalues estimated by the kernel polynomial method
(``l2c_explorer.spectrum``): ``KPM_DEGREE`` products of the normalised graph with ``KPM_PROBES`` random
vectors. Too few probes and the estimate depends on which random vectors were drawn; too low a degree
and neighbouring eigenvalues blur together, moving the drop K is read at. This fits discovery once on
500 Omniglot **background** characters (10,000 drawings; the development data the similarity model was
trained on, never evaluation data), K unknown up to 1,000, keeps the two graphs K is read from (the first
pass's self-tuning graph; the graph after self-training), computes their exact top 1,001 eigenvalues,
and reads K from the exact ones and from estimates with each setting and three probe seeds, with the
rule discovery uses on each (first pass: half the largest drop; after self-training, on an estimated
spectrum: the same). Discovery keeps the median K of three probe seeds (``graph.K_READINGS``).

    python benchmarks/spectrum_settings.py [--threads 2] [--chars 500]

Writes benchmarks/results/spectrum_settings.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, add_common_flags, machine_description, write_results
from datasets import default_scratch, source_classes

from l2c_explorer import spectrum
from l2c_explorer.clustering import L2CClusterer
from l2c_explorer.discovery import PassOptions, embed_images, search_neighbours
from l2c_explorer.graph import eigengap_k, k_estimate_graph, normalised_adjacency, top_eigenpairs
from l2c_explorer.progress import Reporter
from l2c_explorer.sources import open_images

SETTINGS = [(300, 48), (300, 128), (600, 64), (1000, 48), (1000, 64)]  # (degree, probes)
SEEDS = (0, 1, 2)


def background_folder(n_chars: int, scratch: Path) -> Path:
    """The last ``n_chars`` background characters (seeded shuffle), as links: disjoint from the first 191 that
    benchmarks/scale.py's 10k set takes."""
    folder = scratch / f"omniglot-bg{n_chars}"
    if not (folder / ".complete").exists():
        for cls, files in source_classes("omniglot-bg", scratch)[-n_chars:]:
            d = folder / cls.replace("/", "__")
            d.mkdir(parents=True, exist_ok=True)
            for f in files:
                if not (d / f.name).is_symlink():
                    (d / f.name).symlink_to(f.resolve())
        (folder / ".complete").touch()
    return folder


def graphs_of_a_run(folder: Path, max_k: int) -> tuple[dict, L2CClusterer]:
    """{pass: (graph, significance)} of the two K readings of one discovery run.

    The first pass's embeddings and neighbour lists are found again with the discovery's own steps (the same
    model, images and seed: the same as the fit's); the second pass's graph is the fitted one."""
    c = L2CClusterer("omniglot", max_clusters=max_k, random_state=0, cache=False, follow_links=True).fit(folder)
    s = c.settings_
    with tempfile.TemporaryDirectory() as tmp:
        source = open_images(folder, c.similarity_model_, labelled=False, follow_links=True, cache=False,
                             scratch=Path(tmp), reading=lambda *a, **k: None).source
        emb = embed_images(c.similarity_model_, source, adapt_norm=c.adapt_norm, device=c.device_,
                           report=Reporter(None)).embeddings
    neighbours = search_neighbours(emb, PassOptions.of(c.get_params(), s), c.device_)
    first = k_estimate_graph(emb.float(), neighbours=s["k_graph_neighbours"],
                             scale_neighbour=s["k_graph_scale_neighbour"], found=neighbours)
    out = {"first pass (self-tuning graph)": (first, s["k_significance"])}
    if any(point["pass"] == 2 for point in c.history_):  # the second pass's clusters stand
        out["after self-training"] = (c.graph_, min(s["k_sharpened_significance"], s["k_significance"]))
    return out, c


def render(results: dict) -> str:
    max_k, chars = results.get("max_k", 1000), results["chars"]
    chosen = (spectrum.KPM_DEGREE, spectrum.KPM_PROBES)
    lines = [
        f"Machine: {results['machine']}. Folder: {results['n_images']:,} drawings of {chars} Omniglot background "
        f"characters, discovery with K unknown (at most {max_k}); K read from the exact top {max_k + 1} "
        f"eigenvalues and from estimates with probe seeds {', '.join(map(str, SEEDS))}. The package uses degree "
        f"{chosen[0]}, {chosen[1]} probes.",
        "",
        "| graph | K from exact eigenvalues | degree | probes | K per probe seed | their median (what discovery "
        "reads) | worst abs K error | s per estimate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in results["graphs"].items():
        for s in row["settings"]:
            mark = " **(used)**" if (s["degree"], s["probes"]) == chosen else ""
            worst = max(abs(k - row["k_exact"]) for k in s["k"])
            lines.append(f"| {name} | {row['k_exact']} | {s['degree']}{mark} | {s['probes']} | "
                         f"{', '.join(map(str, s['k']))} | {int(np.median(s['k']))} | {worst} | {s['seconds']:.1f} |")
    lines.append("")
    took = ", ".join(f"{r['exact_seconds']:.0f} s" for r in results["graphs"].values())
    load = f" Load average at the end: {results['load_end'][0]:.1f}." if results.get("load_end") else ""
    lines.append(f"Exact eigenvalues took {took}.{load}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, threads=2)
    parser.add_argument("--chars", type=int, default=500)
    add_common_flags(parser, max_k=1000)
    parser.add_argument("--scratch", default=None)
    parser.add_argument("--report-only", action="store_true", help="rewrite the table from the stored results")
    args = parser.parse_args()
    if args.report_only:
        results = json.loads((RESULTS / "spectrum_settings.json").read_text())
        write_results("spectrum_settings", results, render(results))
        return
    torch.set_num_threads(args.threads)
    folder = background_folder(args.chars, Path(args.scratch) if args.scratch else default_scratch())
    graphs, run = graphs_of_a_run(folder, args.max_k)
    results = {"machine": machine_description(args.threads), "n_images": len(run.paths_), "chars": args.chars,
               "max_k": args.max_k, "graphs": {}}
    for name, (graph, significance) in graphs.items():
        matrix = normalised_adjacency(graph)
        started = time.perf_counter()
        exact, _ = top_eigenpairs(matrix, args.max_k + 1)
        row = {"k_exact": eigengap_k(exact, max_k=args.max_k, significance=significance),
               "exact_seconds": time.perf_counter() - started, "significance": significance, "settings": []}
        for degree, probes in SETTINGS:
            ks, seconds = [], []
            for seed in SEEDS:
                started = time.perf_counter()
                moments = spectrum.chebyshev_moments(matrix, degree=degree, n_probes=probes, seed=seed)
                values = spectrum.estimated_eigenvalues(moments, args.max_k + 1)
                seconds.append(time.perf_counter() - started)
                ks.append(eigengap_k(values, max_k=args.max_k, significance=significance))
            row["settings"].append({"degree": degree, "probes": probes, "k": ks, "seconds": float(np.mean(seconds))})
            print(name, degree, probes, ks, f"(exact {row['k_exact']})", flush=True)
        results["graphs"][name] = row
    results["load_end"] = os.getloadavg()
    write_results("spectrum_settings", results, render(results))
    print(render(results))


if __name__ == "__main__":
    main()
