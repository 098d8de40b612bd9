"""Choose the K-estimation rule by cross-validation on Omniglot's background alphabets, never on evaluation ones.

The 30 background alphabets are split into 6 folds (alphabet i, in name order, goes to fold i mod 6). For
each fold a similarity model is trained with the shipped recipe on the other 25 alphabets, and its 5
held-out alphabets serve for validation: 30 validation alphabets in all.

1. Spectra: each held-out alphabet is embedded with its fold's model, and the first-pass rule "K = the
   largest k whose eigengap is at least `s` times the largest" is scored on the spectra of several
   graphs of the embeddings (0/1 k-nearest-neighbour links, or self-tuning weights) for several `s`
   (s = 1 is the classic largest-gap rule). The chosen graph and `s` are
   `l2c_explorer.graph.K_GRAPH_NEIGHBOURS` and `SIGNIFICANT_GAP`.
2. Pipeline (`--pipeline`): whole discovery with K unknown (MCL, seed 0, self-training on) with the
   used K rules, with the 0/1 graph the diffusion features come from in the first pass, and with the
   self-tuning graph in the second pass too: ACC and K error. Each is the package's discovery steps
   (`l2c_explorer.discovery.first_pass`, then `sharpen`) with the K rule of each pass plugged in as an
   argument (`k_rule`, one of `l2c_explorer.discovery.K_RULES`).

    python benchmarks/omniglot_k_rule.py --models DIR --pipeline   # trains missing fold models into DIR
                                                                   # (DIR/fold<f>.safetensors, ~5-10 min each)

Writes benchmarks/results/omniglot_k_rule.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import SIGNIFICANCE_CANDIDATES, add_common_flags, machine_description, scores, write_results
from datasets import N_FOLDS, OMNIGLOT_BACKGROUND, validation_setup

from l2c_explorer.ccn import ranked_clusters
from l2c_explorer.clustering import L2CClusterer
from l2c_explorer.device import resolve_device
from l2c_explorer.discovery import PassOptions, embed_images, first_pass, sharpen
from l2c_explorer.graph import (
    K_GRAPH_NEIGHBOURS,
    K_GRAPH_SCALE_NEIGHBOUR,
    SIGNIFICANT_GAP,
    eigengap_k,
    knn_graph,
    normalised_adjacency,
    self_tuning_graph,
    top_eigenpairs,
)
from l2c_explorer.options import DISCOVER, discovery_settings
from l2c_explorer.progress import Reporter
from l2c_explorer.similarity_model import load_similarity_model
from l2c_explorer.sources import open_images, scratch_folder

USED_GRAPH = f"self-tuning, k={K_GRAPH_NEIGHBOURS}"
GRAPHS = {
    "0/1, k=10": lambda emb: knn_graph(emb, k=10),
    "0/1, k=20": lambda emb: knn_graph(emb, k=20),
    "self-tuning, k=10": lambda emb: self_tuning_graph(emb, k=10, scale_neighbour=K_GRAPH_SCALE_NEIGHBOUR),
    USED_GRAPH: lambda emb: self_tuning_graph(emb, k=K_GRAPH_NEIGHBOURS, scale_neighbour=K_GRAPH_SCALE_NEIGHBOUR),
    "self-tuning, k=30": lambda emb: self_tuning_graph(emb, k=30, scale_neighbour=K_GRAPH_SCALE_NEIGHBOUR),
}

# The whole discoveries compared: the K rule (l2c_explorer.discovery.K_RULES) of the first pass and of the pass
# after self-training. "sharpened" reads the spectrum of the similarity graph the pass clusters (0/1 links to each
# image's nearest neighbours); in a first pass, with the first pass's significance (the `k_significance` setting).
PIPELINES = {
    "used: self-tuning graph, then the sharpened 0/1 graph's largest gap": ("self-tuning", "sharpened"),
    "0/1 graph, then the sharpened 0/1 graph's largest gap": ("sharpened", "sharpened"),
    "self-tuning graph in both passes": ("self-tuning", "self-tuning"),
}


def discover(model, images, first_rule: str, second_rule: str, *, seed: int = 0) -> tuple[np.ndarray, int]:
    """One discovery with K unknown and the package's defaults (MCL, self-training on), made of the steps
    ``L2CClusterer.fit`` runs (:mod:`l2c_explorer.discovery`), with K read by ``first_rule`` in the first pass and
    by ``second_rule`` after self-training: (each image's cluster, the number of clusters found)."""
    params = L2CClusterer(similarity=model, random_state=seed).get_params()
    settings = discovery_settings(model.card.get("discovery"), params)
    options = PassOptions.of(params, settings)
    first = options if first_rule == "self-tuning" else dataclasses.replace(
        options, settings={**settings, "k_sharpened_significance": settings["k_significance"]})
    device, report = resolve_device(params["device"]), Reporter(None)
    with scratch_folder() as scratch:
        source = open_images(images, model, labelled=False, follow_links=params["follow_links"], cache=False,
                             scratch=scratch, reading=lambda *a, **k: None).source
        embedded = embed_images(model, source, adapt_norm=params["adapt_norm"], device=device, report=report)
        result = first_pass(model, embedded.embeddings, first, method="graph", device=device, report=report,
                            k_rule=first_rule)
        if settings["self_training_steps"]:
            sharpened = sharpen(embedded.model, source, result.probabilities.argmax(1), result.probabilities.max(1),
                                options, steps=settings["self_training_steps"], device=device, report=report,
                                adapted=embedded.model if params["adapt_norm"] else None, k_rule=second_rule)
            if sharpened is not None:  # nothing to learn from: the first clustering stands, as in a fit
                result = sharpened.result
    clusters = ranked_clusters(result.probabilities, result.head)
    return clusters.labels, int(clusters.n_clusters)


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--background", default=str(OMNIGLOT_BACKGROUND), help="the Omniglot background alphabets")
    parser.add_argument("--models", default=None,
                        help="folder of fold models (fold<f>.safetensors); missing ones are trained into it")
    parser.add_argument("--folds", default=",".join(map(str, range(N_FOLDS))), help="comma-separated folds to run")
    parser.add_argument("--pipeline", action="store_true",
                        help="also run whole discoveries (K unknown) with each K rule")
    parser.add_argument("--name", default="omniglot_k_rule", help="results file stem")
    add_common_flags(parser, threads=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    k_true: dict[str, int] = {}
    errors: dict[str, dict[str, dict[str, int]]] = {g: {str(s): {} for s in SIGNIFICANCE_CANDIDATES} for g in GRAPHS}
    pipeline: dict[str, dict[str, dict]] = {label: {} for label in PIPELINES}
    for fold in (int(f) for f in args.folds.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            model_file = str(Path(args.models) / f"fold{fold}.safetensors") if args.models else None
            valid, model_file = validation_setup(Path(args.background), Path(tmp), model_file, fold)
            model = load_similarity_model(model_file)
            for alphabet in sorted(valid.iterdir()):
                name = alphabet.name
                data = model.prepare(str(alphabet), labelled=True)
                k_true[name] = len(data.class_names)
                emb = model.embed(data.pixels)
                for graph_name, build in GRAPHS.items():
                    values, _ = top_eigenpairs(normalised_adjacency(build(emb)), 101)
                    for s in SIGNIFICANCE_CANDIDATES:
                        k = eigengap_k(values, max_k=DISCOVER.defaults.max_clusters, significance=s)
                        errors[graph_name][str(s)][name] = k - k_true[name]
                if args.pipeline:
                    for label, (first_rule, second_rule) in PIPELINES.items():
                        t0 = time.perf_counter()
                        labels, k_found = discover(model, data, first_rule, second_rule, seed=0)
                        pipeline[label][name] = {"acc": scores(data.label_ids(), labels)["acc"],
                                                 "k_error": k_found - k_true[name],
                                                 "seconds": time.perf_counter() - t0}
                print(f"fold {fold} {name:45s} K={k_true[name]:3d} "
                      + " ".join(f"{g}: {errors[g][str(SIGNIFICANT_GAP)][name]:+d}" for g in GRAPHS)
                      + "".join(f" | {r[name]['k_error']:+d}, {100 * r[name]['acc']:.1f}%"
                                for r in pipeline.values() if name in r), flush=True)

    names = list(k_true)

    def summary(errs: dict[str, int]) -> list[str]:
        e = np.abs(list(errs.values()))
        return [f"{e.mean():.2f}", str(int((e >= 5).sum())), f"{int(e.max())}"]

    lines = [
        f"Machine: {machine_description(args.threads)}. {len(names)} validation alphabets (Omniglot background, "
        f"{N_FOLDS}-fold: each fold's 5 are held out from its similarity model's training; never the evaluation "
        f"alphabets); whole run {(time.perf_counter() - started) / 60:.1f} min.",
        "",
        "First-pass K from the spectrum of each graph of the similarity model's features "
        "(mean abs K error, alphabets off by 5 or more, largest error):",
        "",
    ]
    rows = []
    for graph_name, by_s in errors.items():
        for s, errs in by_s.items():
            used = " (used)" if graph_name == USED_GRAPH and float(s) == SIGNIFICANT_GAP else ""
            rows.append([f"{graph_name}{used}", s, *summary(errs)])
    lines += table(["graph", "significance s", "mean abs K error", "off by 5+", "largest"], rows)
    if args.pipeline:
        lines += ["", "Whole discovery, K unknown (MCL, self-training on, seed 0), by K rule of the first and the "
                  "second pass:", ""]
        lines += table(
            ["K rule", "ACC %", "mean abs K error", "off by 5+", "largest", "s per alphabet"],
            [[label, f"{100 * np.mean([r['acc'] for r in res.values()]):.1f}",
              *summary({n: r["k_error"] for n, r in res.items()}),
              f"{np.mean([r['seconds'] for r in res.values()]):.1f}"] for label, res in pipeline.items()],
        )
        lines += ["", "Per alphabet, K error of each whole discovery (in the order of the table above):", ""]
        rules = [f"rule {i + 1}" for i in range(len(PIPELINES))]
        lines += table(["alphabet", "K true", *rules],
                       [[n, str(k_true[n]), *(f"{res[n]['k_error']:+d}" for res in pipeline.values())] for n in names])
    record = {"k_true": k_true, "errors": errors, "pipeline": pipeline if args.pipeline else None,
              "used": {"graph": USED_GRAPH, "significance": SIGNIFICANT_GAP},
              "machine": machine_description(args.threads)}
    write_results(args.name, record, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
