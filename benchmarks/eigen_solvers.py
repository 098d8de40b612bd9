"""Dense against Lanczos eigenpairs of the graphs discovery builds, by folder size: where the solver switches.

Discovery needs the largest m eigenpairs of a normalised graph adjacency (m = K + 1 for the spectrum,
``DIFFUSION_COMPONENTS`` for the diffusion features). A dense solver (LAPACK, every eigenpair) costs about n^3;
Lanczos on the sparse graph (ARPACK, m eigenpairs to ``LANCZOS_TOL``) about n * m^2 plus the graph's products.
This script measures both on real graphs, those of the `photos` model's embeddings of its 25 held-out Tiny
ImageNet source classes (never an evaluation set), at n = 500 to 3,000 photos: the self-tuning graph of the K
estimate and the similarity graph of the diffusion features, each split into its connected components as
discovery does. For each: seconds (median of 3), the largest eigenvalue difference, and how far apart the
diffusion features of the two solvers are (the largest difference between their images' cosines).

    python benchmarks/eigen_solvers.py

Writes benchmarks/results/eigen_solvers.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import add_common_flags, machine_description, write_results
from datasets import TINY_SOURCE, link_sample

from l2c_explorer import graph
from l2c_explorer.neighbours import exact_neighbours
from l2c_explorer.similarity_model import load_similarity_model

SIZES = (500, 750, 1000, 1500, 2000, 3000)
COMPONENTS = (26, graph.DIFFUSION_COMPONENTS + 1)


def solve(matrix, m: int, lanczos: bool) -> tuple[float, np.ndarray, np.ndarray]:
    """Seconds (median of 3), eigenvalues and eigenvectors from one solver (the other switched off)."""
    saved = graph.LANCZOS_FROM, graph.LANCZOS_SHARE
    graph.LANCZOS_FROM, graph.LANCZOS_SHARE = (0, 0.5) if lanczos else (10**9, 0.0)
    try:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            values, vectors = graph.top_eigenpairs(matrix, m)
            times.append(time.perf_counter() - t0)
    finally:
        graph.LANCZOS_FROM, graph.LANCZOS_SHARE = saved
    return statistics.median(times), values, vectors


def cosines(values: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    features = vectors * np.clip(values, 0.0, None)
    features /= np.linalg.norm(features, axis=1, keepdims=True) + 1e-12
    return features @ features.T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/photos.safetensors")
    parser.add_argument("--source", default=str(TINY_SOURCE), help="the Tiny ImageNet source classes")
    add_common_flags(parser, threads=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model = load_similarity_model(args.model)
    held_out = sorted(model.card["trained_on"]["holdout_classes"])
    with tempfile.TemporaryDirectory() as scratch:
        folder = link_sample(Path(args.source), held_out, Path(scratch) / "held", max(SIZES) // len(held_out),
                             np.random.default_rng(0))
        data = model.prepare(folder, labelled=True, follow_links=True)
        emb = model.embed(data.pixels, device="cpu")
    rows = []
    rng = np.random.default_rng(0)
    for n in SIZES:
        sub = emb[torch.from_numpy(np.sort(rng.choice(len(emb), n, replace=False)))]
        graphs = {
            "self-tuning (K estimate)": graph.k_estimate_graph(sub, neighbours=graph.K_GRAPH_NEIGHBOURS,
                                                               scale_neighbour=graph.K_GRAPH_SCALE_NEIGHBOUR),
            "similarity kNN (diffusion)": graph.knn_adjacency(exact_neighbours(sub, 10), 10),
        }
        for name, adjacency in graphs.items():
            matrix = graph.normalised_adjacency(adjacency)
            for m in COMPONENTS:
                dense_s, dense_values, dense_vectors = solve(matrix, m, lanczos=False)
                lanczos_s, values, vectors = solve(matrix, m, lanczos=True)
                rows.append({
                    "n": n, "graph": name, "m": m, "dense_seconds": dense_s, "lanczos_seconds": lanczos_s,
                    "max_value_difference": float(np.abs(values - dense_values).max()),
                    "max_cosine_difference": float(np.abs(cosines(values, vectors)
                                                          - cosines(dense_values, dense_vectors)).max()),
                })
                print(rows[-1], flush=True)
    total = time.perf_counter() - started
    lines = [
        f"Machine: {machine_description(args.threads)}; {total / 60:.1f} min. Model `{model.card.get('name')}` "
        f"(sha256 {model.digest[:12]}…), embeddings of its held-out source classes; seconds are medians of 3.",
        "",
        "| images | graph | eigenpairs | dense s | Lanczos s | largest eigenvalue difference | largest cosine "
        "difference of the diffusion features |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['graph']} | {r['m']} | {r['dense_seconds']:.3f} | "
                     f"{r['lanczos_seconds']:.3f} | {r['max_value_difference']:.1e} | "
                     f"{r['max_cosine_difference']:.1e} |")
    write_results("eigen_solvers", {"args": vars(args), "rows": rows, "seconds": total,
                                    "model_sha256": model.digest, "machine": machine_description(args.threads)},
                  "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
