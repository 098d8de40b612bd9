"""Discovery on a large folder: all 10 Omniglot evaluation alphabets at once (6,180 drawings, 309 characters).

Exercises the large-folder path (Lanczos eigenvectors per graph component, mini-batch clustering network,
self-training) and reports the time of each stage and the accuracy against the `alphabet/character` folders, with K known.

    python benchmarks/discover_large.py [--threads 2]

Writes benchmarks/results/discover_large.{json,md} (discover_large_gpu.* when it ran on a GPU).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_description, write_results  # noqa: E402

from l2c_explorer.clustering import L2CClusterer  # noqa: E402
from l2c_explorer.metrics import clustering_scores  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/omniglot/images_evaluation")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto: a CUDA GPU when there is one (results named _gpu)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    characters = sorted({p.parent.relative_to(args.data).as_posix() for p in Path(args.data).rglob("*.png")})
    load_before = os.getloadavg()
    # nothing from the cache: every stage is measured
    clusterer = L2CClusterer(n_clusters=len(characters), random_state=args.seed, cache=False,
                             device=args.device).fit(args.data)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    truth = np.unique(["/".join(p.split("/")[:2]) for p in clusterer.paths_], return_inverse=True)[1]
    scores = clustering_scores(truth, clusterer.labels_)
    machine = machine_description(args.threads)
    t = clusterer.timings_
    md = "\n".join([
        f"Machine: {machine}. Folder: `{args.data}`, {len(clusterer.paths_):,} images of {len(characters)} characters "
        "(10 alphabets mixed), K known. Features, graph and training: both passes (before and after "
        f"self-training); nothing cached. Load average (1 min) before the run: {load_before[0]:.1f} (above 2: "
        "the run shared the cores).",
        "",
        "| ACC % | NMI | reading s | features s | graph + K s | training s | self-training s | total s | peak GB |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {100 * scores['acc']:.1f} | {scores['nmi']:.3f} | {t['reading']:.1f} | {t['features']:.1f} | "
        f"{t['graph']:.1f} | {t['training']:.1f} | {t.get('self_training', 0.0):.1f} | {clusterer.seconds_:.1f} | "
        f"{peak_gb:.2f} |",
    ])
    name = "discover_large_gpu" if clusterer.device_.type == "cuda" else "discover_large"
    write_results(name, {"scores": scores, "timings": t, "seconds": clusterer.seconds_,
                                     "n_images": len(clusterer.paths_), "machine": machine,
                                     "cpu_timings": clusterer.cpu_timings_, "peak_rss_gb": peak_gb,
                                     "load_before": load_before, "load_after": os.getloadavg()}, md)
    print(md)


if __name__ == "__main__":
    main()
