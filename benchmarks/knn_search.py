"""Nearest-neighbour search at scale: exact blockwise search, the IVF search, and pynndescent.

The 20 nearest neighbours of every image (what one pass of discovery searches) among the similarity model's
embeddings of the 100k scale set (benchmarks/scale_sets.py) without its Omniglot evaluation alphabets
(93,828 images: background characters, digits, photos), on random subsets of 5,000 to 93,828. Recall is the
share of the exact 20 nearest found (on 2,000 sampled images). Times are wall-clock and CPU seconds of this
process; pynndescent's first call in a process includes compiling its numba kernels, reported apart.

    python benchmarks/knn_search.py [--threads 2] [--sizes 5000 10000 20000 50000 93828]

Writes benchmarks/results/knn_search.{json,md}; EXACT_LIMIT and IVF_PROBES in l2c_explorer/neighbours.py
were chosen from it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_description, write_results  # noqa: E402
from scale_sets import build_set  # noqa: E402

from l2c_explorer.neighbours import exact_neighbours, ivf_neighbours  # noqa: E402


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def embeddings(scratch: Path | None) -> np.ndarray:
    from l2c_explorer.embedding import embed_folder

    folder = build_set("100k", scratch)
    cached = folder.parent / "knn_search_embeddings.npy"
    if cached.exists():
        return np.load(cached, allow_pickle=False)
    embedded = embed_folder(folder, "omniglot", follow_links=True)
    keep = [i for i, p in enumerate(embedded.paths) if not p.startswith("omniglot-eval/")]
    emb = embedded.embeddings[keep]
    np.save(cached, emb)
    return emb


def recall(found: np.ndarray, truth: np.ndarray, rows: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(found[i], truth[i])) / truth.shape[1] for i in rows]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000, 50000, 93828])
    ap.add_argument("--probes", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--scratch", default=None)
    ap.add_argument("--no-nndescent", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    emb = torch.nn.functional.normalize(torch.from_numpy(embeddings(Path(args.scratch) if args.scratch else None)), dim=1)
    rng = np.random.default_rng(0)
    rows_out, compile_s = [], None
    for n in args.sizes:
        n = min(n, len(emb))
        x = emb[torch.from_numpy(np.sort(rng.choice(len(emb), n, replace=False)))]
        sample = rng.choice(n, min(2000, n), replace=False)
        exact, wall, cpu = timed(lambda: exact_neighbours(x, 20))
        truth = exact.indices.numpy()
        row = {"n": n, "load": os.getloadavg()[0], "exact": {"wall_s": wall, "cpu_s": cpu}}
        for probes in args.probes:
            found, wall, cpu = timed(lambda: ivf_neighbours(x, 20, n_probe=probes))
            row[f"ivf{probes}"] = {"wall_s": wall, "cpu_s": cpu, "recall": recall(found.indices.numpy(), truth, sample)}
        if not args.no_nndescent:
            import pynndescent

            if compile_s is None:  # the first call compiles the kernels: time it on a small problem
                _, compile_s, _ = timed(lambda: pynndescent.NNDescent(x[:2000].numpy(), n_neighbors=21, metric="cosine",
                                                                      random_state=0, n_jobs=args.threads).neighbor_graph)
            graph, wall, cpu = timed(lambda: pynndescent.NNDescent(x.numpy(), n_neighbors=21, metric="cosine",
                                                                   random_state=0, n_jobs=args.threads).neighbor_graph)
            row["nndescent"] = {"wall_s": wall, "cpu_s": cpu, "recall": recall(graph[0][:, 1:], truth, sample)}
        rows_out.append(row)
        print(row, flush=True)

    machine = machine_description(args.threads)
    methods = ["exact"] + [f"ivf{p}" for p in args.probes] + ([] if args.no_nndescent else ["nndescent"])
    md = [f"Machine: {machine}; load average during the runs {min(r['load'] for r in rows_out):.1f}-"
          f"{max(r['load'] for r in rows_out):.1f} (other jobs shared the cores: CPU seconds are the steadier "
          "measure). Embeddings of the 100k scale set without the Omniglot evaluation alphabets.", "",
          "| images | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for r in rows_out:
        cells = []
        for m in methods:
            c = r[m]
            cell = f"{c['wall_s']:.1f} s wall / {c['cpu_s']:.1f} s CPU"
            if "recall" in c:
                cell += f", recall {c['recall']:.3f}"
            cells.append(cell)
        md.append(f"| {r['n']:,} | " + " | ".join(cells) + " |")
    md += ["", "ivfN: inverted-file search probing N of sqrt(n) lists. Recall: share of the exact 20 nearest found."]
    if compile_s is not None:
        md.append(f"pynndescent's first call in a process (2,000 points, numba compilation included): {compile_s:.1f} s.")
    write_results("knn_search", {"rows": rows_out, "nndescent_first_call_s": compile_s, "machine": machine}, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
